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
	access, joined := c.hub.accessOf(c, channel)
	if !joined {
		c.send(errorFrame("join the room before sending to it"))
		return
	}
	if !access.Publish {
		c.send(channelErrorFrame(channel, accessMessage(session.ErrForbidden, channel)))
		return
	}
	if err := c.hub.store.SendRoomMessage(ctx, msg.RoomID, c.senderName(msg.From), msg.Message, c.origin()); err != nil {
		c.log.Error("send room message", "channel", channel, "err", err)
		c.send(errorFrame("cannot send the message right now, try again"))
	}
}
