package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/session"
)

var (
	errClientClosing        = errors.New("client is closing")
	errTooManySubscriptions = errors.New("too many subscriptions on this socket")
	errSubscriptionEnded    = errors.New("subscription ended")
)

// Client is one socket, /ws or Socket.IO. Its transport (ws.go,
// socketio.go) owns the connection: one goroutine writes what the queue
// holds, one reads and calls handle. Everything else talks to it through
// send and closeWith.
type Client struct {
	id        uint64
	hub       *Hub
	principal *session.Principal
	queue     *sendQueue
	log       *slog.Logger
	// originID names this socket across instances ("<instance>:<id>").
	originID string
	// socketIO selects the Socket.IO wire form for every frame.
	socketIO bool
	// conn is the /ws connection; nil for Socket.IO clients.
	conn *websocket.Conn
	// statsListener: the client used the notification features, so it
	// gets server-stats pushes.
	statsListener atomic.Bool
	// wakeMark is the fan-out round that last queued to this client; only
	// Dispatch's goroutine touches it.
	wakeMark uint64
	// notifyEveryone caches the principal's access to notifications sent
	// to everyone, nil when it may not receive them; refreshed when
	// grants change.
	notifyEveryone atomic.Pointer[session.Access]

	closeOnce   sync.Once
	closing     chan struct{}
	closeCode   int
	closeReason string

	mu   sync.Mutex // guards subs
	subs map[string]*subscription
}

// newClient makes a client for the hub; the transport registers it.
func (h *Hub) newClient(p *session.Principal, socketIO bool) *Client {
	c := &Client{
		id:        h.nextID.Add(1),
		hub:       h,
		principal: p,
		socketIO:  socketIO,
		queue:     newSendQueue(h.opts.QueueBytes, h.opts.QueueMessages),
		closing:   make(chan struct{}),
		subs:      make(map[string]*subscription),
	}
	c.log = h.log.With("conn_id", c.id, "user_id", p.UserID)
	c.originID = h.instance + ":" + strconv.FormatUint(c.id, 10)
	return c
}

// refreshAccess re-reads the cached per-client rights.
func (c *Client) refreshAccess(ctx context.Context) {
	access, err := c.hub.auth.Access(ctx, c.principal, db.NotifyEveryoneChannel)
	if err != nil {
		c.notifyEveryone.Store(nil)
		return
	}
	c.notifyEveryone.Store(&access)
}

// origin names this socket across instances.
func (c *Client) origin() string { return c.originID }

// send queues a control frame (in /ws form; converted for Socket.IO)
// without blocking.
func (c *Client) send(frame []byte) bool {
	if c.socketIO {
		frame = toSocketIO(frame)
	}
	return c.sendWire(frame)
}

// sendWire queues a frame already in this client's wire form and wakes
// the writer. A full queue means the peer is too slow: it is closed with
// 1013 and the caller moves on.
func (c *Client) sendWire(frame []byte) bool {
	if !c.queueWire(frame) {
		return false
	}
	signal(c.queue.ready)
	return true
}

// queueWire is sendWire without the wake-up; the caller wakes the writer.
func (c *Client) queueWire(frame []byte) bool {
	select {
	case <-c.closing:
		return false
	default:
	}
	if !c.queue.pushQuiet(frame, c.queue.maxBytes, c.queue.maxMessages) {
		c.hub.stats.DroppedSlow.Add(1)
		if c.closeWith(CloseTryAgainLater, "client too slow") {
			c.hub.stats.SlowDisconnects.Add(1)
		}
		return false
	}
	return true
}

// closeWith asks the write pump to send a close frame and end the socket.
// The first reason wins; it reports whether this call was the first.
func (c *Client) closeWith(code int, reason string) bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closeCode = code
		c.closeReason = reason
		close(c.closing)
	})
	return first
}

