package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

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

// Limits of SPEC §4, counted in characters, not bytes.
const (
	// maxNameChars bounds a name an anonymous client gives: a chat
	// message's "from", a Socket.IO client's auth username.
	maxNameChars = 100
	// maxChatMessageChars bounds one chat message.
	maxChatMessageChars = 4000
)

// atSigns are the characters that make a name look like an e-mail
// address: '@' and its full-width and small look-alikes.
const atSigns = "@\uFF20\uFE6B"

// checkName refuses a name an anonymous client gave (field "from" or
// "username"): too long, holding a NUL, or looking like an e-mail address,
// which only a logged-in user is named by, so that an anonymous sender
// can never pass for one.
func checkName(field, name string) error {
	if n := utf8.RuneCountInString(name); n > maxNameChars {
		return fmt.Errorf("%q: a name has at most %d characters", field, maxNameChars)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("field %q %w", field, errNUL)
	}
	if strings.ContainsAny(name, atSigns) {
		return fmt.Errorf("%q: an anonymous name may not contain @, as only logged-in users are named by their e-mail address", field)
	}
	return nil
}

// BoundName keeps at most one character more of an anonymous client's
// name than checkName allows: enough for checkName to refuse it, while a
// socket never holds a huge name for its lifetime.
func BoundName(name string) string {
	n := 0
	for i := range name {
		if n == maxNameChars+1 {
			return name[:i]
		}
		n++
	}
	return name
}

// senderName is who a message is from: the user's email when logged in,
// else the name the anonymous client gave with the message (from), else
// the one it gave when it connected (username), else "anonymous". A name
// checkName refuses is an error meant for the client.
func (c *Client) senderName(given string) (string, error) {
	if !c.principal.Anonymous() {
		return c.principal.Email, nil
	}
	field, name := "from", given
	if name == "" {
		field, name = "username", c.principal.Name
	}
	if name == "" {
		return "anonymous", nil
	}
	if err := checkName(field, name); err != nil {
		return "", err
	}
	return name, nil
}

// roomIDError answers a missing or invalid room_id.
var roomIDError = fmt.Sprintf(`"room_id" is required: 1 to %d letters, digits, _ . -`, db.MaxBuiltinNameChars)

type roomFrame struct {
	Type   string `json:"type"`
	RoomID string `json:"room_id"`
	From   string `json:"from"`
}

func (c *Client) joinRoom(ctx context.Context, msg clientMessage) {
	if !db.ValidBuiltinName(msg.RoomID) {
		c.send(errorFrame(roomIDError))
		return
	}
	from, err := c.senderName(msg.From)
	if err != nil {
		c.send(errorFrame(err.Error()))
		return
	}
	channel := db.RoomChannel(msg.RoomID)
	s, _, err := c.joinRaw(ctx, channel, true)
	if err != nil {
		c.send(channelErrorFrame(channel, accessMessage(err, channel)))
		return
	}
	s.activate()
	frame, _ := json.Marshal(roomFrame{roomJoin, msg.RoomID, from})
	if err := c.hub.store.Announce(ctx, channel, roomJoin, frame, c.origin()); err != nil {
		c.log.Error("announce join", "channel", channel, "err", err)
		c.send(errorFrame("cannot join the room right now, try again"))
	}
}

func (c *Client) leaveRoom(ctx context.Context, msg clientMessage) {
	if !db.ValidBuiltinName(msg.RoomID) {
		c.send(errorFrame(roomIDError))
		return
	}
	from, err := c.senderName(msg.From)
	if err != nil {
		c.send(errorFrame(err.Error()))
		return
	}
	channel := db.RoomChannel(msg.RoomID)
	if !c.leave(channel) {
		c.send(errorFrame("not in room " + msg.RoomID))
		return
	}
	frame, _ := json.Marshal(roomFrame{roomLeave, msg.RoomID, from})
	if err := c.hub.store.Announce(ctx, channel, roomLeave, frame, c.origin()); err != nil {
		c.log.Error("announce leave", "channel", channel, "err", err)
	}
}

func (c *Client) sendMessage(ctx context.Context, msg clientMessage) {
	switch {
	case !db.ValidBuiltinName(msg.RoomID):
		c.send(errorFrame(roomIDError))
		return
	case msg.Message == "":
		c.send(errorFrame(`"message" is required`))
		return
	case utf8.RuneCountInString(msg.Message) > maxChatMessageChars:
		c.send(errorFrame(fmt.Sprintf(`"message": at most %d characters`, maxChatMessageChars)))
		return
	}
	from, err := c.senderName(msg.From)
	if err != nil {
		c.send(errorFrame(err.Error()))
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
	if err := c.hub.store.SendRoomMessage(ctx, msg.RoomID, from, msg.Message, c.origin(), !c.principal.Anonymous()); err != nil {
		c.log.Error("send room message", "channel", channel, "err", err)
		c.send(errorFrame("cannot send the message right now, try again"))
	}
}
