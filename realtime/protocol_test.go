package realtime

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseClientMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		frame   string
		want    clientMessage
		wantErr string
	}{
		{"subscribe", `{"type":"subscribe","channel":"order_changes"}`, clientMessage{Type: "subscribe", Channel: "order_changes"}, ""},
		{"white space", " \n{\"type\":\"ping\"}\n", clientMessage{Type: "ping"}, ""},
		{"empty", ``, clientMessage{}, "malformed"},
		{"array", `[]`, clientMessage{}, "malformed"},
		{"truncated", `{"type":"subscribe"`, clientMessage{}, "malformed"},
		{"no type", `{"channel":"x"}`, clientMessage{}, `"type"`},
		{"type not a string", `{"type":1}`, clientMessage{}, "wrong type"},
		{"long channel", `{"type":"subscribe","channel":"` + strings.Repeat("a", 201) + `"}`, clientMessage{}, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseClientMessage([]byte(tt.frame))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseClientMessage(%q) error = %v, want it to mention %q", tt.frame, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseClientMessage(%q) error = %v", tt.frame, err)
			}
			if got.Type != tt.want.Type || got.Channel != tt.want.Channel {
				t.Fatalf("parseClientMessage(%q) = %+v, want %+v", tt.frame, got, tt.want)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw    string
		want   int64
		wantOK bool
		bad    bool
	}{
		{``, 0, false, false},
		{`null`, 0, false, false},
		{`"1842"`, 1842, true, false},
		{`1842`, 1842, true, false},
		{`" 7 "`, 7, true, false},
		{`"abc"`, 0, false, true},
		{`-1`, 0, false, true},
		{`1.5`, 0, false, true},
		{`"99999999999999999999"`, 0, false, true},
		{`{}`, 0, false, true},
	}
	for _, tt := range tests {
		got, ok, err := parseSince(json.RawMessage(tt.raw))
		if (err != nil) != tt.bad || got != tt.want || ok != tt.wantOK {
			t.Errorf("parseSince(%s) = %d, %t, %v; want %d, %t, error %t", tt.raw, got, ok, err, tt.want, tt.wantOK, tt.bad)
		}
	}
}

func TestEventEncoding(t *testing.T) {
	t.Parallel()
	ev := &Event{
		Pos:     Position{Seq: 3, ID: 1842},
		Channel: "order_changes",
		Name:    "order:updated",
		Data:    json.RawMessage(`{"id":123,"total":99.99,"changed_fields":{"status":"processing"}}`),
		Time:    time.Date(2026, 1, 25, 10, 30, 0, 0, time.FixedZone("x", 3600)),
	}
	want := `{"id":"1842","channel":"order_changes","event":"order:updated","data":{"id":123,"total":99.99,"changed_fields":{"status":"processing"}},"timestamp":"2026-01-25T09:30:00.000Z"}`
	if got := string(ev.encoded()); got != want {
		t.Fatalf("encoded() =\n%s\nwant\n%s", got, want)
	}
	if &ev.encoded()[0] != &ev.encoded()[0] {
		t.Fatal("encoded() re-encodes; want one encoding per event")
	}
}

func TestPositionAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p, q Position
		want bool
	}{
		{Position{2, 1}, Position{1, 9}, true},
		{Position{1, 9}, Position{2, 1}, false},
		{Position{1, 2}, Position{1, 1}, true},
		{Position{1, 1}, Position{1, 1}, false},
	}
	for _, tt := range tests {
		if got := tt.p.After(tt.q); got != tt.want {
			t.Errorf("%v.After(%v) = %t, want %t", tt.p, tt.q, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	max := 5 * time.Second
	prev := time.Duration(0)
	for attempt := 1; attempt <= 12; attempt++ {
		d := backoff(attempt, max)
		if d > max+max/10 || d <= 0 {
			t.Fatalf("backoff(%d) = %v, want in (0, %v]", attempt, d, max+max/10)
		}
		if attempt <= 5 && d < prev*3/2 {
			t.Fatalf("backoff(%d) = %v after %v: want roughly doubling", attempt, d, prev)
		}
		prev = d
	}
}

func TestSendQueueCaps(t *testing.T) {
	t.Parallel()
	q := newSendQueue(100, 6)
	big := make([]byte, 150)
	for i := range minQueuedFrames {
		if !q.push(big) {
			t.Fatalf("frame %d over the byte cap refused; the first %d must always be queued", i, minQueuedFrames)
		}
	}
	if q.push([]byte("x")) {
		t.Fatal("push over the byte cap succeeded")
	}
	if got := len(q.drain(nil)); got != minQueuedFrames {
		t.Fatalf("drain() = %d frames, want %d", got, minQueuedFrames)
	}
	for i := range 6 {
		if !q.push([]byte("x")) {
			t.Fatalf("push %d failed below the caps", i)
		}
	}
	if q.push([]byte("x")) {
		t.Fatal("push over the message cap succeeded")
	}
}

// FuzzParseClientMessage: any frame gets a message or an error, never a
// panic; a parsed message re-encodes to one that parses the same.
func FuzzParseClientMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"subscribe","channel":"order_changes"}`,
		`{"type":"subscribe","channel":"order_changes","since":"1842","filter":{"status":"paid"}}`,
		`{"type":"unsubscribe","channel":"order_changes"}`,
		`{"type":"ping"}`,
		`{"type":"publish","channel":"alerts","event":"stock:low","data":{"sku":"A1"}}`,
		`{"type":"join-room","room_id":"general","from":"Will"}`,
		`{"type":`, `[]`, `null`, `{"type":1}`, "\x00\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		msg, err := parseClientMessage(frame)
		if err != nil {
			return
		}
		if msg.Type == "" {
			t.Fatalf("parsed %q with empty type", frame)
		}
		again, err := json.Marshal(msg)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", msg, err)
		}
		msg2, err := parseClientMessage(again)
		if err != nil || msg2.Type != msg.Type || msg2.Channel != msg.Channel || msg2.Event != msg.Event {
			t.Fatalf("round trip of %q: %+v then %+v (%v)", frame, msg, msg2, err)
		}
		_, _, _ = parseSince(msg.Since)
	})
}

// FuzzParseSince: never panics; accepted ids round-trip as strings.
func FuzzParseSince(f *testing.F) {
	for _, seed := range []string{`"1842"`, `1842`, `null`, `""`, `"-1"`, `1e3`, `"9223372036854775807"`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, ok, err := parseSince(raw)
		if err != nil || !ok {
			return
		}
		if id < 0 {
			t.Fatalf("parseSince(%q) = %d, want non-negative", raw, id)
		}
		back, ok2, err2 := parseSince(json.RawMessage(`"` + jsonInt(id) + `"`))
		if err2 != nil || !ok2 || back != id {
			t.Fatalf("round trip of %d: %d, %t, %v", id, back, ok2, err2)
		}
	})
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }
