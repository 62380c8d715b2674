package realtime

import (
	"context"
	"errors"

	"github.com/pgpush/pgpush/realtime/filter"
	"github.com/pgpush/pgpush/session"
)

// The subscription registry: which socket is subscribed to what, with
// which rules. It has one home, the hub, and one lock, the hub's mu: a
// channel's index (what Dispatch reads) and each client's subs (what the
// client's own messages read) change together.

// addSub subscribes c to channel unless already subscribed (existing):
// the one path for change channels, rooms and notification channels, so
// that limits, access checks and the race with a grant reload are handled
// once. setup configures s before Dispatch can see it; f is the client's
// filter. upTo is the last event dispatched before s went live.
func (c *Client) addSub(ctx context.Context, channel string, f *filter.Filter, setup func(*subscription)) (s *subscription, upTo Position, existing bool, err error) {
	h := c.hub
	h.mu.RLock()
	s, ok := c.subs[channel]
	count := len(c.subs)
	h.mu.RUnlock()
	if ok {
		return s, Position{}, true, nil
	}
	if count >= h.opts.MaxSubscriptions {
		return nil, Position{}, false, errTooManySubscriptions
	}
	gen := h.authGen.Load()
	access, err := h.auth.Access(ctx, c.principal, channel)
	if err != nil {
		return nil, Position{}, false, err
	}
	s = newSubscription(c, channel)
	if setup != nil {
		setup(s)
	}

	h.mu.Lock()
	if prev, ok := c.subs[channel]; ok {
		// Another subscribe of this socket won the race meanwhile.
		h.mu.Unlock()
		return prev, Position{}, true, nil
	}
	s.setRules(access, f)
	c.subs[channel] = s
	idx := h.channels[channel]
	if idx == nil {
		idx = &filter.Index[*subscription]{}
		h.channels[channel] = idx
	}
	idx.Add(s, s.pred.Load())
	upTo = *h.position.Load()
	h.mu.Unlock()

	if err := c.recheckAccess(ctx, s, gen); err != nil {
		return nil, Position{}, false, err
	}
	return s, upTo, false, nil
}

// joinRaw subscribes to a room or notification channel whose events carry
// their frame as data. existing reports a subscription already there.
func (c *Client) joinRaw(ctx context.Context, channel string, skipOwn bool) (*subscription, bool, error) {
	s, _, existing, err := c.addSub(ctx, channel, nil, func(s *subscription) { s.raw, s.skipOwn = true, skipOwn })
	return s, existing, err
}

// removeLocked takes s out of the registry; the caller holds the hub's
// write lock. It reports whether s was still registered.
func (h *Hub) removeLocked(s *subscription) bool {
	c := s.client
	if c.subs[s.channel] != s {
		return false
	}
	delete(c.subs, s.channel)
	if idx := h.channels[s.channel]; idx != nil {
		idx.Remove(s)
		if idx.Len() == 0 {
			delete(h.channels, s.channel)
		}
	}
	return true
}

// leave ends the subscription to channel, reporting whether there was one.
func (c *Client) leave(channel string) bool {
	h := c.hub
	h.mu.Lock()
	s, ok := c.subs[channel]
	if ok {
		h.removeLocked(s)
	}
	h.mu.Unlock()
	if ok {
		s.end()
	}
	return ok
}

func (c *Client) unsubscribe(msg clientMessage) {
	if msg.Channel == "" {
		c.send(errorFrame(`missing field "channel"`))
		return
	}
	c.leave(msg.Channel)
	c.send(channelFrame("unsubscribed", msg.Channel))
}

// dropSubscriptions ends every subscription of a closing socket.
func (c *Client) dropSubscriptions() {
	h := c.hub
	h.mu.Lock()
	subs := make([]*subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	for _, s := range subs {
		h.removeLocked(s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.end()
	}
}

// endSubscription ends s from outside the read pump (a revoked grant),
// telling the client why.
func (c *Client) endSubscription(s *subscription, reason string) {
	h := c.hub
	h.mu.Lock()
	removed := h.removeLocked(s)
	h.mu.Unlock()
	if !removed {
		return
	}
	// Under s.mu, which a replay holds per event: no replayed event can
	// follow "unsubscribed".
	s.mu.Lock()
	s.endLocked()
	c.send(channelErrorFrame(s.channel, reason))
	c.send(channelFrame("unsubscribed", s.channel))
	s.mu.Unlock()
}

// setAccess and setFilter change what s may see, if s is still
// registered: after a grant reload, or a subscribe again with a new filter
// (which replaces the old one atomically for Dispatch, so no event is
// delivered twice or judged by both). Each keeps the other rule as it is
// at that moment.
func (h *Hub) setAccess(s *subscription, access session.Access) {
	h.reindex(s, func() { s.setRules(access, s.filter) })
}

func (h *Hub) setFilter(s *subscription, f *filter.Filter) {
	h.reindex(s, func() { s.setRules(s.access, f) })
}

func (h *Hub) reindex(s *subscription, change func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.client.subs[s.channel] != s {
		return
	}
	idx := h.channels[s.channel]
	idx.Remove(s)
	change()
	idx.Add(s, s.pred.Load())
}

// accessOf returns c's access on a subscribed channel.
func (h *Hub) accessOf(c *Client, channel string) (session.Access, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s, ok := c.subs[channel]
	if !ok {
		return session.Access{}, false
	}
	return s.access, true
}

// recheckAccess closes the gap between checking access and adding s: if
// grants were reloaded meanwhile, Reauthorize may not have seen s, so check
// again and undo the subscription when it is no longer allowed.
func (c *Client) recheckAccess(ctx context.Context, s *subscription, gen uint64) error {
	h := c.hub
	if h.authGen.Load() == gen {
		return nil
	}
	access, err := h.auth.Access(ctx, c.principal, s.channel)
	if err != nil {
		c.leave(s.channel)
		return err
	}
	h.setAccess(s, access)
	return nil
}

// Reauthorize checks every live subscription against the current grants
// and ends the ones that are no longer allowed, telling the client why.
func (h *Hub) Reauthorize(ctx context.Context) {
	h.authGen.Add(1)
	var subs []*subscription
	var clients []*Client
	h.mu.RLock()
	for c := range h.clients {
		clients = append(clients, c)
		for _, s := range c.subs {
			subs = append(subs, s)
		}
	}
	h.mu.RUnlock()
	for _, c := range clients {
		c.refreshAccess(ctx)
	}
	for _, s := range subs {
		access, err := h.auth.Access(ctx, s.client.principal, s.channel)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Fail closed: a subscription whose rights cannot be confirmed
			// after a grant change ends; the client may subscribe again.
			reason := "access to channel revoked"
			if !errors.Is(err, session.ErrForbidden) && !errors.Is(err, session.ErrUnknownChannel) {
				reason = "cannot check access right now, subscribe again"
			}
			s.client.endSubscription(s, reason)
			continue
		}
		h.setAccess(s, access)
	}
}
