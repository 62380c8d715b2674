package realtime

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/gorilla/websocket"
)

// clientFrame frames payload as a client must: masked (RFC 6455 §5.3).
func clientFrame(fin bool, opcode int, payload []byte) []byte {
	b := []byte{byte(opcode)}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	return b
}

type readFrame struct {
	op      int
	payload string
}

// readAll feeds input in chunks of size (0: all at once) and returns what
// the reader delivered and the error it stopped on.
func readAll(input []byte, size int, maxMessage int64) ([]readFrame, error) {
	r := wsReader{maxMessage: maxMessage}
	var got []readFrame
	on := func(op int, payload []byte) error {
		got = append(got, readFrame{op, string(payload)})
		return nil
	}
	in := bytes.Clone(input) // feed unmasks in place
	if size <= 0 {
		size = len(in) + 1
	}
	for len(in) > 0 {
		n := min(size, len(in))
		// A fresh buffer per read, reused afterwards, as the socket's pool
		// does: the reader must not keep pointing into it.
		chunk := bytes.Clone(in[:n])
		err := r.feed(chunk, on)
		for i := range chunk {
			chunk[i] = 0xEE
		}
		if err != nil {
			return got, err
		}
		in = in[n:]
	}
	return got, nil
}

func TestWSReader(t *testing.T) {
	t.Parallel()
	long := bytes.Repeat([]byte("x"), 70_000)
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	tests := []struct {
		name     string
		in       []byte
		want     []readFrame
		wantCode int // 0: no error
	}{
		{name: "text", in: clientFrame(true, websocket.TextMessage, []byte(`{"type":"ping"}`)),
			want: []readFrame{{websocket.TextMessage, `{"type":"ping"}`}}},
		{name: "empty text", in: clientFrame(true, websocket.TextMessage, nil),
			want: []readFrame{{websocket.TextMessage, ""}}},
		{name: "16-bit and 64-bit lengths", in: cat(clientFrame(true, websocket.TextMessage, long[:300]), clientFrame(true, websocket.BinaryMessage, long)),
			want: []readFrame{{websocket.TextMessage, string(long[:300])}, {websocket.BinaryMessage, string(long)}}},
		{name: "fragments with a ping between", in: cat(
			clientFrame(false, websocket.TextMessage, []byte("ab")),
			clientFrame(true, websocket.PingMessage, []byte("p")),
			clientFrame(false, 0, []byte("cd")),
			clientFrame(true, 0, []byte("ef"))),
			want: []readFrame{{websocket.PingMessage, "p"}, {websocket.TextMessage, "abcdef"}}},
		{name: "close with code", in: clientFrame(true, websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye")),
			want: []readFrame{{websocket.CloseMessage, "\x0f\xa0bye"}}},
		{name: "unmasked", in: []byte{0x81, 0x01, 'x'}, wantCode: websocket.CloseProtocolError},
		{name: "reserved bit", in: func() []byte { b := clientFrame(true, websocket.TextMessage, []byte("x")); b[0] |= 0x40; return b }(),
			wantCode: websocket.CloseProtocolError},
		{name: "unknown opcode", in: clientFrame(true, 3, nil), wantCode: websocket.CloseProtocolError},
		{name: "unknown control opcode", in: clientFrame(true, 11, nil), wantCode: websocket.CloseProtocolError},
		{name: "fragmented ping", in: clientFrame(false, websocket.PingMessage, nil), wantCode: websocket.CloseProtocolError},
		{name: "long ping", in: clientFrame(true, websocket.PingMessage, long[:126]), wantCode: websocket.CloseProtocolError},
		{name: "continuation first", in: clientFrame(true, 0, []byte("x")), wantCode: websocket.CloseProtocolError},
		{name: "text inside a message", in: cat(clientFrame(false, websocket.TextMessage, []byte("a")), clientFrame(true, websocket.TextMessage, []byte("b"))),
			wantCode: websocket.CloseProtocolError},
		{name: "length with top bit", in: []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, wantCode: websocket.CloseProtocolError},
		{name: "over the limit, refused on its header", in: clientFrame(true, websocket.TextMessage, bytes.Repeat([]byte("y"), 100_000))[:20],
			wantCode: websocket.CloseMessageTooBig},
		{name: "fragments over the limit", in: cat(clientFrame(false, websocket.TextMessage, long[:40_000]), clientFrame(true, 0, long[:40_000])),
			wantCode: websocket.CloseMessageTooBig},
		{name: "data after a good frame", in: cat(clientFrame(true, websocket.TextMessage, []byte("a")), []byte{0x81, 0x01}),
			want: []readFrame{{websocket.TextMessage, "a"}}, wantCode: websocket.CloseProtocolError},
	}
	for _, tt := range tests {
		for _, size := range []int{0, 1, 3, 1000} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, size), func(t *testing.T) {
				got, err := readAll(tt.in, size, 65_536+10_000)
				if tt.wantCode == 0 && err != nil {
					t.Fatalf("error %v", err)
				}
				if tt.wantCode != 0 {
					var re *wsReadError
					if !errors.As(err, &re) || re.code != tt.wantCode {
						t.Fatalf("error %v, want close %d", err, tt.wantCode)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("frames %v, want %v", got, tt.want)
				}
			})
		}
	}
}

func TestParseClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		payload  []byte
		wantCode int
		wantErr  int
	}{
		{payload: nil, wantCode: websocket.CloseNoStatusReceived},
		{payload: []byte{3}, wantErr: websocket.CloseProtocolError},
		{payload: websocket.FormatCloseMessage(1000, ""), wantCode: 1000},
		{payload: websocket.FormatCloseMessage(4999, "x"), wantCode: 4999},
		{payload: []byte{0x03, 0xED}, wantErr: websocket.CloseProtocolError},                 // 1005 may not be sent
		{payload: []byte{0x03, 0xEE}, wantErr: websocket.CloseProtocolError},                 // nor 1006
		{payload: []byte{0x13, 0x88}, wantErr: websocket.CloseProtocolError},                 // 5000
		{payload: []byte{0x03, 0xE8, 0xff}, wantErr: websocket.CloseInvalidFramePayloadData}, // reason not UTF-8
	}
	for _, tt := range tests {
		code, err := parseClose(tt.payload)
		var re *wsReadError
		switch {
		case tt.wantErr != 0 && (!errors.As(err, &re) || re.code != tt.wantErr):
			t.Errorf("parseClose(%x) = %d, %v; want close %d", tt.payload, code, err, tt.wantErr)
		case tt.wantErr == 0 && (err != nil || code != tt.wantCode):
			t.Errorf("parseClose(%x) = %d, %v; want %d", tt.payload, code, err, tt.wantCode)
		}
	}
}

// FuzzWSReader: any bytes, cut anywhere, end in frames or a close code,
// never a panic, and the cut never changes what is read.
func FuzzWSReader(f *testing.F) {
	f.Add(clientFrame(true, websocket.TextMessage, []byte(`{"type":"ping"}`)), 3)
	f.Add(append(clientFrame(false, websocket.TextMessage, []byte("ab")), clientFrame(true, 0, []byte("c"))...), 1)
	f.Add(clientFrame(true, websocket.CloseMessage, []byte{3, 0xE8}), 2)
	f.Add([]byte{0x81, 0xFF, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 4)
	f.Fuzz(func(t *testing.T, in []byte, size int) {
		whole, errWhole := readAll(in, 0, 1000)
		cut, errCut := readAll(in, max(1, size%64), 1000)
		for _, fr := range whole {
			if fr.op != websocket.TextMessage && fr.op != websocket.BinaryMessage && len(fr.payload) > maxControlPayload {
				t.Fatalf("control frame of %d bytes", len(fr.payload))
			}
			if len(fr.payload) > 1000 {
				t.Fatalf("message of %d bytes over the limit", len(fr.payload))
			}
		}
		if fmt.Sprint(whole) != fmt.Sprint(cut) || fmt.Sprint(errWhole) != fmt.Sprint(errCut) {
			t.Fatalf("whole: %v %v; cut: %v %v", whole, errWhole, cut, errCut)
		}
		var re *wsReadError
		if errWhole != nil && !errors.As(errWhole, &re) {
			t.Fatalf("error %v is not a close", errWhole)
		}
	})
}
