package realtime

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pgpush/pgpush/realtime/filter"
	"github.com/pgpush/pgpush/session"
)

// notificationEvent names notification events in the log.
const notificationEvent = "notification-received"

// subscription is one socket's interest in one channel. While it replays
// (pending), live events are buffered so that they follow the replay in
// order, with no gap and no duplicate.
//
// What decides visibility (access, filter, pred) belongs to the hub's
// registry: written only under the hub's lock, together with the channel's
// index, so Dispatch always sees an index and predicates that agree.
type subscription struct {
	client  *Client
	channel string
	// raw subscriptions (chat rooms, notification channels) send each
	// event's data as the frame itself, and skip events this socket sent
	// when skipOwn is set (join/leave announcements).
	raw     bool
	skipOwn bool
	// skipIDs are events this socket already got another way (claimed
	// pending notifications); set before the subscription goes live.
	skipIDs map[int64]struct{}

	access session.Access                // guarded by the hub's mu
	filter *filter.Filter                // the client's; guarded by the hub's mu
	pred   atomic.Pointer[filter.Filter] // grant's match and filter; set under the hub's mu

	mu sync.Mutex // guards the delivery state below
	// after is the resume point of a since-subscribe: on an instance whose
	// listener is behind it, live events up to it are ones the client has.
	after Position
	// reflected is the snapshot a snapshot subscription's rows were read
	// in: events of transactions visible in it are already in the rows.
	reflected *pgSnapshot
	pending   bool
	buffer    []*Event
	ended     bool
	endedCh   chan struct{} // closed by end; wakes a paced replay
}

func newSubscription(c *Client, channel string) *subscription {
	return &subscription{client: c, channel: channel, pending: true, endedCh: make(chan struct{})}
}

// setRules sets access and filter and the predicate they make. The caller
// holds the hub's write lock and re-indexes s.
func (s *subscription) setRules(access session.Access, f *filter.Filter) {
	s.access, s.filter = access, f
	s.pred.Store(filter.And(filter.MatchAttrs(access.Match), f))
}

// visible applies the grant's match rule and the client's filter, both
// compiled; the event's fields are decoded once for every subscription.
func (s *subscription) visible(ev *Event) bool {
	pred := s.pred.Load()
	return ev.truncates() || pred == nil || pred.Match(ev.fields())
}

// judge is what s gets of ev outside Dispatch (a replay): ev, the
// <entity>:left it means to s, or nil.
func (s *subscription) judge(ev *Event) *Event {
	if s.visible(ev) {
		return ev
	}
	if old, left := ev.before(); old != nil && s.pred.Load().Match(old) {
		return left
	}
	return nil
}

// offer queues ev, which Dispatch found visible to s, and reports whether
// it was queued; Dispatch wakes the writer afterwards. Events held for
// after a replay report false: activate sends and counts them.
func (s *subscription) offer(ev *Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	if s.skips(ev) {
		return false
	}
	if s.skipOwn && ev.Origin == s.client.origin() && (ev.Name == roomJoin || ev.Name == roomLeave) {
		return false // announcements go to the room's other members
	}
	if s.pending {
		if len(s.buffer) >= s.client.hub.opts.MaxPendingEvents {
			s.client.hub.stats.DroppedResuming.Add(1)
			s.client.closeWith(CloseTryAgainLater, "too far behind while resuming")
			return false
		}
		s.buffer = append(s.buffer, ev)
		return false // counted as delivered when activate sends it
	}
	return s.client.queueWire(ev.frame(s.client.wire, s.raw))
}

// skips reports whether the client already has ev another way: claimed as
// a pending notification, up to its resume point, or in its snapshot's
// rows. The caller holds s.mu.
func (s *subscription) skips(ev *Event) bool {
	if _, skip := s.skipIDs[ev.Pos.ID]; skip || !ev.Pos.After(s.after) {
		return true
	}
	// Only row changes are in a snapshot's rows: a custom event published
	// on the channel in a transaction the snapshot saw is still news.
	return s.reflected != nil && ev.rowChange() && s.reflected.visible(ev.Xid)
}

// activate flushes what arrived during the replay and turns on live delivery.
func (s *subscription) activate() { activateTogether([]*subscription{s}, nil) }

// activateTogether turns on live delivery of subs, one socket's, at once:
// what each buffered during the replay and window (events the replay
// found after the first of them was registered, see Client.replay) go out
// merged in position order, and no live event reaches any of them before
// that is done, so the socket's events keep their order across channels.
// Dispatch takes one subscription's lock at a time, so holding them all
// cannot deadlock with it.
func activateTogether(subs []*subscription, window []delivery) {
	for _, s := range subs {
		s.mu.Lock()
	}
	defer func() {
		for _, s := range subs {
			s.buffer = nil
			s.pending = false
			s.mu.Unlock()
		}
	}()
	items := window
	for _, s := range subs {
		for _, ev := range s.buffer {
			items = append(items, delivery{s, ev})
		}
	}
	if len(subs) > 1 || len(window) > 0 {
		slices.SortStableFunc(items, func(a, b delivery) int {
			switch {
			case a.ev.Pos.After(b.ev.Pos):
				return 1
			case b.ev.Pos.After(a.ev.Pos):
				return -1
			}
			return 0
		})
	}
	for _, d := range items {
		s, ev := d.sub, d.ev
		if s.ended || s.skips(ev) {
			continue
		}
		if !s.client.sendWire(ev.frame(s.client.wire, s.raw)) {
			return
		}
		s.client.hub.stats.Delivered.Add(1)
		if ev.Name == notificationEvent {
			s.client.hub.markDelivered(ev)
		}
	}
}

func (s *subscription) end() {
	s.mu.Lock()
	s.endLocked()
	s.mu.Unlock()
}

func (s *subscription) endLocked() {
	if !s.ended {
		s.ended = true
		close(s.endedCh)
	}
	s.buffer = nil
}
