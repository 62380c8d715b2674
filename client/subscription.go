package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"
)

// dedupWindow is how many recent event ids a subscription remembers to drop
// a repeated event. The server never repeats one (SPEC §3); this keeps a
// server-side mistake from reaching the caller twice.
const dedupWindow = 1000

// SubscribeOptions say what a subscription asks for and where its frames
// go. Every field is optional.
type SubscribeOptions struct {
	// Filter is a JSON object (SPEC §3.1): only events whose data passes it
	// arrive, e.g. {"status":"paid"} or {"total":{"gte":100}}.
	Filter json.RawMessage
	// Since is an event id: the server first replays every event on the
	// channel after it, then goes live. If that id is no longer kept,
	// OnResync is called instead of the replay.
	Since string
	// Snapshot asks first for the rows the user may see now (SPEC §3.2):
	// OnSnapshot receives them, then events strictly after them follow.
	// Not with Since.
	Snapshot bool

	// OnEvent receives each event, in order, once.
	OnEvent func(Event)
	// OnSnapshot receives the snapshot, before the first event. It is
	// called again, with the whole current state, only if the connection
	// dropped before the server had given any resume position.
	OnSnapshot func(Snapshot)
	// OnSubscribed is called each time delivery becomes active: after
	// Subscribe, and after every reconnect.
	OnSubscribed func(Subscribed)
	// OnResync is called when the server could not replay from the last
	// event id (older than its EVENT_RETENTION): events were missed, so
	// the caller should reload the state the channel describes. Live
	// delivery goes on. Without OnResync, Options.OnError gets an error
	// wrapping ErrResyncRequired.
	OnResync func()
}

// ErrResyncRequired is what Options.OnError receives for a resync_required
// frame on a subscription without OnResync.
var ErrResyncRequired = errors.New("resync required: events were missed")

// Subscription is the Client's subscription to one channel. It lasts
// across reconnects until Unsubscribe, Close, or the server ends it.
type Subscription struct {
	c       *Client
	channel string
	opts    SubscribeOptions
	// first receives the outcome of the first subscribe: nil, or why it
	// was refused. Buffered; written once.
	first chan error
	done  chan struct{}

	// Guarded by c.mu.
	lastID        string // resume point: the last event delivered, or a position
	position      string // the position of the current connection's "subscribed"
	recent        recentIDs
	active        bool   // between "subscribed" and the loss of the connection
	confirmed     bool   // first has been written
	since         string // the since of the current subscribe frame
	askedSnapshot bool   // the current subscribe frame asked for a snapshot
	snapFrames    int
	snapRows      []json.RawMessage
	lastErr       error // an error frame for this channel while active
	ended         bool
	err           error
}

// Channel is the subscription's channel.
func (s *Subscription) Channel() string { return s.channel }

// LastID is the resume point: the id of the last event delivered, or the
// server's position when none has been. Pass it as SubscribeOptions.Since
// to continue later, in another Client or process.
func (s *Subscription) LastID() string {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.lastID
}

// Done is closed when the subscription has ended.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription ended: nil after Unsubscribe, ErrClosed after
// Close, a *ServerError when the server refused it on a reconnect or ended
// it (a revoked grant).
func (s *Subscription) Err() error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.err
}

// Unsubscribe ends the subscription. No event is delivered to it after
// Unsubscribe returns. It does not wait for the server's answer, so it may
// be called from a callback.
func (s *Subscription) Unsubscribe() {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leaveLocked(s, nil)
}

// leaveLocked removes s, tells the server if connected, and ends s.
func (c *Client) leaveLocked(s *Subscription, err error) {
	if c.subs[s.channel] != s {
		return
	}
	delete(c.subs, s.channel)
	if c.conn != nil {
		if c.writeJSON(c.conn, map[string]string{"type": "unsubscribe", "channel": s.channel}) == nil {
			c.leaving[s.channel]++
		}
	}
	s.endLocked(err)
}

