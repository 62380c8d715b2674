package realtime

import (
	"context"
	"time"
)

// transport is how a Client reaches its peer: /ws (wsTransport) or a
// Socket.IO session (sioTransport). The hub and the protocol code never
// touch a connection; they push frames already in the transport's wire
// form (see wireForm) and ask it to close.
type transport interface {
	// push queues one frame without blocking. false means the peer is too
	// slow (the queue is over its cap); the caller closes with 1013.
	push(frame []byte) bool
	// pushBelow queues frame only while the queue holds less than half its
	// cap, so a replay leaves room for live events; when it reports false,
	// wait on drained and try again.
	pushBelow(frame []byte) bool
	// drained is rung whenever the writer empties the queue.
	drained() <-chan struct{}
	// flush wakes the writer after a run of pushes: the fan-out queues a
	// run of events first, so a busy socket gets them in one write.
	flush()
	// queuePing queues a heartbeat when the transport needs one from the
	// hub, without waking the writer: the caller flushes.
	queuePing()
	// readLoop reads the peer's messages and hands each to c.handleMessage
	// until the peer leaves or c starts closing.
	readLoop(ctx context.Context, c *Client)
	// closing tells the transport that c.closeWith was called: it sends
	// the close (code and reason are on c) and ends readLoop.
	closing()
	// finish waits until the close has been sent and releases the
	// connection. Called once, after readLoop returned.
	finish()
}

// sessionCheckWait bounds the check of a new socket's session.
const sessionCheckWait = 10 * time.Second

// wireForm selects how frames are encoded for a transport.
type wireForm uint8

const (
	wireWS       wireForm = iota // WebSocket text frames, each a JSON object
	wireSocketIO                 // Socket.IO EVENT packets
	wireSSE                      // Server-Sent Events
)

// control turns a /ws control frame (JSON) into this wire form.
func (w wireForm) control(frame []byte) []byte {
	switch w {
	case wireSocketIO:
		return toSocketIO(frame)
	case wireSSE:
		return sseControl(frame)
	default:
		return wsTextFrame(frame)
	}
}

// serve runs one socket until it closes: the one lifecycle of every
// transport (/ws runs open and end on its own, see ServeConn). It registers
// the client, sends greeting first (before any broadcast can reach it),
// reads on the calling goroutine, and cleans up before returning.
func (h *Hub) serve(ctx context.Context, c *Client, greeting []byte, opened string) {
	if !h.open(ctx, c, greeting, opened) {
		return
	}
	c.t.readLoop(ctx, c)
	h.end(c)
}

// open registers c and starts the check of its session; false means the
// hub is shutting down and c is already closed. After a true, end must run
// once the transport stops reading.
func (h *Hub) open(ctx context.Context, c *Client, greeting []byte, opened string) bool {
	c.send(greeting)
	if !h.register(c) {
		c.closeWith(CloseGoingAway, "server shutting down")
		c.t.finish()
		return false
	}
	// After register, so that a grant reload from now on reaches c too.
	c.refreshAccess(ctx)
	// The check queries the database: on a goroutine of its own, so that
	// the socket's reader keeps the small stack reading needs rather than
	// one grown by a query. It is bounded by its own timeout and not cut
	// short when the socket ends early (end waits for it): a context held
	// to cancel it would be kept for the socket's whole life.
	c.checked = make(chan struct{})
	go func() {
		defer close(c.checked)
		checkCtx, cancel := context.WithTimeout(ctx, sessionCheckWait)
		defer cancel()
		h.confirmSession(checkCtx, c)
	}()
	h.stats.SocketsOpened.Add(1)
	c.log.Info(opened, "role", c.principal.Role, "anonymous", c.principal.Anonymous())
	return true
}

// end closes c for good once its transport stopped reading, and
// unregisters it.
func (h *Hub) end(c *Client) {
	defer h.unregister(c)
	c.closeWith(CloseNormal, "")
	c.t.finish()
	<-c.checked
	c.dropSubscriptions()
	c.log.Info("socket closed", "code", c.closeCode, "reason", c.closeReason)
}

// pingSlots is how many ticks a keep-alive period is spread over: each
// tick pings the sockets whose turn it is (by id), so 10,000 sockets are
// not written in one burst that would hold up events behind it.
const pingSlots = 16

// RunPings sends each socket its transport's keep-alive (a WebSocket ping
// every pingPeriod, an SSE comment line every 15 s) until ctx ends: one
// sweep for the hub instead of a timer per socket. /ws sockets are written
// by the sweep itself, as the fan-out does (no goroutine per socket). A
// /ws peer that stops answering misses its pong deadline and is dropped by
// its read loop.
func (h *Hub) RunPings(ctx context.Context) {
	wsEvery := h.opts.pingPeriod()
	tick := max(min(wsEvery, sseKeepAlive)/pingSlots, time.Millisecond)
	wsTicks, sseTicks := uint64(max(wsEvery/tick, 1)), uint64(max(sseKeepAlive/tick, 1))
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var due []*Client
	for turn := uint64(0); ; turn++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		h.mu.RLock()
		for c := range h.clients {
			every := sseTicks
			if c.wire == wireWS {
				every = wsTicks
			}
			if (c.id+turn)%every == 0 {
				due = append(due, c)
			}
		}
		h.mu.RUnlock()
		for _, c := range due {
			c.t.queuePing()
		}
		h.flushAll(due)
		clear(due)
		due = due[:0]
	}
}
