package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/pgpush/pgpush/realtime/socketio"
	"github.com/pgpush/pgpush/session"
)

// dataEvents are the ChapFood events whose one argument is the payload
// itself (a channel name, a notification); other events carry an object
// whose fields are those of a /ws message ({channel, since, filter}).
var dataEvents = []string{notifyJoin, notifyLeave, notifySend, notifyChannels, notifyStats}

// socketIOMessage turns a Socket.IO event into the /ws message it means.
func socketIOMessage(ev socketio.Event) clientMessage {
	msg := clientMessage{Type: ev.Name}
	if len(ev.Args) == 0 {
		return msg
	}
	if slices.Contains(dataEvents, ev.Name) {
		msg.Data = ev.Args[0]
		return msg
	}
	if json.Unmarshal(ev.Args[0], &msg) == nil {
		msg.Type = ev.Name
	}
	return msg
}

// ServeSocketIO runs one Socket.IO client as a hub client until it leaves:
// it shares channels, rooms and notifications with /ws clients.
func (h *Hub) ServeSocketIO(ctx context.Context, s *socketio.Socket, p *session.Principal) {
	t := &sioTransport{sock: s}
	c := h.newClient(p, t, wireSocketIO)
	t.c = c
	// ChapFood's clients speak Socket.IO: they get server-stats pushes.
	c.statsListener.Store(true)
	greeting := dataFrame("connection-confirmed", map[string]any{
		"socketId":   s.ID(),
		"serverTime": time.Now().UTC().Format(timestampLayout),
	})
	h.serve(ctx, c, greeting, "socket.io client connected")
}

// sioTransport is a Socket.IO session. The session owns the connection
// (long-polling or WebSocket), its writer and its heartbeat; packets are
// queued straight into the session's bounded queue, so the hub adds no
// queue and no goroutine of its own besides the reader.
type sioTransport struct {
	c    *Client
	sock *socketio.Socket
}

func (t *sioTransport) push(packet []byte) bool { return t.emit(packet, socketio.MaxQueueBytes) }

func (t *sioTransport) pushBelow(packet []byte) bool {
	return t.emit(packet, socketio.MaxQueueBytes/2)
}

func (t *sioTransport) emit(packet []byte, limit int) bool {
	queued, err := t.sock.EmitRawWithin(packet, limit)
	switch {
	case errors.Is(err, socketio.ErrQueueFull):
		t.c.hub.stats.SlowDisconnects.Add(1)
		t.c.closeWith(CloseTryAgainLater, "client too slow")
	case err != nil:
		t.c.closeWith(CloseGoingAway, "transport closed")
	}
	return queued
}

func (t *sioTransport) drained() <-chan struct{} { return t.sock.Drained() }

// flush and ping: the session writes as soon as a packet is queued, and
// keeps its own Engine.IO heartbeat.
func (t *sioTransport) flush()     {}
func (t *sioTransport) queuePing() {}

func (t *sioTransport) closing() { t.sock.Close(t.c.closeReason) }

func (t *sioTransport) finish() { <-t.sock.Done() }

func (t *sioTransport) readLoop(ctx context.Context, c *Client) {
	flood := rate.NewLimiter(rate.Limit(c.hub.opts.MessageRate), c.hub.opts.MessageBurst)
	for {
		select {
		case <-c.closingCh:
			return
		case ev, ok := <-t.sock.Events():
			if !ok {
				c.closeWith(CloseGoingAway, "transport closed")
				return
			}
			if !flood.Allow() {
				c.closeWith(ClosePolicyViolation, "too many messages")
				return
			}
			c.dispatch(ctx, socketIOMessage(ev))
			if ev.Ack != nil {
				_ = ev.Ack()
			}
		}
	}
}
