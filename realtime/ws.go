package realtime

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pgpush/pgpush/session"
	"golang.org/x/time/rate"
)

// ServeConn runs a socket until it closes: it registers the client, sends
// the connected frame, runs the write pump in a goroutine and the read pump
// here, and cleans up before returning.
func (h *Hub) ServeConn(ctx context.Context, conn *websocket.Conn, p *session.Principal) {
	c := h.newClient(p, false)
	c.conn = conn
	// Before register: the connected frame must be first, ahead of any
	// broadcast dispatched the moment the client is visible.
	c.refreshAccess(ctx)
	c.send(connectedFrame(p))
	if !h.register(c) {
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(CloseGoingAway, "server shutting down"), time.Now().Add(h.opts.WriteWait))
		_ = conn.Close()
		return
	}
	defer h.unregister(c)
	h.confirmSession(ctx, c)
	h.stats.SocketsOpened.Add(1)
	c.log.Info("socket opened", "role", p.Role, "anonymous", p.Anonymous())

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writePump()
	}()
	c.readPump(ctx)
	c.closeWith(CloseNormal, "")
	<-writerDone
	c.dropSubscriptions()
	c.log.Info("socket closed", "code", c.closeCode, "reason", c.closeReason)
}

func (c *Client) writePump() {
	ticker := time.NewTicker(c.hub.opts.pingPeriod())
	defer ticker.Stop()
	defer c.conn.Close()
	bc, _ := c.conn.NetConn().(*batchConn)
	var batch [][]byte
	for {
		select {
		case <-c.queue.ready:
			batch = c.queue.drain(batch[:0])
			if bc != nil && len(batch) > 1 {
				bc.begin()
			}
			for _, frame := range batch {
				// A close requested meanwhile wins over queued frames: a
				// slow client must not get its backlog first.
				select {
				case <-c.closing:
					if bc != nil {
						_ = bc.flush(time.Now().Add(c.hub.opts.WriteWait))
					}
					c.writeClose()
					return
				default:
				}
				_ = c.conn.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteWait))
				if err := c.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
					c.closeWith(CloseGoingAway, "write failed")
					return
				}
			}
			if bc != nil {
				if err := bc.flush(time.Now().Add(c.hub.opts.WriteWait)); err != nil {
					c.closeWith(CloseGoingAway, "write failed")
					return
				}
			}
			clear(batch)
		case <-ticker.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.hub.opts.WriteWait)); err != nil {
				c.closeWith(CloseGoingAway, "ping failed")
				return
			}
		case <-c.closing:
			c.writeClose()
			return
		}
	}
}

func (c *Client) writeClose() {
	_ = c.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(c.closeCode, c.closeReason), time.Now().Add(c.hub.opts.WriteWait))
}

func (c *Client) readPump(ctx context.Context) {
	c.conn.SetReadLimit(c.hub.opts.MaxFrameBytes)
	extend := func() { _ = c.conn.SetReadDeadline(time.Now().Add(c.hub.opts.PongWait)) }
	extend()
	c.conn.SetPongHandler(func(string) error { extend(); return nil })
	flood := rate.NewLimiter(rate.Limit(c.hub.opts.MessageRate), c.hub.opts.MessageBurst)
	for {
		kind, frame, err := c.conn.ReadMessage()
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				c.closeWith(CloseMessageTooBig, "frame too large")
			default:
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					c.closeWith(ce.Code, "closed by client")
				} else {
					c.closeWith(CloseGoingAway, "read failed")
				}
			}
			return
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
		select {
		case <-c.closing:
			return
		default:
		}
	}
}

// batchConn lets the write pump send a drained batch of frames with one
// write instead of one per frame: during a batch, writes are buffered and
// go out at flush. Outside a batch (control frames from gorilla's read
// side, the close frame) writes pass straight through. gorilla holds its
// own write lock across each frame, so frames never interleave.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

// BatchingConn wraps a hijacked connection for the write pump's batching.
// httpapi hands it to gorilla's Upgrader through Hijack.
func BatchingConn(c net.Conn) net.Conn { return &batchConn{Conn: c} }

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

// maxRetainedBatchBytes: a larger batch buffer is dropped after use, so a
// burst does not pin memory on an idle socket.
const maxRetainedBatchBytes = 64 << 10

func (b *batchConn) flush(deadline time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	if len(b.buf) == 0 {
		return nil
	}
	_ = b.Conn.SetWriteDeadline(deadline)
	_, err := b.Conn.Write(b.buf)
	if cap(b.buf) > maxRetainedBatchBytes {
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
	return err
}
