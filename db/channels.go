package db

import (
	"fmt"
	"regexp"
	"strings"
)

// Channel names and the control protocol are shared by the SQL in
// migrations (which writes some of them as literals), the CLI, the session
// store and the hub: this file is their one home.

// ControlChannel is where configuration changes and session ends are
// announced, so every running instance acts on them without a restart.
const ControlChannel = "pgpush_control"

// Payloads on ControlChannel.
const (
	// ReloadPayload asks instances to reload watched tables and grants.
	ReloadPayload = "reload"
	// LogoutPayloadPrefix followed by a session id asks instances to close
	// every socket opened with that session.
	LogoutPayloadPrefix = "logout:"
)

// Reserved and built-in channels.
const (
	// BroadcastChannel carries --broadcast events, which go to every open
	// socket rather than to subscribers. capture() writes it as a literal.
	BroadcastChannel = "pgpush:broadcast"
	// ReservedPrefix starts channels only pgpush itself writes.
	ReservedPrefix = "pgpush:"
	// RoomPrefix starts chat room channels: "room:<room id>".
	RoomPrefix = "room:"
	// NotifyPrefix starts notification channels: "notify:<name>".
	NotifyPrefix = "notify:"
	// NotifyEveryoneChannel carries notifications sent with no channel:
	// every socket allowed on it receives them, joined or not.
	NotifyEveryoneChannel = NotifyPrefix + "*"
)

// MaxBuiltinNameChars is the longest room id or notification channel name,
// without its "room:" or "notify:" prefix (SPEC §4).
const MaxBuiltinNameChars = 200

var (
	// namePattern is what an entity, a data field name and a user
	// attribute in a grant may be.
	namePattern = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,100}$`)
	// builtinNamePattern is what a room id and a notification channel name
	// may be. ASCII only, so its length in bytes is its length in characters.
	builtinNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,200}$`)
	// channelPattern is what any other channel name may be; ':' separates
	// a built-in prefix from its name.
	channelPattern = regexp.MustCompile(`^[A-Za-z0-9_.:\-]{1,200}$`)
)

// ValidName reports whether s may name an entity, a data field or a user
// attribute: 1 to 100 letters, digits, _ . -
func ValidName(s string) bool { return namePattern.MatchString(s) }

// ValidBuiltinName reports whether s may name a chat room or a
// notification channel: 1 to MaxBuiltinNameChars letters, digits, _ . -
func ValidBuiltinName(s string) bool { return builtinNamePattern.MatchString(s) }

// ValidChannel reports whether name may be used as a channel: 1 to 200
// letters, digits, _ . : -, or a room or notification channel prefix
// followed by a valid built-in name (so up to 207 in all).
func ValidChannel(name string) bool {
	if channelPattern.MatchString(name) {
		return true
	}
	for _, prefix := range []string{RoomPrefix, NotifyPrefix} {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			return ValidBuiltinName(rest)
		}
	}
	return false
}

// ValidChannelPattern reports whether pattern may be granted: a channel
// name, optionally ending in '*' (a bare "*" means every channel).
func ValidChannelPattern(pattern string) bool {
	prefix, _ := strings.CutSuffix(pattern, "*")
	return pattern != "" && (prefix == "" || ValidChannel(prefix))
}

// RoomChannel is the channel of chat room id.
func RoomChannel(id string) string { return RoomPrefix + id }

// NotifyChannel is the channel of notification channel name.
func NotifyChannel(name string) string { return NotifyPrefix + name }

// BuiltinChannel reports whether ch is a chat room or notification channel,
// which exist on use rather than by being watched or published to.
func BuiltinChannel(ch string) bool {
	return strings.HasPrefix(ch, RoomPrefix) || strings.HasPrefix(ch, NotifyPrefix)
}

// ReservedChannel reports whether channel carries frames rather than
// events (rooms, notifications, broadcasts): generic publish may not write
// there, or it could forge a chat message or a notification.
func ReservedChannel(channel string) bool {
	return BuiltinChannel(channel) || strings.HasPrefix(channel, ReservedPrefix)
}

// Control is a decoded message from ControlChannel.
type Control struct {
	Reload    bool   // grants or watched tables changed
	SessionID string // a session that ended: close its sockets
}

// maxSessionIDBytes bounds a session id in a control payload (hex sha256
// is 64 bytes).
const maxSessionIDBytes = 128

// ParseControl decodes a ControlChannel payload: "reload" or
// "logout:<session id>". Anyone who can NOTIFY may write one, so it is
// checked, not trusted.
func ParseControl(payload string) (Control, error) {
	if payload == ReloadPayload {
		return Control{Reload: true}, nil
	}
	if id, ok := strings.CutPrefix(payload, LogoutPayloadPrefix); ok {
		if id == "" || len(id) > maxSessionIDBytes || strings.ContainsFunc(id, func(r rune) bool {
			return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f')
		}) {
			return Control{}, fmt.Errorf("control: invalid session id in %q", clip(payload, 80))
		}
		return Control{SessionID: id}, nil
	}
	return Control{}, fmt.Errorf("control: unknown payload %q", clip(payload, 80))
}

// clip shortens s for an error message; %q keeps the result printable.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
