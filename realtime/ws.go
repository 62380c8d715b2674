package realtime

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/pgpush/pgpush/session"
)

// closeDrainWait is how long a closing socket keeps reading (and
// discarding) after its close frame: closing with unread data in the
// kernel's buffer sends an RST, which can overtake the close frame, so a
// client that is still sending would see a reset instead of 1008 or 1009.
const closeDrainWait = 2 * time.Second

// ServeConn runs a /ws socket until it closes. conn must be upgraded
// without compression: the writer frames messages itself.
func (h *Hub) ServeConn(ctx context.Context, conn *websocket.Conn, p *session.Principal) {
	t := &wsTransport{
		conn:   conn,
		raw:    conn.NetConn(),
		pumped: pumped{queue: newSendQueue(h.opts.QueueBytes, h.opts.QueueMessages), keepAlive: wsPingFrame},
	}
	c := h.newClient(p, t, wireWS)
	t.c = c
	t.pump = newPump(t.queue, c.closingCh, t.writeBatch, t.writeClose)
	h.serve(ctx, c, connectedFrame(p), "socket opened")
}

// wsTransport is a /ws connection. Frames are queued already framed (the
// event's bytes are shared by every socket) and written by its pump, so an
// idle socket costs one blocked reader and no writer. Writes go straight to
// the network connection, one writev per drained batch. Pongs go through the
// pump too; the only frame gorilla writes itself is the close after a frame
// over the limit or a protocol error, and the kernel socket's write lock
// keeps each Write whole, so frames never interleave.
type wsTransport struct {
	c    *Client
	conn *websocket.Conn // only readLoop reads from it
	raw  net.Conn
	pumped

	// noCloseFrame: gorilla already sent one (a frame over the limit, a
	// protocol error), or a write failed partway through a frame; the
	// writer then only half-closes. Set before closeWith.
	noCloseFrame atomic.Bool
}

var wsPingFrame = []byte{0x80 | websocket.PingMessage, 0}

// writeBatch sends a drained batch with one writev and one deadline.
func (t *wsTransport) writeBatch(batch [][]byte) {
	_ = t.raw.SetWriteDeadline(time.Now().Add(t.c.hub.opts.WriteWait))
	bufs := net.Buffers(batch)
	if _, err := bufs.WriteTo(t.raw); err != nil {
		// The stream may end inside a frame: a close frame after it
		// would be read as payload.
		t.noCloseFrame.Store(true)
		t.c.closeWith(CloseGoingAway, "write failed")
	}
}

// writeClose sends the close frame and half-closes, so the peer sees the
// close code and then the end of the stream.
func (t *wsTransport) writeClose() {
	c := t.c
	// Wakes readLoop if it is blocked, and bounds finish's drain, whatever
	// happens to the close frame: from here on the socket only drains.
	defer func() { _ = t.raw.SetReadDeadline(time.Now().Add(closeDrainWait)) }()
	if !t.noCloseFrame.Load() {
		_ = t.raw.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteWait))
		if _, err := t.raw.Write(wsCloseFrame(c.closeCode, c.closeReason)); err != nil {
			return
		}
	}
	if hc, ok := t.raw.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
}

func (t *wsTransport) finish() {
	<-t.pump.done
	// Drain what the peer still sends until it closes or the deadline set
	// by writeClose passes; gorilla may have stopped reading after an error
	// (a frame over the limit), so read the raw connection.
	_, _ = io.Copy(io.Discard, t.raw)
	_ = t.raw.Close()
}

func (t *wsTransport) readLoop(ctx context.Context, c *Client) {
	conn := t.conn
	conn.SetReadLimit(c.hub.opts.MaxFrameBytes)
	// extend moves the read deadline on while the socket is open; once it
	// is closing, the close's drain deadline stands.
	extend := func() {
		if !c.isClosing() {
			_ = conn.SetReadDeadline(time.Now().Add(c.hub.opts.PongWait))
			if c.isClosing() { // closed meanwhile: put the drain deadline back
				_ = conn.SetReadDeadline(time.Now().Add(closeDrainWait))
			}
		}
	}
	extend()
	conn.SetPongHandler(func(string) error {
		extend()
		return nil
	})
	// Pongs go through the writer like every other frame: gorilla's own
	// reply would write beside it, with a deadline of its own.
	conn.SetPingHandler(func(data string) error {
		t.queue.pushControl(appendWSFrame(nil, websocket.PongMessage, []byte(data)))
		t.pump.kick()
		return nil
	})
	// gorilla's default answers a close frame itself; the writer answers
	// it instead (closeWith below), so that a socket never sends two close
	// frames when the server was closing it at the same moment.
	conn.SetCloseHandler(func(int, string) error { return nil })
	flood := rate.NewLimiter(rate.Limit(c.hub.opts.MessageRate), c.hub.opts.MessageBurst)
	for {
		kind, frame, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			var ne net.Error
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				t.noCloseFrame.Store(true) // gorilla sent 1009 itself
				c.closeWith(CloseMessageTooBig, "frame too large")
			case errors.As(err, &ce):
				c.closeWith(ce.Code, "closed by client")
			case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				c.closeWith(CloseGoingAway, "read failed")
			default: // a protocol error: gorilla sent 1002 itself
				t.noCloseFrame.Store(true)
				c.closeWith(CloseGoingAway, "protocol error")
			}
			return
		}
		if c.isClosing() {
			return // finish drains the rest
		}
		extend()
		if !flood.Allow() {
			c.closeWith(ClosePolicyViolation, "too many messages")
			return
		}
		if kind != websocket.TextMessage {
			c.send(errorFrame("malformed message: want a text frame with a JSON object"))
			continue
		}
		c.handle(ctx, frame)
	}
}

// wsTextFrame frames payload as one unmasked WebSocket text frame (RFC
// 6455 §5.2), the form a server sends.
func wsTextFrame(payload []byte) []byte {
	return appendWSFrame(make([]byte, 0, len(payload)+10), websocket.TextMessage, payload)
}

func appendWSFrame(dst []byte, opcode int, payload []byte) []byte {
	dst = append(dst, 0x80|byte(opcode)) // FIN
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// maxCloseReasonBytes keeps a close frame's payload within the 125 bytes
// a control frame may carry.
const maxCloseReasonBytes = 123

func wsCloseFrame(code int, reason string) []byte {
	if len(reason) > maxCloseReasonBytes {
		reason = reason[:maxCloseReasonBytes]
	}
	return appendWSFrame(nil, websocket.CloseMessage, websocket.FormatCloseMessage(code, reason))
}