// handle acts on one client frame. Bad input is answered with an error
// frame; the socket stays open.
func (c *Client) handle(ctx context.Context, frame []byte) {
	msg, err := parseClientMessage(frame)
	if err != nil {
		c.send(errorFrame(err.Error()))
		return
	}
	c.dispatch(ctx, msg)
}

// dispatch acts on one decoded client message, whatever its transport.
func (c *Client) dispatch(ctx context.Context, msg clientMessage) {
	if err := msg.checkText(); err != nil {
		c.send(refusalFrame(msg.Type, err))
		return
	}
	switch msg.Type {
	case "ping":
		c.send(pongFrame)
	case "subscribe":
		c.subscribe(ctx, msg)
	case "unsubscribe":
		c.unsubscribe(msg)
	case "publish":
		c.publish(ctx, msg)
	case roomJoin:
		c.joinRoom(ctx, msg)
	case roomLeave:
		c.leaveRoom(ctx, msg)
	case roomSend:
		c.sendMessage(ctx, msg)
	case notifyJoin:
		c.joinChannel(ctx, msg)
	case notifyLeave:
		c.leaveChannel(msg)
	case notifySend:
		c.sendNotification(ctx, msg)
	case notifyChannels:
		c.getChannels()
	case notifyStats:
		c.getStats()
	default:
		c.send(errorFrame(fmt.Sprintf("unknown message type %q", truncate(msg.Type, 64))))
	}
}

// truncate shortens s to at most n bytes on a rune boundary, so the result
// stays valid UTF-8 (PostgreSQL rejects anything else).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (c *Client) subscribe(ctx context.Context, msg clientMessage) {
	if msg.Channel == "" {
		c.send(errorFrame(`missing field "channel"`))
		return
	}
	since, resume, err := parseSince(msg.Since)
	if err != nil {
		c.send(channelErrorFrame(msg.Channel, err.Error()))
		return
	}
	s, upTo, existing, err := c.addSub(ctx, msg.Channel, func(s *subscription) { s.filter = msg.Filter })
	if err != nil {
		c.send(channelErrorFrame(msg.Channel, accessMessage(err, msg.Channel)))
		return
	}
	if existing {
		c.send(channelFrame("subscribed", msg.Channel))
		return
	}
	c.send(subscribedFrame(msg.Channel, upTo))
	if resume {
		c.replay(ctx, s, since, upTo)
	}
	s.activate()
}

