package realtime

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// wsReader parses what a /ws client sends (RFC 6455 §5) from whatever
// bytes a read returned. It exists instead of gorilla's reader so that a
// socket can wait for input without a goroutine blocked inside a buffered
// reader: it keeps bytes only while a frame or a fragmented message is
// incomplete, so an idle socket holds no buffer at all.
type wsReader struct {
	maxMessage int64  // a data message over this closes with 1009
	partial    []byte // the start of a frame the last read cut off
	message    []byte // the fragments of a data message so far
	messageOp  int    // its opcode; 0 when none is under way
}

// wsReadError is why the stream is broken: the socket closes with code.
type wsReadError struct {
	code   int
	reason string
}

func (e *wsReadError) Error() string { return e.reason }

func protocolError(reason string) *wsReadError {
	return &wsReadError{code: websocket.CloseProtocolError, reason: reason}
}

// maxControlPayload is the most a control frame may carry (RFC 6455 §5.5).
const maxControlPayload = 125

// feed parses b (unmasking it in place) and calls on once per whole data
// message and per control frame, in order. The payload passed to on is
// only valid during the call. feed stops at the first error, from the
// stream or from on; an error from the stream is a *wsReadError.
func (r *wsReader) feed(b []byte, on func(opcode int, payload []byte) error) error {
	if len(r.partial) > 0 {
		r.partial = append(r.partial, b...)
		b = r.partial
	}
	for len(b) > 0 {
		n, err := r.frame(b, on)
		if err != nil {
			r.partial = nil
			return err
		}
		if n == 0 {
			break // the frame is not whole yet
		}
		b = b[n:]
	}
	if len(b) == 0 {
		r.partial = nil
	} else if len(r.partial) == 0 || &b[0] != &r.partial[0] {
		// Copied into a slice of our own: b may be the caller's buffer, or
		// the tail of partial that the next append would write over.
		r.partial = append([]byte(nil), b...)
	}
	return nil
}

// frame handles the frame at the start of b and returns its length, or 0
// if b does not hold all of it yet. A frame that could never be accepted
// fails as soon as its header is read, before its payload is waited for.
func (r *wsReader) frame(b []byte, on func(int, []byte) error) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	fin := b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return 0, protocolError("reserved bits set (no extension was agreed)")
	}
	opcode := int(b[0] & 0x0f)
	if b[1]&0x80 == 0 {
		return 0, protocolError("client frame not masked")
	}
	header := 2
	length := uint64(b[1] & 0x7f)
	switch length {
	case 126:
		header += 2
		if len(b) < header {
			return 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		header += 8
		if len(b) < header {
			return 0, nil
		}
		length = binary.BigEndian.Uint64(b[2:])
		if length>>63 != 0 {
			return 0, protocolError("frame length out of range")
		}
	}
	control := opcode >= websocket.CloseMessage
	switch {
	case control && opcode > websocket.PongMessage, !control && opcode > websocket.BinaryMessage:
		return 0, protocolError("unknown opcode")
	case control && (!fin || length > maxControlPayload):
		return 0, protocolError("control frame fragmented or over 125 bytes")
	case opcode == 0 && r.messageOp == 0:
		return 0, protocolError("continuation frame without a message")
	case opcode != 0 && !control && r.messageOp != 0:
		return 0, protocolError("new message before the last one ended")
	case !control && length > uint64(r.maxMessage)-uint64(len(r.message)):
		r.message = nil
		return 0, &wsReadError{code: websocket.CloseMessageTooBig, reason: "frame too large"}
	}
	maskAt := header
	header += 4
	if len(b) < header || uint64(len(b)-header) < length {
		return 0, nil
	}
	end := header + int(length)
	payload := b[header:end]
	mask := b[maskAt:header]
	for i := range payload {
		payload[i] ^= mask[i&3]
	}
	if control {
		return end, on(opcode, payload)
	}
	if opcode != 0 {
		r.messageOp = opcode
	}
	if !fin {
		r.message = append(r.message, payload...)
		return end, nil
	}
	op := r.messageOp
	r.messageOp = 0
	if len(r.message) > 0 {
		payload = append(r.message, payload...)
		r.message = nil
	}
	return end, on(op, payload)
}

// parseClose reads a close frame's payload: the code to answer with, or
// an error for a payload no client may send (RFC 6455 §5.5.1, §7.4).
func parseClose(payload []byte) (int, error) {
	switch {
	case len(payload) == 0:
		return websocket.CloseNoStatusReceived, nil
	case len(payload) == 1:
		return 0, protocolError("close frame of one byte")
	}
	code := int(binary.BigEndian.Uint16(payload))
	if !validReceivedCloseCode(code) {
		return 0, protocolError("invalid close code")
	}
	if !utf8.Valid(payload[2:]) {
		return 0, &wsReadError{code: websocket.CloseInvalidFramePayloadData, reason: "close reason not UTF-8"}
	}
	return code, nil
}

// validReceivedCloseCode: the codes of RFC 6455 §7.4.1 a peer may send,
// and the range left to applications and libraries.
func validReceivedCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}
