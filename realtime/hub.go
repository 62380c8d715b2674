package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/realtime/filter"
	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/triggers"
)

// Authorizer decides who may subscribe and publish. It is consulted on
// subscribe, on publish and when grants change.
type Authorizer interface {
	Access(ctx context.Context, p *session.Principal, channel string) (session.Access, error)
}

// EventStore is the event log as the hub needs it: looking up the
// position of a client's last event and replaying a channel from there.
type EventStore interface {
	// PositionOf returns the delivery position of event id, or an error
	// wrapping ErrResyncRequired when it is no longer kept.
	PositionOf(ctx context.Context, id int64) (Position, error)
	// Replay calls fn for each event on channels after from and at most
	// to, in position order.
	Replay(ctx context.Context, channels []string, from, to Position, fn func(*Event) error) error
	// Publish records a custom event.
	Publish(ctx context.Context, channel, event string, data json.RawMessage) (int64, error)
	// Announce records an event whose data is the frame members receive.
	Announce(ctx context.Context, channel, event string, frame json.RawMessage, origin string) error
	// SendRoomMessage stores a chat message and emits it to the room;
	// authenticated: sender is a logged-in user's e-mail.
	SendRoomMessage(ctx context.Context, room, sender, message, origin string, authenticated bool) error
	// SendNotification stores a notification frame and emits it.
	SendNotification(ctx context.Context, channel string, frame json.RawMessage, origin string) (int64, error)
	// Snapshot reads the rows of the table watched on channel in one
	// consistent snapshot (narrowed by eqs), which it returns as
	// pg_snapshot text. read may scan the rows several times; each scan
	// sees the same rows.
	Snapshot(ctx context.Context, channel string, eqs []triggers.Equal, read func(scan func(func(json.RawMessage) error) error) error) (string, error)
	// ClaimPending takes the channel's notifications no socket received
	// that visible accepts (frame: the notification-received frame).
	ClaimPending(ctx context.Context, channel string, retention time.Duration, visible func(frame json.RawMessage) bool) ([]db.PendingNotification, error)
}

// ErrResyncRequired means a resume point is older than the retention.
var ErrResyncRequired = errors.New("resync required")

// Options tune the hub. Zero values mean the documented defaults.
type Options struct {
	WriteWait        time.Duration // 10s: time allowed to write one frame
	PongWait         time.Duration // 60s: time allowed between a ping and its pong
	MaxFrameBytes    int64         // 64 KiB: larger client frames close with 1009
	QueueBytes       int           // 1 MiB: outbox cap per socket before 1013
	QueueMessages    int           // 4096: outbox cap in frames
	MaxPendingEvents int           // 10000: live events held while a subscription replays
	MaxSubscriptions int           // 100 per socket
	ReplayTimeout    time.Duration // 30s: one subscribe's replay
	MessageRate      float64       // 20: client frames per second, sustained
	MessageBurst     int           // 60: client frames allowed in a burst; past the rate, 1008
	Retention        time.Duration // 24h: how long undelivered notifications wait for a member
	SnapshotMaxRows  int           // 10000: rows one snapshot subscribe may return
	// WriteDelay, when set, is the least time between two fan-out writes
	// to one /ws socket: an event for a socket written less than
	// WriteDelay ago waits for the rest of it, and the events that come
	// meanwhile go out in the same write. A socket written longer ago is
	// written at once, so sparse events are not delayed. It trades latency
	// (up to WriteDelay more) for server CPU, which under fan-out is mostly
	// one write per delivery. 0 (the default) writes at once.
	WriteDelay time.Duration
}

func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.WriteWait, 10*time.Second)
	def(&o.PongWait, 60*time.Second)
	def(&o.ReplayTimeout, 30*time.Second)
	def(&o.Retention, 24*time.Hour)
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = 64 << 10
	}
	defInt(&o.QueueBytes, 1<<20)
	defInt(&o.QueueMessages, 4096)
	defInt(&o.MaxPendingEvents, 10000)
	defInt(&o.MaxSubscriptions, 100)
	defInt(&o.SnapshotMaxRows, 10000)
	defInt(&o.MessageBurst, 60)
	if o.MessageRate <= 0 {
		o.MessageRate = 20
	}
	return o
}

