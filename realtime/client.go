package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/realtime/filter"
	"github.com/pgpush/pgpush/session"
)

var (
	errClientClosing        = errors.New("client is closing")
	errTooManySubscriptions = errors.New("too many subscriptions on this socket")
	errSubscriptionEnded    = errors.New("subscription ended")
)

// Client is one socket, /ws or Socket.IO. Its transport owns the
// connection; everything else talks to the client through send and
// closeWith, and the fan-out through queueWire.
type Client struct {
	id        uint64
	hub       *Hub
	principal *session.Principal
	t         transport
	wire      wireForm
	log       *slog.Logger
	// originID names this socket across instances ("<instance>:<id>").
	originID string
	// statsListener: the client used the notification features, so it
	// gets server-stats pushes.
	statsListener atomic.Bool
	// wakeMark is the fan-out round that last queued to this client; only
	// Dispatch's goroutine touches it.
	wakeMark uint64
	// inline is the writer of a /ws socket, which the fan-out and the ping
	// sweep run on their own goroutines (pump.flushInline); nil for other
	// transports.
	inline *pump
	// held: the client is in the hub's held list (Options.WriteDelay);
	// guarded by the hub's heldMu. wroteAt is when the fan-out last wrote
	// to it (Unix ns).
	held    bool
	wroteAt atomic.Int64
	// notifyEveryone caches the principal's rule for notifications sent
	// to everyone (nil: not allowed); refreshed when grants change.
	notifyEveryone atomic.Pointer[everyoneRule]

	// checked closes when the check of the session, begun by open, is
	// over.
	checked chan struct{}

	closeOnce sync.Once
	closingCh chan struct{}
	// closed is closingCh for the fan-out's checks: a flag in a cache
	// line the fan-out touches anyway, where a channel is one more miss
	// per socket.
	closed      atomic.Bool
	closeCode   int
	closeReason string

	// subs are this socket's subscriptions by channel: part of the hub's
	// registry, guarded by the hub's mu.
	subs map[string]*subscription
}

// newClient makes a client for the hub; serve registers it.
func (h *Hub) newClient(p *session.Principal, t transport, wire wireForm) *Client {
	c := &Client{
		id:        h.nextID.Add(1),
		hub:       h,
		principal: p,
		t:         t,
		wire:      wire,
		closingCh: make(chan struct{}),
		subs:      make(map[string]*subscription),
	}
	c.log = h.log.With("conn_id", c.id, "user_id", p.UserID)
	c.originID = h.instance + ":" + strconv.FormatUint(c.id, 10)
	return c
}

// everyoneRule is what a principal may receive of notifications sent to
// everyone: the grant's --match, compiled.
type everyoneRule struct{ match *filter.Filter }

// refreshAccess re-reads the cached per-client rights.
func (c *Client) refreshAccess(ctx context.Context) {
	access, err := c.hub.auth.Access(ctx, c.principal, db.NotifyEveryoneChannel)
	if err != nil {
		c.notifyEveryone.Store(nil)
		return
	}
	c.notifyEveryone.Store(&everyoneRule{match: filter.MatchAttrs(access.Match)})
}

// mayReceiveEveryone reports whether a notification sent to everyone
// reaches this socket: the grant's --match applies to it too.
func (c *Client) mayReceiveEveryone(ev *Event) bool {
	r := c.notifyEveryone.Load()
	return r != nil && r.match.Match(ev.fields())
}

// origin names this socket across instances.
func (c *Client) origin() string { return c.originID }

// send queues a control frame (in /ws form; converted for the transport)
// without blocking.
func (c *Client) send(frame []byte) bool {
	return c.sendWire(c.wire.control(frame))
}

// sendWire queues a frame already in this client's wire form and wakes
// the writer.
func (c *Client) sendWire(frame []byte) bool {
	if !c.queueWire(frame) {
		return false
	}
	c.t.flush()
	return true
}

// queueWire is sendWire without the wake-up; the caller flushes. A full
// queue means the peer is too slow: it is closed with 1013 and the caller
// moves on.
func (c *Client) queueWire(frame []byte) bool {
	if c.isClosing() {
		return false
	}
	if !c.t.push(frame) {
		c.hub.stats.DroppedSlow.Add(1)
		if c.closeWith(CloseTryAgainLater, "client too slow") {
			c.hub.stats.SlowDisconnects.Add(1)
		}
		return false
	}
	return true
}

func (c *Client) lastWrite() time.Time { return time.Unix(0, c.wroteAt.Load()) }

// isClosing reports whether closeWith was called.
func (c *Client) isClosing() bool { return c.closed.Load() }

// closeWith asks the transport to send a close frame and end the socket.
// The first reason wins; it reports whether this call was the first.
func (c *Client) closeWith(code int, reason string) bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closeCode = code
		c.closeReason = reason
		c.closed.Store(true)
		close(c.closingCh)
	})
	if first && c.t != nil {
		c.t.closing()
	}
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
	// Compiled once here; nothing decodes the filter per event.
	f, err := filter.Compile(msg.Filter)
	if err != nil {
		c.send(channelErrorFrame(msg.Channel, err.Error()))
		return
	}
	if msg.Snapshot {
		c.snapshotSubscribe(ctx, msg.Channel, f)
		return
	}
	s, upTo, existing, err := c.addSub(ctx, msg.Channel, f, nil)
	if err != nil {
		c.send(channelErrorFrame(msg.Channel, accessMessage(err, msg.Channel)))
		return
	}
	if existing {
		// Subscribing again replaces the filter (SPEC §3); delivery goes
		// on without a gap, so there is nothing to replay.
		c.hub.setFilter(s, f)
		c.send(channelFrame("subscribed", msg.Channel))
		return
	}
	c.send(subscribedFrame(msg.Channel, upTo))
	var window []delivery
	if resume {
		window = c.replay(ctx, []*subscription{s}, []Position{upTo}, since)
	}
	activateTogether([]*subscription{s}, window)
}

