package socketio

import (
	"bytes"
	"testing"
)

// FuzzDecodePacket feeds client input (one WebSocket frame or one record of
// a polling payload) to both decoders: they must never panic, and what
// they accept must encode back to an equal packet.
func FuzzDecodePacket(f *testing.F) {
	for _, seed := range []string{
		`0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`,
		"1", "2", "2probe", "3", "3probe", "5", "6", "",
		"40", `40{"user_id":"u-42","username":"alice"}`, `40/admin,{"token":"123"}`,
		"41", "41/admin,", `42["hello"]`, `42["order:updated",{"id":7,"status":"paid"}]`,
		`4212["echo","x"]`, `42/admin,1["tellme"]`, `4313[]`, `4313["bar",1,null]`,
		`44{"message":"Not authorized"}`, `451-["baz",{"_placeholder":true,"num":0}]`,
		`461-15["bar",{"_placeholder":true,"num":0}]`, "bAQIDBA==", `42["disconnect"]`,
		`42[`, `42[]`, `42[1]`, "42\x1e42", "4\xff", `4299999999999999999999["a"]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ep, err := decodeEnginePacket(in)
		if err != nil {
			return
		}
		if enc := appendEnginePacket(nil, ep); !bytes.Equal(enc, in) {
			t.Fatalf("engine round trip of %q: %q", in, enc)
		}
		if ep.Type != engineMessage {
			return
		}
		p, err := decodePacket(ep.Data)
		if err != nil {
			return
		}
		enc := appendPacket(nil, p)
		again, err := decodePacket(enc)
		if err != nil {
			t.Fatalf("decodePacket(%q) of encoded %q: %v", enc, ep.Data, err)
		}
		if !samePacket(again, p) {
			t.Fatalf("socket.io round trip of %q: %+v, want %+v", ep.Data, again, p)
		}
	})
}
