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
	c := h.newClient(p, true)
	// Before register: connection-confirmed must be first.
	c.refreshAccess(ctx)
	// ChapFood's clients speak Socket.IO: they get server-stats pushes.
	c.statsListener.Store(true)
	c.send(dataFrame("connection-confirmed", map[string]any{
		"socketId":   s.ID(),
		"serverTime": time.Now().UTC().Format(timestampLayout),
	}))
	if !h.register(c) {
		s.Close("server shutting down")
		return
	}
	defer h.unregister(c)
	h.confirmSession(ctx, c)
	h.stats.SocketsOpened.Add(1)
	c.log.Info("socket.io client connected", "role", p.Role, "anonymous", p.Anonymous())

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.socketIOWritePump(s)
	}()
	flood := rate.NewLimiter(rate.Limit(h.opts.MessageRate), h.opts.MessageBurst)
read:
	for {
		select {
		case <-c.closing:
			break read
		case ev, ok := <-s.Events():
			if !ok {
				break read
			}
			if !flood.Allow() {
				c.closeWith(ClosePolicyViolation, "too many messages")
				break read
			}
			c.dispatch(ctx, socketIOMessage(ev))
			if ev.Ack != nil {
				_ = ev.Ack()
			}
		}
	}
	c.closeWith(CloseNormal, "")
	<-writerDone
	c.dropSubscriptions()
	c.log.Info("socket.io client disconnected", "code", c.closeCode, "reason", c.closeReason)
}

// socketIOWritePump hands queued packets to the Socket.IO session, which
// owns the transport (long-polling or WebSocket) and its own bounded queue.
func (c *Client) socketIOWritePump(s *socketio.Socket) {
	var batch [][]byte
	for {
		select {
		case <-c.queue.ready:
			batch = c.queue.drain(batch[:0])
			for _, packet := range batch {
				if err := s.EmitRaw(packet); err != nil {
					if errors.Is(err, socketio.ErrQueueFull) {
						c.hub.stats.SlowDisconnects.Add(1)
						c.closeWith(CloseTryAgainLater, "client too slow")
					} else {
						c.closeWith(CloseGoingAway, "transport closed")
					}
					return
				}
			}
			clear(batch)
		case <-c.closing:
			s.Close(c.closeReason)
			return
		case <-s.Done():
			c.closeWith(CloseGoingAway, "transport closed")
			return
		}
	}
}
