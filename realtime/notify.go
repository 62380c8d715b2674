package realtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/session"
)

// The ChapFood notification protocol: on /ws every message is
// {"type":"<event>","data":<payload>}; on Socket.IO, emit(event, payload).
const (
	notifyJoin     = "join-channel"
	notifyLeave    = "leave-channel"
	notifySend     = "send-notification"
	notifyChannels = "get-channels"
	notifyStats    = "get-stats"
)

// A notification's limits (SPEC §4): title and message in characters, not
// bytes; data in bytes of compact JSON.
const (
	maxTitleChars    = 200
	maxMessageChars  = 4000
	maxDataJSONBytes = 16 << 10
)

var notificationTypes = []string{"info", "success", "warning", "error"}

// accessCheckWait bounds the access checks of one channels-list.
const accessCheckWait = 5 * time.Second

// dataFrame encodes {"type":typ,"data":data}.
func dataFrame(typ string, data any) []byte {
	b, _ := json.Marshal(struct {
		Type string `json:"type"`
		Data any    `json:"data"`
	}{typ, data})
	return b
}

// errorMessageFrame is ChapFood's validation answer, listing every problem.
func errorMessageFrame(errs []string) []byte {
	b, _ := json.Marshal(struct {
		Type   string   `json:"type"`
		Errors []string `json:"errors"`
	}{"error-message", errs})
	return b
}

// notificationChannel reads join-channel/leave-channel's payload: a
// channel name, or {"channel": name}.
func notificationChannel(data json.RawMessage) (string, bool) {
	var name string
	if json.Unmarshal(data, &name) != nil {
		var obj struct {
			Channel string `json:"channel"`
		}
		if json.Unmarshal(data, &obj) != nil {
			return "", false
		}
		name = obj.Channel
	}
	return name, db.ValidBuiltinName(name)
}

// channelNameError answers a missing or invalid notification channel name.
var channelNameError = fmt.Sprintf("channel: 1 to %d letters, digits, _ . -", db.MaxBuiltinNameChars)

func (c *Client) joinChannel(ctx context.Context, msg clientMessage) {
	c.statsListener.Store(true)
	name, ok := notificationChannel(msg.Data)
	if !ok {
		c.send(errorMessageFrame([]string{channelNameError}))
		return
	}
	channel := db.NotifyChannel(name)
	s, existing, err := c.joinRaw(ctx, channel, false)
	if err != nil {
		c.send(errorMessageFrame([]string{accessMessage(err, channel)}))
		return
	}
	if existing {
		// Already a member: pending notifications were claimed then.
		c.send(dataFrame("channel-joined", map[string]any{
			"channel": name, "clientCount": c.hub.channelCount(channel), "pendingCount": 0,
		}))
		return
	}
	// Hold live notifications until the pending ones are out, so the
	// member sees them in order. Only those the grant's --match lets this
	// member see are claimed; the others wait for a member who may.
	pending, err := c.hub.store.ClaimPending(ctx, channel, c.hub.opts.Retention, func(frame json.RawMessage) bool {
		return s.visible(&Event{Name: notificationEvent, Channel: channel, Data: frame})
	})
	if err != nil {
		c.log.Error("claim pending notifications", "channel", channel, "err", err)
	}
	c.send(dataFrame("channel-joined", map[string]any{
		"channel":      name,
		"clientCount":  c.hub.channelCount(channel),
		"pendingCount": len(pending),
	}))
	// A claimed notification may also reach this member live (the
	// listener may not have dispatched it yet): skip it there.
	s.mu.Lock()
	s.skipIDs = make(map[int64]struct{}, len(pending))
	for _, p := range pending {
		s.skipIDs[p.EventID] = struct{}{}
	}
	s.mu.Unlock()
	for _, p := range pending {
		c.send(p.Frame)
	}
	s.activate()
}

func (c *Client) leaveChannel(msg clientMessage) {
	c.statsListener.Store(true)
	name, ok := notificationChannel(msg.Data)
	if !ok {
		c.send(errorMessageFrame([]string{"channel: required"}))
		return
	}
	c.leave(db.NotifyChannel(name))
	c.send(dataFrame("channel-left", map[string]any{"channel": name}))
}