// replay sends the channel's events after the client's last one up to the
// hub's position at subscription time; later ones were buffered live.
func (c *Client) replay(ctx context.Context, s *subscription, since int64, upTo Position) {
	ctx, cancel := context.WithTimeout(ctx, c.hub.opts.ReplayTimeout)
	defer cancel()
	from, err := c.hub.store.PositionOf(ctx, since)
	if err == nil {
		s.mu.Lock()
		s.after = from
		s.mu.Unlock()
	}
	if errors.Is(err, ErrResyncRequired) {
		c.send(channelFrame("resync_required", s.channel))
		return
	}
	if err != nil {
		c.log.Error("resume subscription", "channel", s.channel, "err", err)
		c.send(channelFrame("resync_required", s.channel))
		return
	}
	err = c.hub.store.Replay(ctx, s.channel, from, upTo, func(ev *Event) error {
		// Checked per event under the subscription's lock, which
		// endSubscription holds while it ends s and says so: no replayed
		// event can follow "unsubscribed" after a revoke.
		for {
			s.mu.Lock()
			if s.ended {
				s.mu.Unlock()
				return errSubscriptionEnded
			}
			if !s.visible(ev, s.access) {
				s.mu.Unlock()
				return nil
			}
			pushed := c.queue.pushBelow(ev.frame(c.socketIO, false), c.queue.maxBytes/2, c.queue.maxMessages/2)
			s.mu.Unlock()
			if pushed {
				c.hub.stats.Delivered.Add(1)
				return nil
			}
			select {
			case <-c.queue.room:
			case <-s.endedCh:
				return errSubscriptionEnded
			case <-c.closing:
				return errClientClosing
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	if err != nil && !errors.Is(err, errClientClosing) && !errors.Is(err, errSubscriptionEnded) {
		c.log.Error("replay", "channel", s.channel, "err", err)
		// A partial replay would leave a silent gap: make the client resync.
		c.send(channelFrame("resync_required", s.channel))
	}
}

func accessMessage(err error, channel string) string {
	switch {
	case errors.Is(err, session.ErrUnknownChannel):
		return fmt.Sprintf("unknown channel %q", channel)
	case errors.Is(err, session.ErrForbidden):
		return fmt.Sprintf("not allowed on channel %q", channel)
	case errors.Is(err, errTooManySubscriptions):
		return err.Error()
	default:
		return "cannot check access right now, try again"
	}
}

func (c *Client) unsubscribe(msg clientMessage) {
	if msg.Channel == "" {
		c.send(errorFrame(`missing field "channel"`))
		return
	}
	c.mu.Lock()
	s, ok := c.subs[msg.Channel]
	delete(c.subs, msg.Channel)
	c.mu.Unlock()
	if ok {
		c.hub.removeSubscription(s)
		s.end()
	}
	c.send(channelFrame("unsubscribed", msg.Channel))
}

// recheckAccess closes the gap between checking access and adding s: if
// grants were reloaded meanwhile, Reauthorize may not have seen s, so check
// again and undo the subscription when it is no longer allowed.
func (c *Client) recheckAccess(ctx context.Context, s *subscription, gen uint64) error {
	if c.hub.authGen.Load() == gen {
		return nil
	}
	access, err := c.hub.auth.Access(ctx, c.principal, s.channel)
	if err != nil {
		c.leave(s.channel)
		return err
	}
	s.setAccess(access)
	return nil
}

// endSubscription ends s from outside the read pump (a revoked grant).
func (c *Client) endSubscription(s *subscription, reason string) {
	c.mu.Lock()
	if c.subs[s.channel] != s {
		c.mu.Unlock()
		return
	}
	delete(c.subs, s.channel)
	c.mu.Unlock()
	c.hub.removeSubscription(s)
	s.mu.Lock()
	s.endLocked()
	c.send(channelErrorFrame(s.channel, reason))
	c.send(channelFrame("unsubscribed", s.channel))
	s.mu.Unlock()
}

func (c *Client) dropSubscriptions() {
	c.mu.Lock()
	subs := c.subs
	c.subs = map[string]*subscription{}
	c.mu.Unlock()
	for _, s := range subs {
		c.hub.removeSubscription(s)
		s.end()
	}
}

func (c *Client) publish(ctx context.Context, msg clientMessage) {
	if msg.Channel == "" || msg.Event == "" {
		c.send(errorFrame(`publish needs "channel" and "event"`))
		return
	}
	data := msg.Data
	if len(data) == 0 || string(data) == "null" {
		data = json.RawMessage("{}")
	}
	if data[0] != '{' {
		c.send(channelErrorFrame(msg.Channel, `"data" must be a JSON object`))
		return
	}
	if db.ReservedChannel(msg.Channel) {
		c.send(channelErrorFrame(msg.Channel, "rooms and notifications have their own messages (send-message, send-notification)"))
		return
	}
	access, err := c.hub.auth.Access(ctx, c.principal, msg.Channel)
	if err == nil && !access.Publish {
		err = session.ErrForbidden
	}
	if err != nil {
		c.send(channelErrorFrame(msg.Channel, accessMessage(err, msg.Channel)))
		return
	}
	id, err := c.hub.store.Publish(ctx, msg.Channel, msg.Event, data)
	if err != nil {
		c.log.Error("publish", "channel", msg.Channel, "err", err)
		c.send(channelErrorFrame(msg.Channel, "publish failed"))
		return
	}
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Channel string `json:"channel"`
		ID      string `json:"id"`
	}{"published", msg.Channel, fmt.Sprint(id)})
	c.send(b)
}