// subscribeStream subscribes to channels for a stream whose one resume id
// covers them all (SSE's Last-Event-ID): events go out in position order
// across the channels, replayed and live alike, so that a resume after
// any id the client saw has no gap and no duplicate. Subscribing channel
// by channel would replay the second channel's older events after the
// first one's live ones.
func (c *Client) subscribeStream(ctx context.Context, channels []string, since, rawFilter json.RawMessage) {
	sinceID, resume, err := parseSince(since)
	if err == nil {
		var f *filter.Filter
		if f, err = filter.Compile(rawFilter); err == nil {
			c.subscribeAll(ctx, channels, f, sinceID, resume)
			return
		}
	}
	for _, ch := range channels {
		c.send(channelErrorFrame(ch, err.Error()))
	}
}

func (c *Client) subscribeAll(ctx context.Context, channels []string, f *filter.Filter, since int64, resume bool) {
	var subs []*subscription
	var upTo []Position
	for _, ch := range channels {
		s, at, existing, err := c.addSub(ctx, ch, f, nil)
		if err != nil {
			c.send(channelErrorFrame(ch, accessMessage(err, ch)))
			continue
		}
		if existing {
			continue // named twice
		}
		c.send(subscribedFrame(ch, at))
		subs, upTo = append(subs, s), append(upTo, at)
	}
	var window []delivery
	if resume && len(subs) > 0 {
		window = c.replay(ctx, subs, upTo, since)
	}
	activateTogether(subs, window)
}

// replay sends subs' events after the client's event since, merged in
// position order, each channel up to the hub's position when its
// subscription was registered (upTo); later ones were buffered live. The
// events after the first registration and before a later one's are
// returned instead of sent: activateTogether merges them with the live
// buffers, which may hold older events of another channel.
func (c *Client) replay(ctx context.Context, subs []*subscription, upTo []Position, since int64) (window []delivery) {
	ctx, cancel := context.WithTimeout(ctx, c.hub.opts.ReplayTimeout)
	defer cancel()
	resync := func() {
		for _, s := range subs {
			c.send(channelFrame("resync_required", s.channel))
		}
	}
	from, err := c.hub.store.PositionOf(ctx, since)
	if errors.Is(err, ErrResyncRequired) {
		resync()
		return nil
	}
	if err != nil {
		c.log.Error("resume subscription", "err", err)
		resync()
		return nil
	}
	channels := make([]string, len(subs))
	first, last := upTo[0], upTo[0]
	for i, s := range subs {
		s.mu.Lock()
		s.after = from
		s.mu.Unlock()
		channels[i] = s.channel
		if first.After(upTo[i]) {
			first = upTo[i]
		}
		if upTo[i].After(last) {
			last = upTo[i]
		}
	}
	err = c.hub.store.Replay(ctx, channels, from, last, func(ev *Event) error {
		i := slices.Index(channels, ev.Channel)
		if i < 0 || ev.Pos.After(upTo[i]) {
			return nil // not asked for, or in the live buffer
		}
		s := subs[i]
		if ev.Pos.After(first) {
			if out := s.judge(ev); out != nil {
				window = append(window, delivery{s, out})
			}
			return nil
		}
		pushed, err := c.pushPaced(ctx, s, func() []byte {
			if out := s.judge(ev); out != nil {
				return out.frame(c.wire, false)
			}
			return nil
		})
		if pushed {
			c.hub.stats.Delivered.Add(1)
		}
		if errors.Is(err, errSubscriptionEnded) && !allEnded(subs) {
			return nil // one channel revoked: the others' replay goes on
		}
		return err
	})
	if err != nil && !errors.Is(err, errClientClosing) && !errors.Is(err, errSubscriptionEnded) {
		c.log.Error("replay", "channels", channels, "err", err)
		// A partial replay would leave a silent gap: make the client resync.
		resync()
	}
	return window
}

func allEnded(subs []*subscription) bool {
	for _, s := range subs {
		s.mu.Lock()
		ended := s.ended
		s.mu.Unlock()
		if !ended {
			return false
		}
	}
	return true
}

// pushPaced queues the frame next gives (nil: nothing to send) as soon as
// the queue is under half its cap, for a replay or a snapshot, which must
// leave room for live events and wait for a slow reader rather than
// overflow. It checks s per attempt under s.mu, which endSubscription holds
// while it ends s and says so: nothing queued here can follow
// "unsubscribed" after a revoke. It reports whether a frame was queued.
func (c *Client) pushPaced(ctx context.Context, s *subscription, next func() []byte) (bool, error) {
	for {
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			return false, errSubscriptionEnded
		}
		frame := next()
		if frame == nil {
			s.mu.Unlock()
			return false, nil
		}
		pushed := c.t.pushBelow(frame)
		s.mu.Unlock()
		if pushed {
			return true, nil
		}
		select {
		case <-c.t.drained():
		case <-s.endedCh:
			return false, errSubscriptionEnded
		case <-c.closingCh:
			return false, errClientClosing
		case <-ctx.Done():
			return false, ctx.Err()
		}
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