// notificationInput is send-notification's payload.
type notificationInput struct {
	Channel *string         `json:"channel"`
	Type    *string         `json:"type"`
	Title   *string         `json:"title"`
	Message *string         `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// validateNotification lists every problem, so a form can show them all.
// in.Data comes back as compact JSON.
func validateNotification(raw json.RawMessage) (notificationInput, []string) {
	var in notificationInput
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &in) != nil {
		return in, []string{"notification must be a JSON object"}
	}
	var errs []string
	if in.Channel != nil && *in.Channel != "" && !db.ValidBuiltinName(*in.Channel) {
		errs = append(errs, channelNameError)
	}
	if in.Type == nil || !slices.Contains(notificationTypes, *in.Type) {
		errs = append(errs, "type: must be one of info, success, warning, error")
	}
	switch {
	case in.Title == nil || strings.TrimSpace(*in.Title) == "":
		errs = append(errs, "title: required")
	case utf8.RuneCountInString(*in.Title) > maxTitleChars:
		errs = append(errs, fmt.Sprintf("title: at most %d characters", maxTitleChars))
	}
	switch {
	case in.Message == nil || strings.TrimSpace(*in.Message) == "":
		errs = append(errs, "message: required")
	case utf8.RuneCountInString(*in.Message) > maxMessageChars:
		errs = append(errs, fmt.Sprintf("message: at most %d characters", maxMessageChars))
	}
	if len(in.Data) > 0 && string(in.Data) != "null" {
		var compact bytes.Buffer
		switch {
		case in.Data[0] != '{':
			errs = append(errs, "data: must be an object")
		case json.Compact(&compact, in.Data) != nil: // cannot fail: in was decoded
			errs = append(errs, "data: invalid JSON")
		case compact.Len() > maxDataJSONBytes:
			errs = append(errs, fmt.Sprintf("data: at most %d KiB of JSON", maxDataJSONBytes>>10))
		default:
			in.Data = compact.Bytes()
		}
	}
	return in, errs
}

// Notification is what members receive in notification-received.
type Notification struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Title     string          `json:"title"`
	Message   string          `json:"message"`
	Data      json.RawMessage `json:"data"`
	Sender    string          `json:"sender"`
	Channel   *string         `json:"channel"`
	Timestamp string          `json:"timestamp"`
	// Authenticated: Sender is a logged-in user's e-mail, not a name an
	// anonymous client gave.
	Authenticated bool `json:"authenticated"`
}

func (c *Client) sendNotification(ctx context.Context, msg clientMessage) {
	c.statsListener.Store(true)
	in, errs := validateNotification(msg.Data)
	sender, err := c.senderName("")
	if err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		c.send(errorMessageFrame(errs))
		return
	}
	channel := db.NotifyEveryoneChannel
	var named *string
	if in.Channel != nil && *in.Channel != "" {
		named = in.Channel
		channel = db.NotifyChannel(*in.Channel)
	}
	access, err := c.hub.auth.Access(ctx, c.principal, channel)
	if err == nil && !access.Publish {
		err = session.ErrForbidden
	}
	if err != nil {
		c.send(errorMessageFrame([]string{accessMessage(err, channel)}))
		return
	}
	data := in.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	n := Notification{
		ID:            newUUID(),
		Type:          *in.Type,
		Title:         *in.Title,
		Message:       *in.Message,
		Data:          data,
		Sender:        sender,
		Channel:       named,
		Timestamp:     time.Now().UTC().Format(timestampLayout),
		Authenticated: !c.principal.Anonymous(),
	}
	if _, err := c.hub.store.SendNotification(ctx, channel, dataFrame(notificationEvent, n), c.origin()); err != nil {
		c.log.Error("send notification", "channel", channel, "err", err)
		c.send(errorMessageFrame([]string{"cannot send the notification right now, try again"}))
		return
	}
	c.send(dataFrame("notification-sent", n))
}

// getChannels answers channels-list: this instance's notification
// channels with members, those the caller may join only (a channel's name
// can itself be sensitive).
func (c *Client) getChannels() {
	c.statsListener.Store(true)
	type channelInfo struct {
		Name        string `json:"name"`
		ClientCount int    `json:"clientCount"`
	}
	// Access to a notification channel is decided from cached grants,
	// without a query; the deadline only guards an Authorizer that would.
	ctx, cancel := context.WithTimeout(context.Background(), accessCheckWait)
	defer cancel()
	list := []channelInfo{}
	for ch, n := range c.hub.ChannelCounts() {
		name, ok := strings.CutPrefix(ch, db.NotifyPrefix)
		if !ok {
			continue
		}
		if _, err := c.hub.auth.Access(ctx, c.principal, ch); err == nil {
			list = append(list, channelInfo{name, n})
		}
	}
	slices.SortFunc(list, func(a, b channelInfo) int { return strings.Compare(a.Name, b.Name) })
	c.send(dataFrame("channels-list", list))
}

func (c *Client) getStats() {
	c.statsListener.Store(true)
	c.send(dataFrame("server-stats", c.hub.ServerStats()))
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