// Subscribe subscribes to channel and waits until the server confirms it
// (after the snapshot, if one was asked for) or refuses it. While the
// Client is reconnecting it waits for the connection, up to ctx. Each
// channel can be subscribed once at a time.
func (c *Client) Subscribe(ctx context.Context, channel string, opts SubscribeOptions) (*Subscription, error) {
	if channel == "" {
		return nil, errors.New("subscribe: empty channel name")
	}
	if len(channel) > maxChannelBytes {
		return nil, fmt.Errorf("subscribe: channel name is longer than %d bytes", maxChannelBytes)
	}
	if opts.Since != "" && opts.Snapshot {
		return nil, fmt.Errorf("subscribe %q: Since and Snapshot exclude each other", channel)
	}
	if len(opts.Filter) > 0 {
		// The server answers a filter that is not an object with an error
		// frame naming no channel, which would leave Subscribe waiting.
		f := bytes.TrimSpace(opts.Filter)
		if !json.Valid(f) || f[0] != '{' {
			return nil, fmt.Errorf("subscribe %q: filter must be a JSON object", channel)
		}
		opts.Filter = f
	}
	s := &Subscription{
		c:       c,
		channel: channel,
		opts:    opts,
		first:   make(chan error, 1),
		done:    make(chan struct{}),
		lastID:  opts.Since,
		recent:  newRecentIDs(dedupWindow),
	}

	c.mu.Lock()
	switch {
	case c.closing:
		c.mu.Unlock()
		return nil, ErrClosed
	case !c.started:
		c.mu.Unlock()
		return nil, ErrNotConnected
	case c.subs[channel] != nil:
		c.mu.Unlock()
		return nil, fmt.Errorf("subscribe %q: %w", channel, ErrAlreadySubscribed)
	}
	c.subs[channel] = s
	if c.conn != nil {
		// A failed write means a broken connection: the run goroutine
		// re-subscribes on the next one.
		_ = c.sendSubscribeLocked(c.conn, s)
	}
	c.mu.Unlock()

	select {
	case err := <-s.first:
		if err != nil {
			return nil, fmt.Errorf("subscribe %q: %w", channel, err)
		}
		return s, nil
	case <-ctx.Done():
		c.mu.Lock()
		c.leaveLocked(s, ctx.Err())
		c.mu.Unlock()
		return nil, fmt.Errorf("subscribe %q: %w", channel, ctx.Err())
	}
}

// subscribeFrame is the client's subscribe message (SPEC §3).
type subscribeFrame struct {
	Type     string          `json:"type"`
	Channel  string          `json:"channel"`
	Since    string          `json:"since,omitempty"`
	Filter   json.RawMessage `json:"filter,omitempty"`
	Snapshot bool            `json:"snapshot,omitempty"`
}

// sendSubscribeLocked sends s's subscribe frame on conn: with since when
// there is a resume point, else with snapshot when one is wanted.
func (c *Client) sendSubscribeLocked(conn *websocket.Conn, s *Subscription) error {
	f := subscribeFrame{Type: "subscribe", Channel: s.channel, Filter: s.opts.Filter}
	if s.lastID != "" {
		f.Since = s.lastID
	} else if s.opts.Snapshot {
		f.Snapshot = true
	}
	s.since = f.Since
	s.askedSnapshot = f.Snapshot
	s.active = false
	s.position = ""
	s.snapFrames = 0
	s.snapRows = nil
	s.lastErr = nil
	return c.writeJSON(conn, f)
}

// disconnectedLocked forgets what belonged to the lost connection.
func (s *Subscription) disconnectedLocked() {
	s.active = false
	s.snapFrames = 0
	s.snapRows = nil
}

// endLocked ends s with err (nil: asked for). Idempotent.
func (s *Subscription) endLocked(err error) {
	if s.ended {
		return
	}
	s.ended = true
	s.err = err
	s.snapRows = nil
	close(s.done)
	if !s.confirmed {
		s.confirmed = true
		if err == nil {
			err = errors.New("unsubscribed before the server confirmed")
		}
		s.first <- err
	}
}