// pingPeriod must be shorter than PongWait so a healthy peer always answers in time.
func (o Options) pingPeriod() time.Duration { return o.PongWait * 9 / 10 }

// Hub routes events to subscriptions. It holds no goroutine of its own:
// Dispatch runs on the listener's goroutine and pushes onto each socket's
// non-blocking queue, so one slow socket never delays another.
type Hub struct {
	opts     Options
	log      *slog.Logger
	auth     Authorizer
	store    EventStore
	nextID   atomic.Uint64
	instance string // random, names this process in event origins
	started  time.Time
	// delivered carries ids of notification events this instance put in
	// front of at least one member, to be marked no longer pending.
	delivered chan int64

	// mu guards the registry (channels, clients, and each client's subs;
	// see registry.go).
	mu       sync.RWMutex
	channels map[string]*filter.Index[*subscription]
	clients  map[*Client]struct{}
	closed   bool
	// position is the last dispatched event. It is written under the read
	// lock (by the single dispatching goroutine) and read under the write
	// lock by subscribe, which is what makes "replay up to position, then
	// live" gapless.
	position atomic.Pointer[Position]

	clientsWG sync.WaitGroup
	stats     Stats
	// authGen counts grant reloads; a subscribe that raced one checks again.
	authGen atomic.Uint64
	// wakeRound numbers Dispatch's wake-up rounds; only Dispatch touches it.
	wakeRound uint64
	// sessionLive, when set, re-checks a socket's session once it is
	// registered: a logout announced between the session lookup and the
	// registration would otherwise leave the socket open.
	sessionLive func(ctx context.Context, sessionID string) (bool, error)
	latency     func(time.Duration)

	// held are the clients whose fan-out writes wait for RunWriteDelay.
	heldMu sync.Mutex
	held   []*Client
}

// Stats are the hub's running counters, read by /metrics.
type Stats struct {
	Received        atomic.Int64 // events dispatched by the listener
	Delivered       atomic.Int64 // event frames queued to sockets
	DroppedSlow     atomic.Int64 // frames not queued: socket too slow (1013)
	DroppedResuming atomic.Int64 // live events not held: resuming socket too far behind
	SocketsOpened   atomic.Int64
	SlowDisconnects atomic.Int64
	FanoutWrites    atomic.Int64 // writes the fan-out made to /ws sockets
}

// NewHub makes a hub. start is the position of the last event that
// existed before this instance began listening.
func NewHub(opts Options, auth Authorizer, store EventStore, logger *slog.Logger) *Hub {
	h := &Hub{
		opts:      opts.withDefaults(),
		log:       logger,
		auth:      auth,
		store:     store,
		instance:  randomHex(6),
		started:   time.Now(),
		delivered: make(chan int64, 1024),
		channels:  make(map[string]*filter.Index[*subscription]),
		clients:   make(map[*Client]struct{}),
	}
	h.position.Store(&Position{})
	return h
}

// Stats returns the hub's counters.
func (h *Hub) Stats() *Stats { return &h.stats }

// CheckSessionsOnOpen sets how the hub confirms, right after registering a
// socket, that its session still exists. Call before serving.
func (h *Hub) CheckSessionsOnOpen(live func(ctx context.Context, sessionID string) (bool, error)) {
	h.sessionLive = live
}

// confirmSession closes c if its session ended while it was being opened.
func (h *Hub) confirmSession(ctx context.Context, c *Client) {
	if h.sessionLive == nil || c.principal.Anonymous() {
		return
	}
	live, err := h.sessionLive(ctx, c.principal.SessionID)
	if err == nil && !live {
		c.closeWith(ClosePolicyViolation, "session ended")
	}
}

// ObserveLatency sets where the hub reports, once per event, the time from
// the event's commit to its fan-out into the socket queues. Call before
// the listener starts.
func (h *Hub) ObserveLatency(fn func(time.Duration)) { h.latency = fn }

