package realtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
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

// ServeConn runs a /ws socket until it closes, then calls onClosed (if
// not nil). It returns at once: an idle socket costs one goroutine parked
// on the network with a small stack (see readLoop), not the caller's.
// conn must be upgraded without compression: the writer frames messages
// itself, and the socket reads the network connection directly, not
// through conn.
func (h *Hub) ServeConn(ctx context.Context, conn *websocket.Conn, p *session.Principal, onClosed func()) {
	t := &wsTransport{
		raw:    conn.NetConn(),
		pumped: pumped{queue: newSendQueue(h.opts.QueueBytes, h.opts.QueueMessages), keepAlive: wsPingFrame},
	}
	c := h.newClient(p, t, wireWS)
	t.c = c
	t.pump = newPump(c, t.queue, t.writeBatch, t.writeClose)
	if sc, ok := t.raw.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			t.rc = rc
			t.pump.writeNow = t.writeNow
			c.inline = t.pump
		}
	}
	t.frames = wsReader{maxMessage: h.opts.MaxFrameBytes}
	t.flood = rate.NewLimiter(rate.Limit(h.opts.MessageRate), h.opts.MessageBurst)
	if !h.open(ctx, c, connectedFrame(p), "socket opened") {
		if onClosed != nil {
			onClosed()
		}
		return
	}
	go t.run(ctx, onClosed)
}

// wsTransport is a /ws connection. Frames are queued already framed (the
// event's bytes are shared by every socket) and written by its pump, so an
// idle socket costs one parked reader and no writer. Writes go straight to
// the network connection, one writev per drained batch, and so do reads:
// gorilla only did the handshake.
type wsTransport struct {
	c   *Client
	raw net.Conn
	rc  syscall.RawConn // raw's file descriptor, for reads and writes that never block
	pumped

	frames wsReader
	flood  *rate.Limiter

	// noCloseFrame: a write failed partway through a frame; the writer
	// then only half-closes. Set before closeWith.
	noCloseFrame atomic.Bool
}

var wsPingFrame = []byte{0x80 | websocket.PingMessage, 0}

// writeBatch sends a drained batch with one writev and one deadline. The
// deadline is lifted afterwards: a past one would fail writeNow.
func (t *wsTransport) writeBatch(batch [][]byte) {
	_ = t.raw.SetWriteDeadline(time.Now().Add(t.c.hub.opts.WriteWait))
	bufs := net.Buffers(batch)
	if _, err := bufs.WriteTo(t.raw); err != nil {
		// The stream may end inside a frame: a close frame after it
		// would be read as payload.
		t.noCloseFrame.Store(true)
		t.c.closeWith(CloseGoingAway, "write failed")
		return
	}
	_ = t.raw.SetWriteDeadline(time.Time{})
}

func (t *wsTransport) writeNow(b []byte) int { return writeNonBlocking(t.rc, b) }

// writeNonBlocking writes b without blocking and returns how many bytes
// the kernel took; on an error it reports none, and the blocking write
// after it meets the error again.
func writeNonBlocking(rc syscall.RawConn, b []byte) int {
	var n int
	var err error
	if rerr := rc.Write(func(fd uintptr) bool {
		for {
			n, err = syscall.Write(int(fd), b)
			if err != syscall.EINTR {
				return true
			}
		}
	}); rerr != nil || err != nil || n < 0 {
		return 0
	}
	return n
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
	// by writeClose passes.
	_, _ = io.Copy(io.Discard, t.raw)
	_ = t.raw.Close()
}

// run is the socket's reader goroutine, and ends the socket when reading
// stops.
func (t *wsTransport) run(ctx context.Context, onClosed func()) {
	t.readLoop(ctx, t.c)
	t.c.hub.end(t.c)
	if onClosed != nil {
		onClosed()
	}
}

// readBufferSize is one read's worth of client frames; buffers are lent
// only while a read's bytes are parsed.
const readBufferSize = 4096

