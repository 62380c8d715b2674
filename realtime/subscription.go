package realtime

import (
	"encoding/json"
	"sync"

	"github.com/pgpush/pgpush/session"
)

// NotificationEvent names notification events in the log.
const NotificationEvent = "notification-received"

// subscription is one socket's interest in one channel. While it replays
// (pending), live events are buffered so that they follow the replay in
// order, with no gap and no duplicate.
type subscription struct {
	client  *Client
	channel string
	filter  map[string]json.RawMessage
	// raw subscriptions (chat rooms, notification channels) send each
	// event's data as the frame itself, and skip events this socket sent
	// when skipOwn is set (join/leave announcements).
	raw     bool
	skipOwn bool
	// skipIDs are events this socket already got another way (claimed
	// pending notifications); set before the subscription goes live.
	skipIDs map[int64]struct{}
	// after is the resume point of a since-subscribe: on an instance whose
	// listener is behind it, live events up to it are ones the client has.
	after Position

	mu      sync.Mutex
	access  session.Access
	pending bool
	buffer  []*Event
	ended   bool
	endedCh chan struct{} // closed by end; wakes a paced replay
}

func newSubscription(c *Client, channel string, access session.Access) *subscription {
	return &subscription{client: c, channel: channel, access: access, pending: true, endedCh: make(chan struct{})}
}

// visible applies the grant's match rules and the client's filter.
func (s *subscription) visible(ev *Event, access session.Access) bool {
	if !matchVisible(ev, access.Match) {
		return false
	}
	for field, want := range s.filter {
		got, ok := ev.Field(field)
		if !ok || !jsonEqual(got, want) {
			return false
		}
	}
	return true
}

// offer queues ev if the subscriber may see it, and reports whether it was
// queued; Dispatch wakes the writer afterwards. Events held for after a
// replay report false: activate sends and counts them.
func (s *subscription) offer(ev *Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || !s.visible(ev, s.access) {
		return false
	}
	if _, skip := s.skipIDs[ev.Pos.ID]; skip || !ev.Pos.After(s.after) {
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
	return s.client.queueWire(ev.frame(s.client.socketIO, s.raw))
}

// activate flushes what arrived during the replay and turns on live delivery.
func (s *subscription) activate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range s.buffer {
		if _, skip := s.skipIDs[ev.Pos.ID]; skip || !ev.Pos.After(s.after) {
			continue
		}
		if !s.client.sendWire(ev.frame(s.client.socketIO, s.raw)) {
			break
		}
		s.client.hub.stats.Delivered.Add(1)
		if ev.Name == NotificationEvent {
			s.client.hub.markDelivered(ev)
		}
	}
	s.buffer = nil
	s.pending = false
}

func (s *subscription) setAccess(a session.Access) {
	s.mu.Lock()
	s.access = a
	s.mu.Unlock()
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