// SetPosition tells the hub where the event stream starts, before any
// Dispatch. The listener calls it once it knows the log's end.
func (h *Hub) SetPosition(p Position) {
	h.mu.Lock()
	h.position.Store(&p)
	h.mu.Unlock()
}

// wakeEvery is how many events Dispatch queues before waking writers.
const wakeEvery = 32

// Dispatch hands events, in delivery order, to their subscribers. Only the
// listener calls it, from one goroutine.
func (h *Hub) Dispatch(events []*Event) {
	var subs []delivery
	var clients []*Client
	// Writers are woken once per run of events, not once per frame.
	var woken []*Client
	h.wakeRound++
	touch := func(c *Client) {
		if c.wakeMark != h.wakeRound {
			c.wakeMark = h.wakeRound
			woken = append(woken, c)
		}
	}
	wake := func() {
		if h.opts.WriteDelay > 0 {
			woken = h.hold(woken, time.Now())
		}
		h.stats.FanoutWrites.Add(h.flushAll(woken))
		clear(woken)
		woken = woken[:0]
		h.wakeRound++
	}
	defer wake()
	for i, ev := range events {
		if i > 0 && i%wakeEvery == 0 {
			wake() // bounds the delay a long batch adds to its first events
		}
		h.stats.Received.Add(1)
		subs = subs[:0]
		clients = clients[:0]
		h.mu.RLock()
		switch ev.Channel {
		case db.BroadcastChannel, db.NotifyEveryoneChannel:
			for c := range h.clients {
				clients = append(clients, c)
			}
		default:
			// Only subscriptions whose indexed equality condition the event
			// meets are looked at, and each is judged on fields decoded once:
			// the cost follows the matches, not the subscribers.
			if idx := h.channels[ev.Channel]; idx != nil {
				subs = matching(idx, ev, subs)
			}
		}
		pos := ev.Pos
		h.position.Store(&pos)
		h.mu.RUnlock()

		delivered := 0
		switch ev.Channel {
		case db.BroadcastChannel:
			for _, c := range clients {
				if c.queueWire(ev.broadcastFrame(c.wire)) {
					delivered++
					touch(c)
				}
			}
		case db.NotifyEveryoneChannel:
			for _, c := range clients {
				if c.mayReceiveEveryone(ev) && c.queueWire(ev.frame(c.wire, true)) {
					delivered++
					touch(c)
				}
			}
		default:
			for _, d := range subs {
				if d.sub.offer(d.ev) {
					delivered++
					touch(d.sub.client)
				}
			}
		}
		clear(subs)
		clear(clients)
		h.stats.Delivered.Add(int64(delivered))
		if delivered > 0 && ev.Name == notificationEvent {
			h.markDelivered(ev)
		}
		if h.latency != nil {
			h.latency(time.Since(ev.Time))
		}
	}
}

// flushPerWorker is how many sockets make it worth another goroutine:
// about 0.15 ms of writes, against a few µs to start one. With 100
// subscribers of one channel, the last one's write then comes half as
// late as on one goroutine.
const flushPerWorker = 32

// flushAll wakes the writers of clients after a run of the fan-out. A
// /ws socket is written on the spot (pump.flushInline); many are split
// between as many goroutines as there are CPUs, so a large fan-out takes
// every core without a goroutine per socket. It returns once every socket
// has been written or handed to its writer: events that come meanwhile
// wait in the listener and go out together, one write each per socket.
func (h *Hub) flushAll(clients []*Client) (writes int64) {
	workers := min(runtime.GOMAXPROCS(0), (len(clients)+flushPerWorker-1)/flushPerWorker)
	if workers <= 1 {
		return flushEach(clients)
	}
	per := (len(clients) + workers - 1) / workers
	var wg sync.WaitGroup
	var total atomic.Int64
	for start := per; start < len(clients); start += per {
		part := clients[start:min(start+per, len(clients))]
		wg.Go(func() { total.Add(flushEach(part)) })
	}
	writes = flushEach(clients[:per])
	wg.Wait()
	return writes + total.Load()
}

