package main

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pgpush/pgpush/db/dbtest"
)

// anonymous dials /ws without a cookie: the demo grants rooms and
// notifications to anonymous, as the chat-ws and ChapFood clients need.
func (s *testServer) anonymous(t *testing.T) *wsClient {
	t.Helper()
	c, _, err := s.dial(t, "/ws", nil, nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	if got := c.expectType("connected"); got["userId"] != nil {
		t.Fatalf("anonymous connected frame = %v, want userId null", got)
	}
	return c
}

// TestChatRoomsAcrossInstances: the chat-ws protocol, with members on two
// instances.
func TestChatRoomsAcrossInstances(t *testing.T) {
	t.Parallel()
	_, url, _ := newShop(t)
	a := startServer(t, url, nil)
	b := startServer(t, url, nil)
	will, ana := a.anonymous(t), b.anonymous(t)

	// Chat-ws has no join acknowledgement: a member knows it is in once its
	// own message comes back.
	ana.send(map[string]string{"type": "join-room", "room_id": "general", "from": "Ana"})
	ana.send(map[string]string{"type": "send-message", "room_id": "general", "from": "Ana", "message": "ana-ready"})
	if got := ana.expectType("receive-message"); got["message"] != "ana-ready" {
		t.Fatalf("Ana got %v", got)
	}
	will.send(map[string]string{"type": "join-room", "room_id": "general", "from": "Will"})
	will.send(map[string]string{"type": "send-message", "room_id": "general", "from": "Will", "message": "will-ready"})
	for {
		// Ana's join and message may still be in flight on A when Will
		// joined: A learns of them from the sequencer, wherever it runs.
		got := will.read()
		if got["type"] == "join-room" && got["from"] == "Ana" {
			continue
		}
		if got["type"] != "receive-message" {
			t.Fatalf("Will got %v, want a receive-message", got)
		}
		if got["message"] == "will-ready" {
			break
		}
		if got["message"] != "ana-ready" {
			t.Fatalf("Will got %v", got)
		}
	}
	// Will's join is re-broadcast to the other member only, before his message.
	if got, want := ana.read(), map[string]any{"type": "join-room", "room_id": "general", "from": "Will"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Ana got %v, want %v", got, want)
	}
	if got := ana.expectType("receive-message"); got["message"] != "will-ready" {
		t.Fatalf("Ana got %v", got)
	}

	will.send(map[string]string{"type": "send-message", "room_id": "general", "from": "Will", "message": "hello"})
	for _, c := range []*wsClient{ana, will} {
		got := c.expectType("receive-message")
		if got["room_id"] != "general" || got["from"] != "Will" || got["message"] != "hello" {
			t.Fatalf("receive-message = %v", got)
		}
		if _, ok := got["sent_at"].(float64); !ok {
			t.Fatalf("sent_at = %#v, want float unix seconds", got["sent_at"])
		}
	}

	ana.send(map[string]string{"type": "leave-room", "room_id": "general", "from": "Ana"})
	if got := will.expectType("leave-room"); got["from"] != "Ana" {
		t.Fatalf("leave-room = %v", got)
	}
	resp, body := a.request(t, http.MethodGet, "/rooms", nil, nil)
	var rooms struct{ Rooms []string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &rooms) != nil || !reflect.DeepEqual(rooms.Rooms, []string{"general"}) {
		t.Fatalf("GET /rooms = %d %s, want {\"rooms\":[\"general\"]}", resp.StatusCode, body)
	}
	if resp, _ := a.request(t, http.MethodGet, "/rooms/nope", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /rooms/nope = %d, want 404", resp.StatusCode)
	}
	// Not a member any more: sending is refused, the socket stays open.
	ana.send(map[string]string{"type": "send-message", "room_id": "general", "message": "x"})
	ana.expectType("error")
	ana.send(map[string]string{"type": "join-room"})
	ana.expectType("error")
}

// TestNotifications: the ChapFood feature set on /ws, across two instances.
func TestNotifications(t *testing.T) {
	t.Parallel()
	_, url, password := newShop(t)
	a := startServer(t, url, nil)
	b := startServer(t, url, nil)

	// A notification to a channel nobody joined waits for its first member.
	sender := a.connect(t, a.admin(t, password))
	sender.send(map[string]any{"type": "send-notification", "data": map[string]any{
		"channel": "devops", "type": "warning", "title": "Disk", "message": "90% full"}})
	sent := sender.expectType("notification-sent")["data"].(map[string]any)
	if sent["sender"] != demoAdminEmail || sent["channel"] != "devops" || sent["id"] == "" {
		t.Fatalf("notification-sent = %v", sent)
	}

	// Wait until B has dispatched it with no member, so it is pending
	// rather than caught live by the joining socket.
	dbtest.Eventually(t, waitTimeout, func() bool {
		_, body := b.request(t, http.MethodGet, "/metrics", nil, nil)
		return regexp.MustCompile(`(?m)^pgpush_events_received_total [1-9]`).Match(body)
	})
	member := b.anonymous(t)
	member.send(map[string]any{"type": "join-channel", "data": "devops"})
	joined := member.expectType("channel-joined")["data"].(map[string]any)
	if joined["channel"] != "devops" || joined["pendingCount"] != float64(1) || joined["clientCount"] != float64(1) {
		t.Fatalf("channel-joined = %v, want devops with 1 client and 1 pending", joined)
	}
	pending := member.expectType("notification-received")["data"].(map[string]any)
	if pending["id"] != sent["id"] || pending["title"] != "Disk" {
		t.Fatalf("pending notification = %v, want %v", pending, sent)
	}

	// Live: to the channel's members, and to everyone without a channel.
	sender.send(map[string]any{"type": "send-notification", "data": map[string]any{
		"channel": "devops", "type": "info", "title": "Deploy", "message": "done", "data": map[string]any{"build": 7}}})
	sender.expectType("notification-sent")
	got := member.expectType("notification-received")["data"].(map[string]any)
	if got["title"] != "Deploy" || !reflect.DeepEqual(got["data"], map[string]any{"build": float64(7)}) {
		t.Fatalf("live notification = %v", got)
	}
	sender.send(map[string]any{"type": "send-notification", "data": map[string]any{"type": "success", "title": "All", "message": "hi"}})
	// Everyone includes the sender; its own echo may overtake the answer.
	first, second := sender.read()["type"], sender.read()["type"]
	if !(first == "notification-sent" && second == "notification-received" ||
		first == "notification-received" && second == "notification-sent") {
		t.Fatalf("sender got %v then %v, want notification-sent and notification-received", first, second)
	}
	if got := member.expectType("notification-received")["data"].(map[string]any); got["title"] != "All" || got["channel"] != nil {
		t.Fatalf("notification to everyone = %v", got)
	}

	// Validation lists every problem.
	sender.send(map[string]any{"type": "send-notification", "data": map[string]any{"type": "loud", "channel": "bad channel!"}})
	errs := sender.expectType("error-message")["errors"].([]any)
	joinedErrs := strings.Join(toStrings(errs), "|")
	for _, want := range []string{"type", "title", "message", "channel"} {
		if !strings.Contains(joinedErrs, want) {
			t.Errorf("error-message %v does not mention %s", errs, want)
		}
	}

	member.send(map[string]any{"type": "get-channels"})
	list := member.expectType("channels-list")["data"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["name"] != "devops" {
		t.Fatalf("channels-list = %v", list)
	}
	member.send(map[string]any{"type": "get-stats"})
	stats := member.expectType("server-stats")["data"].(map[string]any)
	if _, ok := stats["connectedClients"]; !ok {
		t.Fatalf("server-stats = %v", stats)
	}
	member.send(map[string]any{"type": "leave-channel", "data": "devops"})
	if got := member.expectType("channel-left")["data"].(map[string]any); got["channel"] != "devops" {
		t.Fatalf("channel-left = %v", got)
	}
	// Another socket connecting changes the client count: the member, who
	// uses notifications, gets a server-stats push.
	b.anonymous(t)
	if got := member.expectType("server-stats")["data"].(map[string]any); got["connectedClients"] == nil {
		t.Fatalf("server-stats push = %v", got)
	}
}

func toStrings(list []any) []string {
	out := make([]string, len(list))
	for i, v := range list {
		out[i], _ = v.(string)
	}
	return out
}

// TestReservedChannelsRefuseGenericPublish: a generic publish cannot forge
// a chat message or a notification, whose frames members get verbatim.
func TestReservedChannelsRefuseGenericPublish(t *testing.T) {
	t.Parallel()
	_, url, password := newShop(t)
	srv := startServer(t, url, nil)
	anon := srv.anonymous(t)
	for _, channel := range []string{"room:general", "notify:devops", "pgpush:broadcast"} {
		anon.send(map[string]any{"type": "publish", "channel": channel, "event": "x",
			"data": map[string]any{"type": "receive-message", "from": demoAdminEmail, "message": "forged"}})
		if got := anon.expectType("error"); !strings.Contains(got["message"].(string), "send-message") {
			t.Errorf("publish on %s: %v, want a refusal", channel, got)
		}
		resp, _ := srv.request(t, http.MethodPost, "/api/v1/channels/"+channel+"/events", srv.admin(t, password),
			map[string]any{"event": "x", "data": map[string]any{}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST events on %s: %d, want 403", channel, resp.StatusCode)
		}
	}
}

// TestEndedSessionsAreSwept: a session that ends without its announcement
// reaching this instance (deleted while the listener was away) still
// closes its sockets, at the next session check.
func TestEndedSessionsAreSwept(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, func(c *serverConfig) { c.SessionCheckEvery = 200 * time.Millisecond })
	c := srv.connect(t, srv.admin(t, password))
	exec(t, pool, `DELETE FROM pgpush.sessions`) // no NOTIFY: as if it were missed
	c.expectClose(websocket.ClosePolicyViolation)
}
