package realtime

import (
	"context"
	"encoding/json"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/session"
)

// Chat-ws message types.
const (
	roomJoin    = "join-room"
	roomLeave   = "leave-room"
	roomSend    = "send-message"
	roomReceive = "receive-message"
)

// maxChatMessageBytes bounds one chat message.
const maxChatMessageBytes = 16 << 10

// senderName is who a message is from: the user's email when logged in,
// else the name the anonymous client gave.
func (c *Client) senderName(given string) string {
	if !c.principal.Anonymous() {
		return c.principal.Email
	}
	if given != "" {
		return truncate(given, 100)
	}
	if c.principal.Name != "" {
		return truncate(c.principal.Name, 100)
	}
	return "anonymous"
}

// addSub subscribes to channel unless already subscribed (existing):
// the one path for change channels, rooms and notification channels, so
// that limits, access checks and the race with a grant reload are handled
// once. setup configures the subscription before Dispatch can see it; upTo
// is the last event dispatched before it.
func (c *Client) addSub(ctx context.Context, channel string, setup func(*subscription)) (s *subscription, upTo Position, existing bool, err error) {
	c.mu.Lock()
	s, ok := c.subs[channel]
	count := len(c.subs)
	c.mu.Unlock()
	if ok {
		return s, Position{}, true, nil
	}
	if count >= c.hub.opts.MaxSubscriptions {
		return nil, Position{}, false, errTooManySubscriptions
	}
	gen := c.hub.authGen.Load()
	access, err := c.hub.auth.Access(ctx, c.principal, channel)
	if err != nil {
		return nil, Position{}, false, err
	}
	s = newSubscription(c, channel, access)
	setup(s)
	c.mu.Lock()
	c.subs[channel] = s
	c.mu.Unlock()
	upTo = c.hub.addSubscription(s)
	if err := c.recheckAccess(ctx, s, gen); err != nil {
		return nil, Position{}, false, err
	}
	return s, upTo, false, nil
}

// joinRaw subscribes to a room or notification channel whose events carry
// their frame as data. existing reports a subscription already there.
func (c *Client) joinRaw(ctx context.Context, channel string, skipOwn bool) (*subscription, bool, error) {
	s, _, existing, err := c.addSub(ctx, channel, func(s *subscription) { s.raw, s.skipOwn = true, skipOwn })
	return s, existing, err
}

// leave ends the subscription to channel, reporting whether there was one.
func (c *Client) leave(channel string) bool {
	c.mu.Lock()
	s, ok := c.subs[channel]
	delete(c.subs, channel)
	c.mu.Unlock()
	if ok {
		c.hub.removeSubscription(s)
		s.end()
	}
	return ok
}

type roomFrame struct {
	Type   string `json:"type"`
	RoomID string `json:"room_id"`
	From   string `json:"from"`
}

func (c *Client) joinRoom(ctx context.Context, msg clientMessage) {
	if !db.ValidName(msg.RoomID) {
		c.send(errorFrame(`"room_id" is required: letters, digits, _ . - (at most 100)`))
		return
	}
	channel := db.RoomChannel(msg.RoomID)
	s, _, err := c.joinRaw(ctx, channel, true)
	if err != nil {
		c.send(channelErrorFrame(channel, accessMessage(err, channel)))
		return
	}
	s.activate()
	frame, _ := json.Marshal(roomFrame{roomJoin, msg.RoomID, c.senderName(msg.From)})
	if err := c.hub.store.Announce(ctx, channel, roomJoin, frame, c.origin()); err != nil {
		c.log.Error("announce join", "channel", channel, "err", err)
		c.send(errorFrame("cannot join the room right now, try again"))
	}
}

func (c *Client) leaveRoom(ctx context.Context, msg clientMessage) {
	if !db.ValidName(msg.RoomID) {
		c.send(errorFrame(`"room_id" is required`))
		return
	}
	channel := db.RoomChannel(msg.RoomID)
	if !c.leave(channel) {
		c.send(errorFrame("not in room " + msg.RoomID))
		return
	}
	frame, _ := json.Marshal(roomFrame{roomLeave, msg.RoomID, c.senderName(msg.From)})
	if err := c.hub.store.Announce(ctx, channel, roomLeave, frame, c.origin()); err != nil {
		c.log.Error("announce leave", "channel", channel, "err", err)
	}
}

func (c *Client) sendMessage(ctx context.Context, msg clientMessage) {
	switch {
	case !db.ValidName(msg.RoomID):
		c.send(errorFrame(`"room_id" is required`))
		return
	case msg.Message == "":
		c.send(errorFrame(`"message" is required`))
		return
	case len(msg.Message) > maxChatMessageBytes:
		c.send(errorFrame(`"message" is too long`))
		return
	}
	channel := db.RoomChannel(msg.RoomID)
	c.mu.Lock()
	s, joined := c.subs[channel]
	c.mu.Unlock()
	if !joined {
		c.send(errorFrame("join the room before sending to it"))
		return
	}
	s.mu.Lock()
	mayPublish := s.access.Publish
	s.mu.Unlock()
	if !mayPublish {
		c.send(channelErrorFrame(channel, accessMessage(session.ErrForbidden, channel)))
		return
	}
	if err := c.hub.store.SendRoomMessage(ctx, msg.RoomID, c.senderName(msg.From), msg.Message, c.origin()); err != nil {
		c.log.Error("send room message", "channel", channel, "err", err)
		c.send(errorFrame("cannot send the message right now, try again"))
	}
}