// flushEach writes clients one after the other and returns how many
// writes it made.
func flushEach(clients []*Client) (writes int64) {
	var frames [][]byte
	var buf []byte
	now := time.Now().UnixNano()
	for _, c := range clients {
		if c.inline != nil {
			var wrote bool
			frames, buf, wrote = c.inline.flushInline(frames, buf)
			if wrote {
				writes++
				c.wroteAt.Store(now)
			}
		} else {
			c.t.flush()
		}
	}
	return writes
}

// hold keeps back the writes to the clients written less than WriteDelay
// before now, for RunWriteDelay, and returns the others, which are due.
func (h *Hub) hold(clients []*Client, now time.Time) (due []*Client) {
	due = clients[:0]
	h.heldMu.Lock()
	defer h.heldMu.Unlock()
	for _, c := range clients {
		switch {
		case c.held:
		case c.inline == nil || now.Sub(c.lastWrite()) >= h.opts.WriteDelay:
			due = append(due, c)
		default:
			c.held = true
			h.held = append(h.held, c)
		}
	}
	return due
}

// RunWriteDelay makes the writes held back for Options.WriteDelay as they
// come due, until ctx ends; without a WriteDelay it returns at once.
func (h *Hub) RunWriteDelay(ctx context.Context) {
	if h.opts.WriteDelay <= 0 {
		return
	}
	// A held write waits at most an eighth of the delay past its due time.
	ticker := time.NewTicker(max(h.opts.WriteDelay/8, time.Millisecond))
	defer ticker.Stop()
	var due []*Client
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			due = h.flushHeld(due, now)
		}
	}
}