var readBuffers = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// readLoop waits for input with nothing on its stack but the wait, so an
// idle socket's goroutine keeps the smallest stack (the runtime shrinks a
// parked goroutine's stack to what it uses), and holds no read buffer: one
// is taken from a pool only once bytes have arrived. The deep work, the
// messages' handling, runs on a goroutine of its own that ends with it.
func (t *wsTransport) readLoop(ctx context.Context, c *Client) {
	rc := t.rc
	if rc == nil {
		t.readBlocking(ctx, c)
		return
	}
	t.extendRead()
	var buf *[]byte
	var n int
	var readErr error
	read := func(fd uintptr) bool {
		buf = readBuffers.Get().(*[]byte)
		for {
			n, readErr = syscall.Read(int(fd), *buf)
			if readErr != syscall.EINTR {
				break
			}
		}
		if readErr == syscall.EAGAIN {
			readBuffers.Put(buf)
			return false // wait until readable
		}
		return true
	}
	handled := make(chan bool)
	for {
		if err := rc.Read(read); err != nil {
			c.closeWith(CloseGoingAway, "read failed") // the pong deadline passed
			return
		}
		if readErr != nil || n == 0 {
			readBuffers.Put(buf)
			c.closeWith(CloseGoingAway, "read failed")
			return
		}
		go func(b []byte) { handled <- t.handleInput(ctx, b) }((*buf)[:n])
		more := <-handled
		readBuffers.Put(buf)
		if !more {
			return // closing: finish drains the rest
		}
	}
}

// readBlocking is readLoop for a connection without a file descriptor of
// its own (TLS served by this process): a goroutine blocked in Read, with
// its buffer, for the socket's lifetime.
func (t *wsTransport) readBlocking(ctx context.Context, c *Client) {
	t.extendRead()
	buf := make([]byte, readBufferSize)
	for {
		n, err := t.raw.Read(buf)
		if n > 0 && !t.handleInput(ctx, buf[:n]) {
			return
		}
		if err != nil {
			c.closeWith(CloseGoingAway, "read failed")
			return
		}
	}
}

// handleInput acts on the frames in b; false means the socket is closing.
func (t *wsTransport) handleInput(ctx context.Context, b []byte) bool {
	c := t.c
	if c.isClosing() {
		return false
	}
	t.extendRead()
	err := t.frames.feed(b, func(opcode int, payload []byte) error {
		if c.isClosing() {
			return errClosing
		}
		switch opcode {
		case websocket.PongMessage:
			return nil
		case websocket.CloseMessage:
			code, err := parseClose(payload)
			if err != nil {
				return err
			}
			c.closeWith(code, "closed by client")
			return errClosing
		}
		// Pings count against the flood limit too: each one queues a pong.
		if !t.flood.Allow() {
			c.closeWith(ClosePolicyViolation, "too many messages")
			return errClosing
		}
		switch opcode {
		case websocket.PingMessage:
			t.queue.pushControl(appendWSFrame(nil, websocket.PongMessage, payload))
			t.pump.kick()
		case websocket.TextMessage:
			c.handle(ctx, bytes.Clone(payload))
		default:
			c.send(errorFrame("malformed message: want a text frame with a JSON object"))
		}
		return nil
	})
	var re *wsReadError
	if errors.As(err, &re) {
		c.closeWith(re.code, re.reason)
	}
	return err == nil && !c.isClosing()
}

// errClosing stops parsing: the socket is closing.
var errClosing = errors.New("socket closing")

// extendRead moves the read deadline on while the socket is open; once it
// is closing, the close's drain deadline stands.
func (t *wsTransport) extendRead() {
	c := t.c
	if !c.isClosing() {
		_ = t.raw.SetReadDeadline(time.Now().Add(c.hub.opts.PongWait))
		if c.isClosing() { // closed meanwhile: put the drain deadline back
			_ = t.raw.SetReadDeadline(time.Now().Add(closeDrainWait))
		}
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
