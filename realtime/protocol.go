package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pgpush/pgpush/session"
)

// WebSocket close codes pgpush uses (RFC 6455 §7.4.1).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001 // server shutdown
	ClosePolicyViolation = 1008 // no session, session ended, flooding
	CloseMessageTooBig   = 1009
	CloseTryAgainLater   = 1013 // too slow to read
)

// clientMessage is any frame a client may send on /ws. Which fields matter
// depends on Type.
type clientMessage struct {
	Type    string          `json:"type"`
	Channel string          `json:"channel"`
	Since   json.RawMessage `json:"since"`
	Filter  json.RawMessage `json:"filter"`
	// Snapshot asks for the current rows first (SPEC §3.2).
	Snapshot bool            `json:"snapshot"`
	Event    string          `json:"event"`
	Data     json.RawMessage `json:"data"`
	// chat rooms (the chat-ws protocol)
	RoomID  string `json:"room_id"`
	From    string `json:"from"`
	Message string `json:"message"`
}

// maxChannelBytes bounds channel names so they are safe to log and store:
// a change channel's 200, or a room or notification channel's name of 200
// behind its prefix.
const maxChannelBytes = 208

// errNUL: PostgreSQL cannot store a NUL character in text or jsonb
// (SQLSTATE 22021, 22P05), so input holding one is refused before it
// reaches the database, where it would be a server error.
var errNUL = errors.New(`holds a NUL character (\u0000), which cannot be stored`)

// errBadUTF8: the same for bytes that are not UTF-8 (SQLSTATE 22021).
var errBadUTF8 = errors.New("is not valid UTF-8")

// checkText reports the first field of msg that PostgreSQL could not
// store: a NUL character, or invalid UTF-8 in raw JSON (decoded strings
// have it replaced already). Every message passes it before it is acted
// on, whatever its transport.
func (m *clientMessage) checkText() error {
	for _, f := range []struct{ name, value string }{
		{"type", m.Type}, {"channel", m.Channel}, {"event", m.Event},
		{"room_id", m.RoomID}, {"from", m.From}, {"message", m.Message},
	} {
		if strings.IndexByte(f.value, 0) >= 0 {
			return fmt.Errorf("field %q %w", f.name, errNUL)
		}
	}
	if err := checkJSONText(m.Data); err != nil {
		return fmt.Errorf("field %q %w", "data", err)
	}
	// since and filter are never stored: their own checks answer them.
	return nil
}

// checkJSONText reports whether valid JSON text raw could not be stored:
// invalid UTF-8, or a NUL character, which valid JSON can hold only as the
// escape \u0000 inside a string or key.
func checkJSONText(raw []byte) error {
	if !utf8.Valid(raw) {
		return errBadUTF8
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped character: "\\u0000" is a backslash, then text
		if i+5 <= len(raw) && raw[i] == 'u' && string(raw[i+1:i+5]) == "0000" {
			return errNUL
		}
	}
	return nil
}

// CheckPublish reports why a custom event could not be stored (a NUL
// character, invalid UTF-8), as an error meant for the client.
func CheckPublish(event string, data json.RawMessage) error {
	if strings.IndexByte(event, 0) >= 0 {
		return fmt.Errorf("%q %w", "event", errNUL)
	}
	if err := checkJSONText(data); err != nil {
		return fmt.Errorf("%q %w", "data", err)
	}
	return nil
}

// refusalFrame answers a message that failed checkText: error-message,
// as validation errors, for the notification events; error otherwise.
func refusalFrame(msgType string, err error) []byte {
	if msgType == notifySend || msgType == notifyJoin || msgType == notifyLeave {
		return errorMessageFrame([]string{err.Error()})
	}
	return errorFrame(err.Error())
}

// parseClientMessage decodes one text frame. Errors are meant for the
// client: they say what is wrong without echoing the input.
func parseClientMessage(frame []byte) (clientMessage, error) {
	var msg clientMessage
	trimmed := bytes.TrimSpace(frame)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return msg, errors.New("malformed message: want a JSON object")
	}
	if err := json.Unmarshal(trimmed, &msg); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return msg, fmt.Errorf("malformed message: field %q has the wrong type", typeErr.Field)
		}
		return msg, errors.New("malformed message: invalid JSON")
	}
	if msg.Type == "" {
		return msg, errors.New(`missing field "type"`)
	}
	if len(msg.Channel) > maxChannelBytes {
		return msg, errors.New(`field "channel" is too long`)
	}
	return msg, nil
}

// parseSince accepts an event id as a JSON string ("1842") or number (1842).
func parseSince(raw json.RawMessage) (id int64, ok bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	text := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, false, errors.New(`invalid "since": want an event id`)
		}
	}
	text = strings.TrimSpace(text)
	id, err = strconv.ParseInt(text, 10, 64)
	if err != nil || id < 0 {
		return 0, false, errors.New(`invalid "since": want an event id`)
	}
	return id, true, nil
}

func errorFrame(message string) []byte {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}{"error", message})
	return b
}

func channelErrorFrame(channel, message string) []byte {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		Channel string `json:"channel"`
	}{"error", message, channel})
	return b
}

func channelFrame(typ, channel string) []byte {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Channel string `json:"channel"`
	}{typ, channel})
	return b
}

// subscribedFrame confirms a subscription. position is the id of the last
// event dispatched before it went live: a client that has received nothing
// on the channel yet can resume from there after a drop.
func subscribedFrame(channel string, upTo Position) []byte {
	var position *string
	if upTo.ID > 0 {
		p := strconv.FormatInt(upTo.ID, 10)
		position = &p
	}
	b, _ := json.Marshal(struct {
		Type     string  `json:"type"`
		Channel  string  `json:"channel"`
		Position *string `json:"position,omitempty"`
	}{"subscribed", channel, position})
	return b
}

func connectedFrame(p *session.Principal) []byte {
	return greetingFrame(p, "WebSocket connection established")
}

// greetingFrame is the first frame of every socket or stream: who it is.
func greetingFrame(p *session.Principal, message string) []byte {
	var userID any
	if !p.Anonymous() {
		userID = p.UserID
	}
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		UserID  any    `json:"userId"`
	}{"connected", message, userID})
	return b
}

var pongFrame = []byte(`{"type":"pong"}`)