// flushHeld makes the held writes that are due at now; due is a slice to
// reuse, and it returns one.
func (h *Hub) flushHeld(due []*Client, now time.Time) []*Client {
	due = due[:0]
	h.heldMu.Lock()
	kept := h.held[:0]
	for _, c := range h.held {
		if now.Sub(c.lastWrite()) >= h.opts.WriteDelay {
			c.held = false
			due = append(due, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(h.held[len(kept):])
	h.held = kept
	h.heldMu.Unlock()
	h.stats.FanoutWrites.Add(h.flushAll(due))
	clear(due)
	return due
}

// delivery is one event for one subscription: the event itself, or the
// <entity>:left that an update means to a subscription that could see the
// row before it and cannot after.
type delivery struct {
	sub *subscription
	ev  *Event
}

// matching appends what each subscription in idx gets of ev. The caller
// holds the hub's read lock, so index and predicates agree.
func matching(idx *filter.Index[*subscription], ev *Event, out []delivery) []delivery {
	// With no filter on the channel, every subscription takes ev and none
	// can see a row leave: neither the row nor the row as it was before an
	// update is decoded (that was 60% of the server's CPU delivering an
	// UPDATE of 1,000,000 rows to one unfiltered subscriber).
	if ev.truncates() || !idx.Filtered() {
		idx.All(func(s *subscription) bool {
			out = append(out, delivery{s, ev})
			return true
		})
		return out
	}
	fields := ev.fields()
	idx.Candidates(fields, func(s *subscription) bool {
		if s.pred.Load().Match(fields) {
			out = append(out, delivery{s, ev})
		}
		return true
	})
	// An update may move a row out of a subscription's view: look up the
	// row as it was, too. A subscription that matches the new row was
	// taken above; one that matches only the old row is told it left.
	if old, left := ev.before(); old != nil {
		idx.Candidates(old, func(s *subscription) bool {
			if pred := s.pred.Load(); !pred.Match(fields) && pred.Match(old) {
				out = append(out, delivery{s, left})
			}
			return true
		})
	}
	return out
}

// markDelivered queues a notification's id to be marked no longer pending.
func (h *Hub) markDelivered(ev *Event) {
	select {
	case h.delivered <- ev.Pos.ID:
	default:
		h.log.Warn("notification delivery marks backed up", "event_id", ev.Pos.ID)
	}
}

// DeliveredNotifications yields ids of notification events this instance
// delivered; the server marks them no longer pending.
func (h *Hub) DeliveredNotifications() <-chan int64 { return h.delivered }

// ChannelCounts returns the number of live subscriptions per channel.
func (h *Hub) ChannelCounts() map[string]int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make(map[string]int, len(h.channels))
	for ch, idx := range h.channels {
		out[ch] = idx.Len()
	}
	return out
}

// channelCount returns the number of live subscriptions to one channel.
func (h *Hub) channelCount(channel string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if idx := h.channels[channel]; idx != nil {
		return idx.Len()
	}
	return 0
}

// ClientCount returns the number of open sockets.
func (h *Hub) ClientCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// CloseSession closes, with 1008, every socket opened with the session.
func (h *Hub) CloseSession(sessionID string) int {
	if sessionID == "" {
		return 0
	}
	return h.closeWhere(func(p *session.Principal) bool { return p.SessionID == sessionID }, "session ended")
}

// CloseAnonymous closes, with 1008, every socket without a session: called
// when role anonymous no longer holds any grant.
func (h *Hub) CloseAnonymous(reason string) int {
	return h.closeWhere((*session.Principal).Anonymous, reason)
}

// CloseEndedSessions closes, with 1008, every socket whose session was
// among checked but is not live: how an instance catches up on logouts it
// could not hear (its listener was reconnecting) and on expired sessions.
// Only checked sessions are judged, so a socket opened meanwhile is safe.
func (h *Hub) CloseEndedSessions(checked []string, live map[string]bool) int {
	ended := make(map[string]bool)
	for _, id := range checked {
		if !live[id] {
			ended[id] = true
		}
	}
	if len(ended) == 0 {
		return 0
	}
	return h.closeWhere(func(p *session.Principal) bool { return ended[p.SessionID] }, "session ended")
}

// SessionIDs lists the sessions of the open sockets.
func (h *Hub) SessionIDs() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	seen := map[string]bool{}
	var ids []string
	for c := range h.clients {
		if id := c.principal.SessionID; id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

func (h *Hub) closeWhere(match func(*session.Principal) bool, reason string) int {
	var victims []*Client
	h.mu.RLock()
	for c := range h.clients {
		if match(c.principal) {
			victims = append(victims, c)
		}
	}
	h.mu.RUnlock()
	for _, c := range victims {
		c.closeWith(ClosePolicyViolation, reason)
	}
	return len(victims)
}

func (h *Hub) register(c *Client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.clients[c] = struct{}{}
	h.clientsWG.Add(1)
	return true
}

func (h *Hub) unregister(c *Client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	h.clientsWG.Done()
}

// Shutdown closes every socket with 1001 and waits for their goroutines,
// or for ctx.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	clients := make([]*Client, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		c.closeWith(CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() {
		h.clientsWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

// ServerStats is the server-stats payload.
func (h *Hub) ServerStats() map[string]any {
	return map[string]any{
		"connectedClients": h.ClientCount(),
		"activeChannels":   len(h.ChannelCounts()),
		"uptime":           time.Since(h.started).Seconds(),
		"timestamp":        time.Now().UTC().Format(timestampLayout),
	}
}

// RunStatsPush sends server-stats to every socket that uses the
// notification features whenever the number of clients or channels
// changed, at most once per period, until ctx ends.
func (h *Hub) RunStatsPush(ctx context.Context, period time.Duration) {
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	lastClients, lastChannels := -1, -1
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		h.mu.RLock()
		clients, channels := len(h.clients), len(h.channels)
		var listeners []*Client
		if clients != lastClients || channels != lastChannels {
			for c := range h.clients {
				if c.statsListener.Load() {
					listeners = append(listeners, c)
				}
			}
		}
		h.mu.RUnlock()
		if clients == lastClients && channels == lastChannels {
			continue
		}
		lastClients, lastChannels = clients, channels
		if len(listeners) == 0 {
			continue
		}
		frame := dataFrame("server-stats", h.ServerStats())
		for _, c := range listeners {
			c.send(frame)
		}
	}
}