// serverFrame is any frame from the server; which fields are set depends
// on the kind. An event has "event", "channel" and "id".
type serverFrame struct {
	Type     string            `json:"type"`
	Channel  string            `json:"channel"`
	Message  string            `json:"message"`
	Position json.RawMessage   `json:"position"`
	Rows     []json.RawMessage `json:"rows"`
	More     bool              `json:"more"`

	ID        json.RawMessage `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp string          `json:"timestamp"`
}

// handleFrame acts on one frame. It runs on the run goroutine; callbacks
// are called after c.mu is released.
func (c *Client) handleFrame(conn *websocket.Conn, b []byte) {
	var f serverFrame
	if err := json.Unmarshal(b, &f); err != nil {
		c.onError(fmt.Errorf("malformed frame from the server: %w", err))
		return
	}
	if f.Event != "" && f.Channel != "" && len(f.ID) > 0 {
		c.handleEvent(f)
		return
	}
	switch f.Type {
	case "pong", "connected":
	case "snapshot":
		c.handleSnapshot(f)
	case "subscribed":
		c.handleSubscribed(conn, f)
	case "unsubscribed":
		c.handleUnsubscribed(f)
	case "resync_required":
		c.handleResync(f)
	case "error":
		c.handleError(f)
	case "":
		c.onError(fmt.Errorf("frame from the server without a type: %.200s", b))
	default:
		if c.opts.OnBroadcast != nil {
			c.opts.OnBroadcast(Broadcast{Type: f.Type, Frame: append(json.RawMessage(nil), b...)})
		}
	}
}

func (c *Client) handleEvent(f serverFrame) {
	id, err := eventID(f.ID)
	if err != nil {
		c.onError(fmt.Errorf("event on %q: %w", f.Channel, err))
		return
	}
	ts, err := time.Parse(time.RFC3339Nano, f.Timestamp)
	if err != nil {
		c.onError(fmt.Errorf("event %s on %q: bad timestamp %q", id, f.Channel, f.Timestamp))
		return
	}
	ev := Event{ID: id, Channel: f.Channel, Event: f.Event, Data: f.Data, Timestamp: ts}
	if len(ev.Data) == 0 {
		ev.Data = json.RawMessage("{}")
	}
	c.mu.Lock()
	s := c.subs[f.Channel]
	// Events of a subscription given up may still be in flight; a new
	// subscription to the channel gets its own only after "subscribed".
	if s == nil || !s.active || !s.recent.add(id) {
		c.mu.Unlock()
		return
	}
	s.lastID = id
	fn := s.opts.OnEvent
	c.mu.Unlock()
	if fn != nil {
		fn(ev)
	}
}

func (c *Client) handleSnapshot(f serverFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.subs[f.Channel]
	if s == nil || !s.askedSnapshot || s.active {
		return
	}
	s.snapFrames++
	s.snapRows = append(s.snapRows, f.Rows...)
}

func (c *Client) handleSubscribed(conn *websocket.Conn, f serverFrame) {
	position, _ := eventID(f.Position) // absent while the log is empty
	c.mu.Lock()
	s := c.subs[f.Channel]
	if s == nil || s.active {
		c.mu.Unlock()
		return
	}
	var snap *Snapshot
	if s.askedSnapshot {
		if s.snapFrames == 0 {
			// The server ignored "snapshot": it is live now, but the
			// caller asked for rows first. Undo it rather than pretend.
			delete(c.subs, s.channel)
			if c.writeJSON(conn, map[string]string{"type": "unsubscribe", "channel": s.channel}) == nil {
				c.leaving[s.channel]++
			}
			s.endLocked(ErrSnapshotUnsupported)
			c.mu.Unlock()
			return
		}
		snap = &Snapshot{Channel: s.channel, Rows: s.snapRows, Position: position}
		s.snapRows = nil
	}
	if s.lastID == "" {
		// No event yet: resume from the server's position after a drop.
		s.lastID = position
	}
	s.position = position
	s.active = true
	info := Subscribed{Channel: s.channel, Resumed: s.since != "", Since: s.since, Position: position}
	onSnapshot, onSubscribed := s.opts.OnSnapshot, s.opts.OnSubscribed
	first := !s.confirmed
	s.confirmed = true
	c.mu.Unlock()

	if snap != nil && onSnapshot != nil {
		onSnapshot(*snap)
	}
	if onSubscribed != nil {
		onSubscribed(info)
	}
	if first {
		s.first <- nil
	}
}

func (c *Client) handleUnsubscribed(f serverFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leaving[f.Channel] > 0 {
		c.leaving[f.Channel]--
		return
	}
	s := c.subs[f.Channel]
	if s == nil {
		return
	}
	// Not asked for: the server ended it (a revoked grant), after an error
	// frame saying why.
	delete(c.subs, f.Channel)
	err := s.lastErr
	if err == nil {
		err = ErrUnsubscribedByServer
	}
	s.endLocked(err)
}

func (c *Client) handleResync(f serverFrame) {
	c.mu.Lock()
	s := c.subs[f.Channel]
	if s == nil {
		c.mu.Unlock()
		return
	}
	// What follows is live from the position of this subscription: resume
	// from there, not from the id the server no longer has.
	s.lastID = s.position
	fn := s.opts.OnResync
	c.mu.Unlock()
	if fn != nil {
		fn()
		return
	}
	c.onError(fmt.Errorf("%s: %w", f.Channel, ErrResyncRequired))
}

func (c *Client) handleError(f serverFrame) {
	se := &ServerError{Channel: f.Channel, Message: f.Message}
	if f.Channel != "" {
		c.mu.Lock()
		if c.leaving[f.Channel] > 0 {
			// About a subscription given up: nobody waits for it.
			c.mu.Unlock()
			return
		}
		s := c.subs[f.Channel]
		switch {
		case s != nil && !s.active:
			// The answer to its subscribe: refused, also on a reconnect
			// (a grant revoked meanwhile); retrying would be refused again.
			delete(c.subs, f.Channel)
			s.endLocked(se)
			c.mu.Unlock()
			return
		case s != nil:
			// The reason for the "unsubscribed" that follows.
			s.lastErr = se
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	c.onError(se)
}

// recentIDs remembers the last n ids. Ids are opaque and not ordered, so
// a repeat is found by membership.
type recentIDs struct {
	set  map[string]struct{}
	ring []string
	next int
}

func newRecentIDs(n int) recentIDs {
	return recentIDs{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add records id and reports whether it was new.
func (r *recentIDs) add(id string) bool {
	if _, ok := r.set[id]; ok {
		return false
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.next = (r.next + 1) % len(r.ring)
	r.set[id] = struct{}{}
	return true
}
