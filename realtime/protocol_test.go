package realtime

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgpush/pgpush/realtime/filter"
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
		{"long channel", `{"type":"subscribe","channel":"` + strings.Repeat("a", maxChannelBytes+1) + `"}`, clientMessage{}, "too long"},
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

func TestCheckJSONText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw string
		want      error
	}{
		{"plain", `{"a":"b","n":1}`, nil},
		{"empty", ``, nil},
		{"NUL in a value", `{"a":"x\u0000y"}`, errNUL},
		{"NUL in a key", `{"\u0000":1}`, errNUL},
		{"NUL nested", `{"a":[{"b":"\u0000"}]}`, errNUL},
		{"NUL at the end", `"\u0000"`, errNUL},
		{"escaped backslash, then text", `{"path":"C:\\u0000"}`, nil},
		{"two escaped backslashes, then NUL", `"\\\u0000"`, errNUL},
		{"other escapes", `"\u0001\n\"\u00000"`, errNUL},
		{"not NUL", `"\u0100\u1000"`, nil},
		{"invalid UTF-8", "\"\xff\"", errBadUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := checkJSONText([]byte(tt.raw)); got != tt.want {
				t.Errorf("checkJSONText(%s) = %v, want %v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, given string
		wantErr     string // "" for accepted
	}{
		{"plain", "Will", ""},
		{"100 characters", strings.Repeat("é", 100), ""},
		{"101 characters", strings.Repeat("é", 101), "at most 100"},
		{"e-mail", "admin@example.com", "e-mail"},
		{"full-width at sign", "admin\uFF20example.com", "e-mail"},
		{"small at sign", "admin\uFE6Bexample.com", "e-mail"},
		{"bare at sign", "@", "e-mail"},
		{"NUL", "a\x00b", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkName("from", tt.given)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("checkName(%q) = %v, want nil", tt.given, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("checkName(%q) = %v, want an error mentioning %q", tt.given, err, tt.wantErr)
			}
		})
	}
	for _, n := range []int{0, 100, 101, 102, 100000} {
		got := BoundName(strings.Repeat("é", n))
		if want := min(n, 101); utf8.RuneCountInString(got) != want || !utf8.ValidString(got) {
			t.Errorf("BoundName(%d characters) has %d characters, want %d", n, utf8.RuneCountInString(got), want)
		}
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

func TestMatchVisible(t *testing.T) {
	t.Parallel()
	frame := func(data string) string {
		return `{"type":"notification-received","data":{"id":"x","title":"t","customer_id":46,"data":` + data + `}}`
	}
	match := map[string]string{"customer_id": "45"}
	tests := []struct {
		name          string
		channel, kind string
		data          string
		match         map[string]string
		want          bool
	}{
		{"row change, own", "order_changes", "order:updated", `{"customer_id":45}`, match, true},
		{"row change, other's", "order_changes", "order:updated", `{"customer_id":46}`, match, false},
		{"no match rules", "order_changes", "order:updated", `{}`, nil, true},
		{"notification, own data", "notify:orders", notificationEvent, frame(`{"customer_id":"45"}`), match, true},
		{"notification, other's data", "notify:orders", notificationEvent, frame(`{"customer_id":46}`), match, false},
		{"notification to everyone, own data", "notify:*", notificationEvent, frame(`{"customer_id":45}`), match, true},
		{"notification, null data", "notify:orders", notificationEvent, frame(`null`), match, false},
		{"notification, data not an object", "notify:orders", notificationEvent, frame(`[45]`), match, false},
		{"notification, no match rules", "notify:orders", notificationEvent, frame(`null`), nil, true},
		// The frame's own fields are not the notification's data.
		{"notification, field only in the frame", "notify:orders", notificationEvent, frame(`{}`), map[string]string{"title": "t"}, false},
		// Only notification channels hold notification frames.
		{"custom event named like a notification", "order_changes", notificationEvent, `{"customer_id":45,"data":{"data":{"customer_id":46}}}`, match, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := &Event{Channel: tt.channel, Name: tt.kind, Data: json.RawMessage(tt.data)}
			if got := filter.MatchAttrs(tt.match).Match(ev.fields()); got != tt.want {
				t.Errorf("match(%s on %s: %s, %v) = %t, want %t", tt.kind, tt.channel, tt.data, tt.match, got, tt.want)
			}
		})
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
