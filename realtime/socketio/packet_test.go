package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDecodeEnginePacket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		wantType byte
		wantData string
		wantErr  bool
	}{
		{name: "open", in: `0{"sid":"x"}`, wantType: engineOpen, wantData: `{"sid":"x"}`},
		{name: "close", in: "1", wantType: engineClose},
		{name: "probe", in: "2probe", wantType: enginePing, wantData: "probe"},
		{name: "pong", in: "3", wantType: enginePong},
		{name: "message", in: `42["a"]`, wantType: engineMessage, wantData: `2["a"]`},
		{name: "upgrade", in: "5", wantType: engineUpgrade},
		{name: "noop", in: "6", wantType: engineNoop},
		{name: "empty", in: "", wantErr: true},
		{name: "binary base64", in: "bAQIDBA==", wantErr: true},
		{name: "unknown type", in: "7", wantErr: true},
		{name: "letter", in: "x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeEnginePacket([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("decodeEnginePacket(%q) err=%v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Type != tt.wantType || string(got.Data) != tt.wantData {
				t.Fatalf("decodeEnginePacket(%q)=%q %q, want %q %q", tt.in, got.Type, got.Data, tt.wantType, tt.wantData)
			}
			if enc := appendEnginePacket(nil, got); string(enc) != tt.in {
				t.Fatalf("appendEnginePacket()=%q, want %q", enc, tt.in)
			}
		})
	}
}

func TestPayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want []string
	}{
		{name: "one packet", body: `40`, want: []string{"40"}},
		{name: "spec example", body: "4hello\x1e2\x1e4world", want: []string{"4hello", "2", "4world"}},
		{name: "two events", body: "42[\"hello\"]\x1e42[\"world\"]", want: []string{`42["hello"]`, `42["world"]`}},
		{name: "multibyte", body: "4€€€\x1e4é", want: []string{"4€€€", "4é"}},
		{name: "empty body", body: "", want: []string{""}},
		{name: "trailing separator", body: "3\x1e", want: []string{"3", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parts := splitPayload([]byte(tt.body))
			got := make([]string, len(parts))
			for i, p := range parts {
				got[i] = string(p)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("splitPayload(%q)=%q, want %q", tt.body, got, tt.want)
			}
			if enc := encodePayload(parts); string(enc) != tt.body {
				t.Fatalf("encodePayload()=%q, want %q", enc, tt.body)
			}
		})
	}
}

func TestDecodePacket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    packet // Args not compared
		wantErr bool
	}{
		{name: "connect", in: "0", want: packet{Type: packetConnect, Namespace: "/", ID: -1}},
		{name: "connect with auth", in: `0{"token":"123"}`, want: packet{Type: packetConnect, Namespace: "/", ID: -1, Data: json.RawMessage(`{"token":"123"}`)}},
		{name: "connect to namespace", in: "0/admin,", want: packet{Type: packetConnect, Namespace: "/admin", ID: -1}},
		{name: "namespace without comma", in: "1/admin", want: packet{Type: packetDisconnect, Namespace: "/admin", ID: -1}},
		{name: "connect reply", in: `0/admin,{"sid":"oSO0"}`, want: packet{Type: packetConnect, Namespace: "/admin", ID: -1, Data: json.RawMessage(`{"sid":"oSO0"}`)}},
		{name: "disconnect", in: "1", want: packet{Type: packetDisconnect, Namespace: "/", ID: -1}},
		{name: "event", in: `2["foo"]`, want: packet{Type: packetEvent, Namespace: "/", ID: -1, Data: json.RawMessage(`["foo"]`)}},
		{name: "event with ack id", in: `212["foo",{"a":1}]`, want: packet{Type: packetEvent, Namespace: "/", ID: 12, Data: json.RawMessage(`["foo",{"a":1}]`)}},
		{name: "event in namespace with ack id", in: `2/admin,1["tellme"]`, want: packet{Type: packetEvent, Namespace: "/admin", ID: 1, Data: json.RawMessage(`["tellme"]`)}},
		{name: "ack", in: `313["bar"]`, want: packet{Type: packetAck, Namespace: "/", ID: 13, Data: json.RawMessage(`["bar"]`)}},
		{name: "empty ack", in: `35[]`, want: packet{Type: packetAck, Namespace: "/", ID: 5, Data: json.RawMessage(`[]`)}},
		{name: "connect error", in: `4{"message":"Not authorized"}`, want: packet{Type: packetConnectError, Namespace: "/", ID: -1, Data: json.RawMessage(`{"message":"Not authorized"}`)}},
		{name: "connect error string", in: `4"nope"`, want: packet{Type: packetConnectError, Namespace: "/", ID: -1, Data: json.RawMessage(`"nope"`)}},
		{name: "unicode event", in: `2["ünï","€😀"]`, want: packet{Type: packetEvent, Namespace: "/", ID: -1, Data: json.RawMessage(`["ünï","€😀"]`)}},

		{name: "empty", in: "", wantErr: true},
		{name: "unknown type", in: "9", wantErr: true},
		{name: "binary event", in: `51-["baz",{"_placeholder":true,"num":0}]`, wantErr: true},
		{name: "binary ack", in: `61-15["bar",{"_placeholder":true,"num":0}]`, wantErr: true},
		{name: "event without payload", in: "2", wantErr: true},
		{name: "event with empty array", in: "2[]", wantErr: true},
		{name: "event with object", in: `2{"a":1}`, wantErr: true},
		{name: "event name not a string", in: "2[1]", wantErr: true},
		{name: "reserved event name", in: `2["disconnect"]`, wantErr: true},
		{name: "truncated JSON", in: `2["foo"`, wantErr: true},
		{name: "trailing garbage", in: `2["foo"]x`, wantErr: true},
		{name: "connect with array", in: `0["x"]`, wantErr: true},
		{name: "connect with ack id", in: `05{}`, wantErr: true},
		{name: "disconnect with payload", in: `1{}`, wantErr: true},
		{name: "ack with object", in: `31{}`, wantErr: true},
		{name: "ack id too large", in: `21234567890123456["a"]`, wantErr: true},
		{name: "connect error without payload", in: "4", wantErr: true},
		{name: "invalid UTF-8", in: "2[\"\xff\"]", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodePacket([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("decodePacket(%q) err=%v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Type != tt.want.Type || got.Namespace != tt.want.Namespace || got.ID != tt.want.ID || !bytes.Equal(got.Data, tt.want.Data) {
				t.Fatalf("decodePacket(%q)=%+v, want %+v", tt.in, got, tt.want)
			}
			again, err := decodePacket(appendPacket(nil, got))
			if err != nil || !samePacket(again, got) {
				t.Fatalf("round trip of %q: got %+v, %v; want %+v", tt.in, again, err, got)
			}
		})
	}
}

func TestEncodeEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		event   string
		args    []any
		want    string
		wantErr bool
	}{
		{name: "no args", event: "ping-me", want: `42["ping-me"]`},
		{name: "object", event: "order:updated", args: []any{map[string]int{"id": 7}}, want: `42["order:updated",{"id":7}]`},
		{name: "raw JSON and string", event: "e", args: []any{json.RawMessage(`[1,2]`), "s"}, want: `42["e",[1,2],"s"]`},
		{name: "control character escaped", event: "e", args: []any{"a\x1eb"}, want: `42["e","a\u001eb"]`},
		{name: "reserved", event: "connect", wantErr: true},
		{name: "unencodable", event: "e", args: []any{func() {}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := EncodeEvent(tt.event, tt.args...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("EncodeEvent(%q) err=%v, wantErr %v", tt.event, err, tt.wantErr)
			}
			if err == nil && string(got) != tt.want {
				t.Fatalf("EncodeEvent(%q)=%s, want %s", tt.event, got, tt.want)
			}
		})
	}
}

func TestEncodeOpen(t *testing.T) {
	t.Parallel()
	got := string(encodeOpen("abc", transportPolling, 25*time.Second, 20*time.Second, 1_000_000))
	want := `0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`
	if got != want {
		t.Fatalf("encodeOpen(polling)=%s, want %s", got, want)
	}
	if got := string(encodeOpen("abc", transportWebsocket, time.Second, time.Second, 10)); !strings.Contains(got, `"upgrades":[]`) {
		t.Fatalf("encodeOpen(websocket)=%s, want no upgrades", got)
	}
}

func TestSendQueue(t *testing.T) {
	t.Parallel()
	q := newSendQueue()
	big := make([]byte, 600)
	if !q.push(big, 1000) {
		t.Fatal("push(600 bytes, limit 1000)=false, want true")
	}
	if q.push(big, 1000) {
		t.Fatal("second push(600 bytes, limit 1000)=true, want false")
	}
	q.pushControl([]byte("2"))
	if got := len(q.take()); got != 2 {
		t.Fatalf("take() returned %d packets, want 2", got)
	}
	if !q.push(big, 1000) {
		t.Fatal("push after take=false, want true")
	}
	select {
	case <-q.emptied:
	default:
		t.Fatal("take() did not ring emptied")
	}
}

func TestEmitRawRefusesBadPackets(t *testing.T) {
	t.Parallel()
	s := &Socket{sess: &session{queue: newSendQueue(), closing: make(chan struct{})}}
	for _, p := range []string{"", "4", `2["a"]`, `49["a"]`, "42[\"a\"]\x1e42[\"b\"]"} {
		if err := s.EmitRaw([]byte(p)); !errors.Is(err, errBadRawPacket) {
			t.Errorf("EmitRaw(%q)=%v, want errBadRawPacket", p, err)
		}
	}
	if err := s.EmitRaw([]byte(`42["ok"]`)); err != nil {
		t.Fatalf(`EmitRaw(42["ok"])=%v, want nil`, err)
	}
}

// samePacket compares decoded packets, Args included.
func samePacket(a, b packet) bool {
	return a.Type == b.Type && a.Namespace == b.Namespace && a.ID == b.ID && bytes.Equal(a.Data, b.Data) &&
		slices.EqualFunc(a.Args, b.Args, func(x, y json.RawMessage) bool { return bytes.Equal(x, y) })
}

func TestEncodeRawEventAgreesWithEncodeEvent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		event   string
		payload string
	}{
		{"order:updated", `{"id":"1","data":{"a":[1,2]}}`},
		{"notification-received", `{"title":"\u00e9\"x"}`},
		{"quote\"name", `null`},
	} {
		want, err := EncodeEvent(tt.event, json.RawMessage(tt.payload))
		if err != nil {
			t.Fatal(err)
		}
		if got := EncodeRawEvent(tt.event, []byte(tt.payload)); string(got) != string(want) {
			t.Errorf("EncodeRawEvent(%q, %s) = %s, want %s", tt.event, tt.payload, got, want)
		}
	}
}
