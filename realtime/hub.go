package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Principal is who a socket acts for: a logged-in user, or anonymous.
type Principal struct {
	UserID    int64
	Email     string
	Role      string
	Attrs     map[string]string
	SessionID string // empty for anonymous sockets
}

// Anonymous reports whether the socket has no session.
func (p *Principal) Anonymous() bool { return p.SessionID == "" }

// Access is what one principal may do on one channel.
type Access struct {
	// Match lists data fields and the value each must equal for an event
	// to reach this principal (resolved from the grant's --match and the
	// user's attributes).
	Match   map[string]string
	Publish bool
}

// Errors an Authorizer returns.
var (
	ErrUnknownChannel = errors.New("unknown channel")
	ErrForbidden      = errors.New("not allowed")
)

// Authorizer decides who may subscribe and publish. It is consulted on
// subscribe, on publish and when grants change.
type Authorizer interface {
	Access(ctx context.Context, p *Principal, channel string) (Access, error)
}

// EventStore is the event log as the hub needs it: looking up the
// position of a client's last event and replaying a channel from there.
type EventStore interface {
	// PositionOf returns the delivery position of event id, or an error
	// wrapping ErrResyncRequired when it is no longer kept.
	PositionOf(ctx context.Context, id int64) (Position, error)
	// Replay calls fn for each event on channel after from and at most to.
	Replay(ctx context.Context, channel string, from, to Position, fn func(*Event) error) error
	// Publish records a custom event.
	Publish(ctx context.Context, channel, event string, data json.RawMessage) (int64, error)
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
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = 64 << 10
	}
	defInt(&o.QueueBytes, 1<<20)
	defInt(&o.QueueMessages, 4096)
	defInt(&o.MaxPendingEvents, 10000)
	defInt(&o.MaxSubscriptions, 100)
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
	opts   Options
	log    *slog.Logger
	auth   Authorizer
	store  EventStore
	nextID atomic.Uint64

	mu       sync.RWMutex
	channels map[string]map[*subscription]struct{}
	clients  map[*Client]struct{}
	closed   bool
	// position is the last dispatched event. It is written under the read
	// lock (by the single dispatching goroutine) and read under the write
	// lock by subscribe, which is what makes "replay up to position, then
	// live" gapless.
	position atomic.Pointer[Position]

	clientsWG sync.WaitGroup
	stats     Stats
	latency   func(time.Duration)
}

// Stats are the hub's running counters, read by /metrics.
type Stats struct {
	Received        atomic.Int64 // events dispatched by the listener
	Delivered       atomic.Int64 // event frames queued to sockets
	DroppedSlow     atomic.Int64 // frames not queued: socket too slow (1013)
	DroppedResuming atomic.Int64 // live events not held: resuming socket too far behind
	SocketsOpened   atomic.Int64
	SlowDisconnects atomic.Int64
}

// NewHub makes a hub. start is the position of the last event that
// existed before this instance began listening.
func NewHub(opts Options, auth Authorizer, store EventStore, logger *slog.Logger) *Hub {
	h := &Hub{
		opts:     opts.withDefaults(),
		log:      logger,
		auth:     auth,
		store:    store,
		channels: make(map[string]map[*subscription]struct{}),
		clients:  make(map[*Client]struct{}),
	}
	h.position.Store(&Position{})
	return h
}

// Stats returns the hub's counters.
func (h *Hub) Stats() *Stats { return &h.stats }

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

// Dispatch hands events, in delivery order, to their subscribers. Only the
// listener calls it, from one goroutine.
func (h *Hub) Dispatch(events []*Event) {
	var subs []*subscription
	var clients []*Client
	for _, ev := range events {
		h.stats.Received.Add(1)
		subs = subs[:0]
		clients = clients[:0]
		h.mu.RLock()
		if ev.Channel == BroadcastChannel {
			for c := range h.clients {
				clients = append(clients, c)
			}
		} else {
			for s := range h.channels[ev.Channel] {
				subs = append(subs, s)
			}
		}
		pos := ev.Pos
		h.position.Store(&pos)
		h.mu.RUnlock()

		if ev.Channel == BroadcastChannel {
			frame := ev.broadcastFrame()
			for _, c := range clients {
				if c.send(frame) {
					h.stats.Delivered.Add(1)
				}
			}
		} else {
			for _, s := range subs {
				s.offer(ev)
			}
		}
		if h.latency != nil {
			h.latency(time.Since(ev.Time))
		}
	}
}

// ChannelCounts returns the number of live subscriptions per channel.
func (h *Hub) ChannelCounts() map[string]int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make(map[string]int, len(h.channels))
	for ch, subs := range h.channels {
		out[ch] = len(subs)
	}
	return out
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
	var victims []*Client
	h.mu.RLock()
	for c := range h.clients {
		if c.principal.SessionID == sessionID {
			victims = append(victims, c)
		}
	}
	h.mu.RUnlock()
	for _, c := range victims {
		c.closeWith(ClosePolicyViolation, "session ended")
	}
	return len(victims)
}

// Reauthorize checks every live subscription against the current grants
// and ends the ones that are no longer allowed, telling the client why.
func (h *Hub) Reauthorize(ctx context.Context) {
	var subs []*subscription
	h.mu.RLock()
	for _, set := range h.channels {
		for s := range set {
			subs = append(subs, s)
		}
	}
	h.mu.RUnlock()
	for _, s := range subs {
		access, err := h.auth.Access(ctx, s.client.principal, s.channel)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnknownChannel) {
				s.client.endSubscription(s, "access to channel revoked")
			}
			continue
		}
		s.setAccess(access)
	}
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

// addSubscription makes s visible to Dispatch and returns the position of
// the last event dispatched before it: everything after that reaches s live.
func (h *Hub) addSubscription(s *subscription) Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.channels[s.channel]
	if set == nil {
		set = make(map[*subscription]struct{})
		h.channels[s.channel] = set
	}
	set[s] = struct{}{}
	return *h.position.Load()
}

func (h *Hub) removeSubscription(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if set := h.channels[s.channel]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.channels, s.channel)
		}
	}
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
