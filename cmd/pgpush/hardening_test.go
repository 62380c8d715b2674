package main

// Tests of issue 13 ("safe to expose"): what an anonymous client, or a
// page on another site, can do to memory, storage and other users. Each
// runs a real server on a real database with real clients.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db/dbtest"
	"github.com/pgpush/pgpush/session"
)

// rawPost posts body with the given Content-Type and Origin (either may be
// empty) and returns the status and whether a session cookie was set.
func (s *testServer) rawPost(t *testing.T, path, contentType, origin, body string, cookie *http.Cookie) (status int, setCookie bool) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(http.MethodPost, s.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "pgpush_session" && c.MaxAge >= 0 && c.Value != "" {
			setCookie = true
		}
	}
	return resp.StatusCode, setCookie
}

// TestCrossSitePosts: a form on another site can send a text/plain or
// urlencoded POST with the victim's cookies and no preflight. Such a POST
// must neither log in nor publish (SPEC §2: 415 unless application/json,
// 403 for a present, foreign Origin).
func TestCrossSitePosts(t *testing.T) {
	t.Parallel()
	_, url, password := newShop(t)
	srv := startServer(t, url, nil)
	self := srv.base // the request's own host is allowed by default
	const foreign = "http://evil.example"
	creds := `{"email":"` + demoAdminEmail + `","password":"` + password + `"}`
	admin := srv.admin(t, password)
	publish := `{"event":"order:note","data":{"n":1}}`

	tests := []struct {
		name                string
		path, ctype, origin string
		body                string
		cookie              *http.Cookie
		want                int
	}{
		{"login text/plain from another site", "/api/v1/auth/login", "text/plain", foreign, creds, nil, http.StatusForbidden},
		{"login text/plain", "/api/v1/auth/login", "text/plain;charset=UTF-8", "", creds, nil, http.StatusUnsupportedMediaType},
		{"login urlencoded", "/api/v1/auth/login", "application/x-www-form-urlencoded", self, creds, nil, http.StatusUnsupportedMediaType},
		{"login without Content-Type", "/api/v1/auth/login", "", "", creds, nil, http.StatusUnsupportedMediaType},
		{"login JSON from another site", "/api/v1/auth/login", "application/json", foreign, creds, nil, http.StatusForbidden},
		{"login JSON, same origin", "/api/v1/auth/login", "application/json; charset=utf-8", self, creds, nil, http.StatusOK},
		{"login JSON, no Origin", "/api/v1/auth/login", "application/json", "", creds, nil, http.StatusOK},
		{"publish text/plain from another site", "/api/v1/channels/order_changes/events", "text/plain", foreign, publish, admin, http.StatusForbidden},
		{"publish text/plain", "/api/v1/channels/order_changes/events", "text/plain", "", publish, admin, http.StatusUnsupportedMediaType},
		{"publish JSON", "/api/v1/channels/order_changes/events", "application/json", self, publish, admin, http.StatusAccepted},
		{"logout from another site", "/api/v1/auth/logout", "", foreign, "", admin, http.StatusForbidden},
		{"logout with a null Origin", "/api/v1/auth/logout", "", "null", "", admin, http.StatusForbidden},
	}
	for _, tt := range tests {
		status, cookie := srv.rawPost(t, tt.path, tt.ctype, tt.origin, tt.body, tt.cookie)
		if status != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, status, tt.want)
		}
		if cookie && tt.want != http.StatusOK {
			t.Errorf("%s: a session cookie was set, want none", tt.name)
		}
	}
	// The refused logout did not end the session; a same-site one does.
	if resp, _ := srv.request(t, http.MethodGet, "/api/v1/auth/me", admin, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("me after the refused logouts: %d, want 200", resp.StatusCode)
	}
	if status, _ := srv.rawPost(t, "/api/v1/auth/logout", "", self, "", admin); status != http.StatusNoContent {
		t.Fatalf("same-site logout without a body: %d, want 204", status)
	}
}

// countRows runs a count(*) query.
func countRows(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// expectRefusal reads the next frame and checks it is an error (or, for
// notifications, error-message) whose text mentions each of words.
func expectRefusal(t *testing.T, c *wsClient, what string, words ...string) {
	t.Helper()
	m := c.read()
	var text string
	switch m["type"] {
	case "error":
		text, _ = m["message"].(string)
	case "error-message":
		errs, _ := m["errors"].([]any)
		text = strings.Join(toStrings(errs), "; ")
	default:
		t.Fatalf("%s: got %v, want an error frame", what, m)
	}
	for _, w := range words {
		if !strings.Contains(text, w) {
			t.Errorf("%s: error %q does not mention %q", what, text, w)
		}
	}
}

// TestNULIsAClearError: PostgreSQL cannot store a NUL character in text
// or jsonb. A chat message, a publish or a notification holding one gets
// an error frame naming the problem, and the server logs no ERROR: such
// input is the client's fault, and an anonymous one could otherwise
// write 20 ERROR lines a second.
func TestNULIsAClearError(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	logs := &syncBuffer{}
	srv := startServerLogged(t, url, nil, logs)
	events := countRows(t, pool, `SELECT count(*) FROM pgpush.events`)

	anon := srv.anonymous(t)
	anon.send(map[string]string{"type": "join-room", "room_id": "general", "from": "Will"})
	anon.send(map[string]string{"type": "send-message", "room_id": "general", "from": "Will", "message": "a\x00b"})
	expectRefusal(t, anon, "chat message with NUL", "NUL")
	anon.send(map[string]string{"type": "send-message", "room_id": "general", "from": "Wi\x00ll", "message": "hi"})
	expectRefusal(t, anon, "chat name with NUL", "NUL")
	anon.send(map[string]any{"type": "send-notification", "data": map[string]any{
		"channel": "devops", "type": "info", "title": "t\x00", "message": "m"}})
	expectRefusal(t, anon, "notification title with NUL", "NUL")
	anon.send(map[string]any{"type": "send-notification", "data": map[string]any{
		"channel": "devops", "type": "info", "title": "t", "message": "m", "data": map[string]any{"k\x00": 1}}})
	expectRefusal(t, anon, "notification data with NUL", "NUL")

	admin := srv.admin(t, password)
	ac := srv.connect(t, admin)
	ac.send(map[string]any{"type": "publish", "channel": "order_changes", "event": "order:note", "data": map[string]any{"note": "x\x00y"}})
	expectRefusal(t, ac, "publish with NUL", "NUL")
	ac.send(map[string]any{"type": "publish", "channel": "order_changes", "event": "order:\x00", "data": map[string]any{}})
	expectRefusal(t, ac, "event name with NUL", "NUL")
	resp, body := srv.request(t, http.MethodPost, "/api/v1/channels/order_changes/events", admin,
		map[string]any{"event": "order:note", "data": map[string]any{"note": "x\x00y"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "NUL") {
		t.Errorf("HTTP publish with NUL: %d %s, want 400 naming NUL", resp.StatusCode, body)
	}
	// An escaped backslash before "u0000" is not a NUL.
	ac.sendRaw(websocket.TextMessage, []byte(`{"type":"publish","channel":"order_changes","event":"order:note","data":{"path":"C:\\u0000"}}`))
	ac.expectType("published")

	// The sockets are still served, and nothing was stored.
	anon.send(map[string]string{"type": "send-message", "room_id": "general", "from": "Will", "message": "fine"})
	if got := anon.expectType("receive-message"); got["message"] != "fine" {
		t.Fatalf("after the refusals Will got %v, want his message", got)
	}
	if got, want := countRows(t, pool, `SELECT count(*) FROM pgpush.events`), events+3; got != want {
		t.Errorf("events stored: %d, want %d (the join, the message and the valid publish)", got, want)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("server logged an ERROR for client input:\n%s", logs.String())
	}
}

// expectMessage reads frames until a receive-message arrives and returns it.
// Join and leave announcements of other members may come first.
func expectMessage(t *testing.T, c *wsClient) map[string]any {
	t.Helper()
	for {
		m := c.read()
		switch m["type"] {
		case "receive-message":
			return m
		case "join-room", "leave-room":
			continue
		}
		t.Fatalf("got %v, want receive-message", m)
	}
}

// TestRoomAndNotificationLimits: SPEC §4's limits, counted in characters
// (é is two bytes): each one exactly is accepted, one more is refused with
// an error naming the field, and a refused message stores nothing.
func TestRoomAndNotificationLimits(t *testing.T) {
	t.Parallel()
	pool, url, _ := newShop(t)
	srv := startServer(t, url, nil)
	anon := srv.anonymous(t)
	events := func() int { return countRows(t, pool, `SELECT count(*) FROM pgpush.events`) }
	chars := func(n int) string { return strings.Repeat("é", n) }
	ids := func(n int) string { return strings.Repeat("r", n) }
	stored := events()

	// Room ids up to 200 characters; a chat message up to 4,000; a name up
	// to 100.
	anon.send(map[string]string{"type": "join-room", "room_id": ids(201), "from": "Will"})
	expectRefusal(t, anon, "room id of 201", "room_id", "200")
	room := ids(200)
	anon.send(map[string]string{"type": "join-room", "room_id": room, "from": "Will"})
	stored++ // the join announcement
	anon.send(map[string]string{"type": "send-message", "room_id": room, "from": "Will", "message": chars(4000)})
	if got := expectMessage(t, anon); got["message"] != chars(4000) || got["room_id"] != room {
		t.Fatalf("4,000-character message in a 200-character room: got %.200v", got)
	}
	stored++
	anon.send(map[string]string{"type": "send-message", "room_id": room, "from": "Will", "message": chars(4001)})
	expectRefusal(t, anon, "chat message of 4,001 characters", "message", "4000")
	anon.send(map[string]string{"type": "send-message", "room_id": room, "from": chars(100), "message": "hi"})
	if got := expectMessage(t, anon); got["from"] != chars(100) {
		t.Fatalf("100-character name: got from %v, want it whole", got["from"])
	}
	stored++
	anon.send(map[string]string{"type": "send-message", "room_id": room, "from": chars(101), "message": "hi"})
	expectRefusal(t, anon, "name of 101 characters", "from", "100")
	anon.send(map[string]string{"type": "join-room", "room_id": "other", "from": chars(101)})
	expectRefusal(t, anon, "join with a name of 101 characters", "from", "100")

	// Notifications: title 200, message 4,000, data 16 KiB of JSON,
	// channel name 200.
	pad := func(size int) map[string]any { // data whose JSON is size bytes
		return map[string]any{"pad": strings.Repeat("a", size-len(`{"pad":""}`))}
	}
	notify := func(channel, title, message string, data any) {
		t.Helper()
		n := map[string]any{"channel": channel, "type": "info", "title": title, "message": message}
		if data != nil {
			n["data"] = data
		}
		anon.send(map[string]any{"type": "send-notification", "data": n})
	}
	accepted := func(what string) {
		t.Helper()
		if m := anon.read(); m["type"] != "notification-sent" {
			t.Fatalf("%s: got %.300v, want notification-sent", what, m)
		}
		stored++
	}
	notify(ids(200), chars(200), chars(4000), pad(16<<10))
	accepted("notification at every limit")
	notify(ids(201), "t", "m", nil)
	expectRefusal(t, anon, "channel of 201", "channel", "200")
	notify("c", chars(201), "m", nil)
	expectRefusal(t, anon, "title of 201 characters", "title", "200")
	notify("c", "t", chars(4001), nil)
	expectRefusal(t, anon, "message of 4,001 characters", "message", "4000")
	notify("c", "t", "m", pad(16<<10+1))
	expectRefusal(t, anon, "data of 16 KiB + 1", "data", "16 KiB")
	// Pretty-printed data counts as its compact JSON.
	anon.sendRaw(websocket.TextMessage, []byte(`{"type":"send-notification","data":{"channel":"c","type":"info","title":"t","message":"m","data":`+
		strings.Replace(`{"pad":"`+strings.Repeat("a", 16<<10-len(`{"pad":""}`))+`"}`, ":", " :   ", 1)+`}}`))
	accepted("pretty-printed data of 16 KiB")

	if got := events(); got != stored {
		t.Errorf("events stored: %d, want %d (refused messages store nothing)", got, stored)
	}
}

// TestPendingNotificationsKeepNewest100: a channel with no member keeps
// only its 100 newest notifications, and the next member gets those.
func TestPendingNotificationsKeepNewest100(t *testing.T) {
	t.Parallel()
	pool, url, _ := newShop(t)
	srv := startServer(t, url, nil)
	const sent = 105
	// Three senders, one after the other, each within the burst of 60
	// messages a socket may send.
	for from := 1; from <= sent; from += 35 {
		c := srv.anonymous(t)
		for n := from; n < from+35; n++ {
			c.send(map[string]any{"type": "send-notification", "data": map[string]any{
				"channel": "backlog", "type": "info", "title": fmt.Sprint(n), "message": "m"}})
		}
		for range 35 {
			c.expectType("notification-sent")
		}
		c.conn.Close()
	}
	if got := countRows(t, pool, `SELECT count(*) FROM pgpush.notifications WHERE channel = 'notify:backlog'`); got != 100 {
		t.Errorf("stored pending notifications: %d, want 100", got)
	}
	member := srv.anonymous(t)
	member.send(map[string]any{"type": "join-channel", "data": "backlog"})
	joined := member.expectType("channel-joined")["data"].(map[string]any)
	if joined["pendingCount"] != float64(100) {
		t.Fatalf("channel-joined = %v, want pendingCount 100", joined)
	}
	for n := sent - 99; n <= sent; n++ {
		got := member.expectType("notification-received")["data"].(map[string]any)
		if got["title"] != fmt.Sprint(n) {
			t.Fatalf("pending notification %v, want title %d (the 100 newest, oldest first)", got["title"], n)
		}
	}
}

// TestRoomMessagesPruned: room messages are kept for EVENT_RETENTION like
// everything else; GET /rooms then no longer lists a room whose messages
// all expired.
func TestRoomMessagesPruned(t *testing.T) {
	t.Parallel()
	pool, url, _ := newShop(t)
	a := startServer(t, url, nil) // retention: 1h
	c := a.anonymous(t)
	for _, room := range []string{"old", "fresh"} {
		c.send(map[string]string{"type": "join-room", "room_id": room, "from": "Will"})
		c.send(map[string]string{"type": "send-message", "room_id": room, "from": "Will", "message": "hi"})
		expectMessage(t, c)
	}
	exec(t, pool, `UPDATE pgpush.room_messages SET sent_at = now() - interval '2 hours' WHERE room_id = 'old'`)
	a.stop(t) // b becomes the sequencer, whose instance prunes, at once
	b := startServer(t, url, nil)
	dbtest.Eventually(t, waitTimeout, func() bool {
		return countRows(t, pool, `SELECT count(*) FROM pgpush.room_messages WHERE room_id = 'old'`) == 0
	})
	if got := countRows(t, pool, `SELECT count(*) FROM pgpush.room_messages WHERE room_id = 'fresh'`); got != 1 {
		t.Errorf("fresh room holds %d messages, want 1", got)
	}
	if got := getRooms(t, b, nil); !slices.Equal(got, []string{"fresh"}) {
		t.Errorf("GET /rooms = %v, want [fresh]", got)
	}
}

// getRooms returns GET /rooms's list.
func getRooms(t *testing.T, srv *testServer, cookie *http.Cookie) []string {
	t.Helper()
	resp, body := srv.request(t, http.MethodGet, "/rooms", cookie, nil)
	var rooms struct {
		Rooms []string `json:"rooms"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &rooms) != nil {
		t.Fatalf("GET /rooms = %d %s", resp.StatusCode, body)
	}
	return rooms.Rooms
}

// TestRoomsListIsBounded: 1,900 rooms made GET /rooms answer 177 KB; it
// lists at most the 1,000 most recently active, newest first.
func TestRoomsListIsBounded(t *testing.T) {
	t.Parallel()
	pool, url, _ := newShop(t)
	// Rooms made directly in the table: through sockets, 1,005 rooms would
	// take a minute of rate limits.
	exec(t, pool, `INSERT INTO pgpush.room_messages (room_id, sender, message, sent_at)
		SELECT 'room-' || g, 'x', 'y', now() - (1005 - g) * interval '1 second' FROM generate_series(1, 1005) g`)
	srv := startServer(t, url, nil)
	got := getRooms(t, srv, nil)
	if len(got) != 1000 {
		t.Fatalf("GET /rooms lists %d rooms, want 1000", len(got))
	}
	if got[0] != "room-1005" || got[999] != "room-6" {
		t.Errorf("GET /rooms = [%s … %s], want [room-1005 … room-6] (newest first)", got[0], got[999])
	}
}

// TestAnonymousNamesAreNotEmails: an anonymous sender cannot take a name
// that looks like an e-mail address, which only logged-in users are named
// by, and receive-message and notification-received say whether the
// sender was logged in.
func TestAnonymousNamesAreNotEmails(t *testing.T) {
	t.Parallel()
	_, url, password := newShop(t)
	srv := startServer(t, url, nil)
	anon := srv.anonymous(t)
	for _, name := range []string{demoAdminEmail, "admin＠example.com", "a@b"} {
		anon.send(map[string]string{"type": "join-room", "room_id": "general", "from": name})
		expectRefusal(t, anon, "join as "+name, "from", "e-mail")
	}
	anon.send(map[string]string{"type": "join-room", "room_id": "general", "from": "Will"})
	anon.send(map[string]string{"type": "send-message", "room_id": "general", "from": demoAdminEmail, "message": "I am the admin"})
	expectRefusal(t, anon, "message as "+demoAdminEmail, "from", "e-mail")

	admin := srv.connect(t, srv.admin(t, password))
	admin.send(map[string]string{"type": "join-room", "room_id": "general", "from": "ignored"})
	admin.send(map[string]string{"type": "send-message", "room_id": "general", "from": "ignored", "message": "from the admin"})
	for _, c := range []*wsClient{anon, admin} {
		got := expectMessage(t, c)
		if got["from"] != demoAdminEmail || got["authenticated"] != true {
			t.Errorf("admin's message arrived as %v, want from %s and authenticated true", got, demoAdminEmail)
		}
	}
	anon.send(map[string]string{"type": "send-message", "room_id": "general", "from": "Will", "message": "from Will"})
	for _, c := range []*wsClient{anon, admin} {
		got := expectMessage(t, c)
		if got["from"] != "Will" || got["authenticated"] != false {
			t.Errorf("Will's message arrived as %v, want from Will and authenticated false", got)
		}
	}

	// Notifications to everyone reach both sockets, the sender included.
	for _, sender := range []*wsClient{anon, admin} {
		sender.send(map[string]any{"type": "send-notification", "data": map[string]any{"type": "info", "title": "t", "message": "m"}})
		wantAuth := sender == admin
		for _, c := range []*wsClient{anon, admin} {
			for {
				m := c.read()
				if m["type"] != "notification-received" {
					continue // notification-sent, server-stats
				}
				if got := m["data"].(map[string]any)["authenticated"]; got != wantAuth {
					t.Errorf("notification-received %v: authenticated %v, want %v", m["data"], got, wantAuth)
				}
				break
			}
		}
	}
}

// TestSessionsPerUser: 60 correct logins gave 60 sessions of 7 days each.
// A user holds at most 20: the 21st login ends the oldest, whose sockets
// close with 1008 and whose cookie no longer works.
func TestSessionsPerUser(t *testing.T) {
	t.Parallel()
	pool, url, _ := newShop(t)
	secAddUser(t, secStore(t, pool), "ana@shop.example.com", "customer", nil)
	srv := startServer(t, url, nil)
	oldest := srv.login(t, "ana@shop.example.com", secPassword)
	sock := srv.connect(t, oldest)
	cookies := []*http.Cookie{oldest}
	for range 20 {
		cookies = append(cookies, srv.login(t, "ana@shop.example.com", secPassword))
	}
	sock.expectClose(websocket.ClosePolicyViolation)
	if resp, _ := srv.request(t, http.MethodGet, "/api/v1/auth/me", oldest, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("oldest session after 20 more logins: %d, want 401", resp.StatusCode)
	}
	for i, c := range cookies[1:] {
		if resp, _ := srv.request(t, http.MethodGet, "/api/v1/auth/me", c, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("session %d of the 20 newest: %d, want 200", i+2, resp.StatusCode)
		}
	}
	if got := countRows(t, pool, `SELECT count(*) FROM pgpush.sessions s JOIN pgpush.users u ON u.id = s.user_id WHERE u.email = 'ana@shop.example.com'`); got != 20 {
		t.Errorf("sessions stored: %d, want 20", got)
	}
}

// nextNotification reads frames until a notification-received and returns
// its payload; server-stats pushes and answers of other kinds are skipped.
func nextNotification(t *testing.T, c *wsClient) map[string]any {
	t.Helper()
	for {
		m := c.read()
		if m["type"] == "notification-received" {
			return m["data"].(map[string]any)
		}
		if m["type"] == "error" || m["type"] == "error-message" {
			t.Fatalf("got %v, want notification-received", m)
		}
	}
}

// notificationCustomer is the customer_id in a notification's data.
func notificationCustomer(n map[string]any) any {
	data, _ := n["data"].(map[string]any)
	return data["customer_id"]
}

// TestNotificationMatch: with `grant 'notify:*' --match
// customer_id=customer_id`, a customer gets only notifications whose data
// carries their customer_id: pending ones (the others stay pending for the
// customer they belong to, and pendingCount counts only what the joiner
// gets), live ones on a named channel, and those sent to everyone.
func TestNotificationMatch(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	secGrant(t, pool, session.Grant{Channel: "notify:*", Role: "customer", Match: map[string]string{"customer_id": "customer_id"}})
	store := secStore(t, pool)
	secAddUser(t, store, "c45@shop.example.com", "customer", map[string]string{"customer_id": "45"})
	secAddUser(t, store, "c46@shop.example.com", "customer", map[string]string{"customer_id": "46"})
	srv := startServer(t, url, nil)
	admin := srv.connect(t, srv.admin(t, password))
	notify := func(channel string, customer int, title string) {
		t.Helper()
		n := map[string]any{"type": "info", "title": title, "message": "m", "data": map[string]any{"customer_id": customer}}
		if channel != "" {
			n["channel"] = channel
		}
		admin.send(map[string]any{"type": "send-notification", "data": n})
		for admin.read()["type"] != "notification-sent" { // an everyone-notification also reaches the admin
		}
	}

	// Pending: sent while the channel has no member.
	notify("orders", 46, "for 46")
	notify("orders", 45, "for 45")
	dbtest.Eventually(t, waitTimeout, func() bool { // dispatched with no member: pending
		_, body := srv.request(t, http.MethodGet, "/metrics", nil, nil)
		return regexp.MustCompile(`(?m)^pgpush_events_received_total [2-9]`).Match(body)
	})
	c45 := srv.connect(t, srv.login(t, "c45@shop.example.com", secPassword))
	c45.send(map[string]any{"type": "join-channel", "data": "orders"})
	if got := c45.expectType("channel-joined")["data"].(map[string]any); got["pendingCount"] != float64(1) {
		t.Fatalf("customer 45 joined with %v, want pendingCount 1", got)
	}
	if got := nextNotification(t, c45); got["title"] != "for 45" {
		t.Fatalf("customer 45's pending notification: %v, want the one for 45", got)
	}
	c46 := srv.connect(t, srv.login(t, "c46@shop.example.com", secPassword))
	c46.send(map[string]any{"type": "join-channel", "data": "orders"})
	if got := c46.expectType("channel-joined")["data"].(map[string]any); got["pendingCount"] != float64(1) {
		t.Fatalf("customer 46 joined with %v, want pendingCount 1 (left pending by 45)", got)
	}
	if got := nextNotification(t, c46); got["title"] != "for 46" {
		t.Fatalf("customer 46's pending notification: %v, want the one for 46", got)
	}

	// Live, to the named channel: each gets their own, in order; the next
	// one each receives after the other's shows nothing leaked.
	notify("orders", 46, "live for 46")
	notify("orders", 45, "live for 45")
	if got := nextNotification(t, c45); got["title"] != "live for 45" {
		t.Errorf("customer 45 live: %v, want only the one for 45", got)
	}
	if got := nextNotification(t, c46); got["title"] != "live for 46" {
		t.Errorf("customer 46 live: %v, want the one for 46", got)
	}

	// To everyone: the same rule on the notification's data.
	notify("", 46, "everyone, 46's data")
	notify("", 45, "everyone, 45's data")
	if got := nextNotification(t, c45); got["title"] != "everyone, 45's data" || notificationCustomer(got) != float64(45) {
		t.Errorf("customer 45 got %v, want only the notification carrying 45's data", got)
	}
	if got := nextNotification(t, c46); got["title"] != "everyone, 46's data" {
		t.Errorf("customer 46 got %v, want the notification carrying 46's data", got)
	}
}

// channelsList asks for get-channels and returns the names listed.
func channelsList(t *testing.T, c *wsClient) []string {
	t.Helper()
	c.send(map[string]any{"type": "get-channels"})
	for {
		m := c.read()
		if m["type"] != "channels-list" {
			continue // server-stats
		}
		var names []string
		for _, ch := range m["data"].([]any) {
			names = append(names, ch.(map[string]any)["name"].(string))
		}
		return names
	}
}

// TestChannelListsOnlyWhatCallerMayJoin: get-channels' channels-list,
// GET /api/v1/channels and GET /rooms list only what the caller may join
// or subscribe to; with notify:* revoked from anonymous, channels-list
// still named an admin's notification channel.
func TestChannelListsOnlyWhatCallerMayJoin(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	secRevoke(t, pool, "notify:*", session.RoleAnonymous)
	secRevoke(t, pool, "room:*", session.RoleAnonymous)
	secGrant(t, pool, session.Grant{Channel: "room:public-*", Role: session.RoleAnonymous, Publish: true})
	secGrant(t, pool, session.Grant{Channel: "notify:public-*", Role: "customer"})
	secGrant(t, pool, session.Grant{Channel: "order_changes", Role: "customer", Match: map[string]string{"customer_id": "customer_id"}})
	store := secStore(t, pool)
	secAddUser(t, store, "ada@shop.example.com", "customer", map[string]string{"customer_id": "1"})
	secAddUser(t, store, "nobody@shop.example.com", "customer", nil) // no customer_id
	exec(t, pool, `INSERT INTO pgpush.room_messages (room_id, sender, message) VALUES ('public-a', 'x', 'y'), ('staff', 'x', 'y')`)
	srv := startServer(t, url, nil)

	admin := srv.connect(t, srv.admin(t, password))
	for _, ch := range []string{"ops-secret-incident-4711", "public-news"} {
		admin.send(map[string]any{"type": "join-channel", "data": ch})
		admin.expectType("channel-joined")
	}
	ada := srv.login(t, "ada@shop.example.com", secPassword)
	nobody := srv.login(t, "nobody@shop.example.com", secPassword)

	if got := channelsList(t, srv.anonymous(t)); len(got) != 0 {
		t.Errorf("anonymous channels-list %v, want none (anonymous may join no notification channel)", got)
	}
	if got := channelsList(t, srv.connect(t, ada)); !slices.Equal(got, []string{"public-news"}) {
		t.Errorf("customer channels-list %v, want [public-news]", got)
	}
	if got := channelsList(t, admin); !slices.Equal(got, []string{"ops-secret-incident-4711", "public-news"}) {
		t.Errorf("admin channels-list %v, want both channels", got)
	}

	// room:public-* is anonymous's, which every logged-in user has too.
	if _, got := secChannels(t, srv, ada); !mapsEqual(got, map[string]int{"order_changes": 0, "notify:public-*": 0, "room:public-*": 0}) {
		t.Errorf("GET /api/v1/channels for a customer: %v, want order_changes, notify:public-* and room:public-*", got)
	}
	if _, got := secChannels(t, srv, nobody); !mapsEqual(got, map[string]int{"notify:public-*": 0, "room:public-*": 0}) {
		t.Errorf("GET /api/v1/channels for a customer without customer_id: %v, want notify:public-* and room:public-* (order_changes needs the attribute)", got)
	}

	if got := getRooms(t, srv, nil); !slices.Equal(got, []string{"public-a"}) {
		t.Errorf("GET /rooms for anonymous: %v, want [public-a]", got)
	}
	if got := getRooms(t, srv, srv.admin(t, password)); len(got) != 2 {
		t.Errorf("GET /rooms for the admin: %v, want both rooms", got)
	}
}

// TestLoggedInUserCanDoWhatAnonymousCan: with the demo's grants (rooms and
// notifications to anonymous), a logged-in customer, whose role holds no
// grant of its own there, could not join the rooms every anonymous client
// could. A login never takes rights away.
func TestLoggedInUserCanDoWhatAnonymousCan(t *testing.T) {
	t.Parallel()
	pool, url, _ := newShop(t)
	secAddUser(t, secStore(t, pool), "ana@shop.example.com", "customer", nil)
	srv := startServer(t, url, nil)
	cookie := srv.login(t, "ana@shop.example.com", secPassword)
	ana := srv.connect(t, cookie)
	ana.send(map[string]string{"type": "join-room", "room_id": "general"})
	ana.send(map[string]string{"type": "send-message", "room_id": "general", "message": "hello"})
	if got := expectMessage(t, ana); got["from"] != "ana@shop.example.com" || got["authenticated"] != true {
		t.Fatalf("customer's message: %v, want it from ana@shop.example.com, authenticated", got)
	}
	ana.send(map[string]any{"type": "join-channel", "data": "devops"})
	ana.expectType("channel-joined")
	ana.send(map[string]any{"type": "send-notification", "data": map[string]any{"channel": "devops", "type": "info", "title": "t", "message": "m"}})
	for {
		m := ana.read()
		if m["type"] == "notification-sent" {
			break
		}
		if m["type"] == "error-message" {
			t.Fatalf("customer's notification refused: %v", m)
		}
	}
	if _, got := secChannels(t, srv, cookie); !mapsEqual(got, map[string]int{"room:*": 0, "notify:*": 0}) {
		t.Errorf("GET /api/v1/channels for the customer: %v, want room:* and notify:*", got)
	}
	if got := getRooms(t, srv, cookie); !slices.Equal(got, []string{"general"}) {
		t.Errorf("GET /rooms for the customer: %v, want [general]", got)
	}
	// Change channels stay as the customer's role makes them: none.
	ana.send(map[string]any{"type": "subscribe", "channel": "order_changes"})
	for {
		m := ana.read()
		if m["type"] == "notification-received" || m["type"] == "server-stats" {
			continue // her own notification, as a member of devops
		}
		if m["type"] != "error" || m["channel"] != "order_changes" {
			t.Fatalf("subscribe to order_changes: %v, want an error", m)
		}
		break
	}
}

// sioPoll is an Engine.IO long-polling session driven by hand.
type sioPoll struct {
	t    *testing.T
	srv  *testServer
	url  string // with sid
	open map[string]any
}

// sioDo sends one Engine.IO polling request and returns status and body.
func (s *testServer) sioDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// sioHandshake opens a polling session; it returns nil and the status
// when the handshake is refused.
func (s *testServer) sioHandshake(t *testing.T) (*sioPoll, int) {
	t.Helper()
	status, body := s.sioDo(t, http.MethodGet, s.base+"/socket.io/?EIO=4&transport=polling", "")
	if status != http.StatusOK {
		return nil, status
	}
	var open map[string]any
	if !strings.HasPrefix(body, "0") || json.Unmarshal([]byte(body[1:]), &open) != nil {
		t.Fatalf("handshake answer %q, want an open packet", body)
	}
	p := &sioPoll{t: t, srv: s, url: s.base + "/socket.io/?EIO=4&transport=polling&sid=" + open["sid"].(string), open: open}
	t.Cleanup(func() { s.sioDo(t, http.MethodPost, p.url, "1") }) // close, so shutdown need not wait
	return p, status
}

func (p *sioPoll) post(body string) int {
	p.t.Helper()
	status, _ := p.srv.sioDo(p.t, http.MethodPost, p.url, body)
	return status
}

// until polls until a packet starting with prefix arrives and returns it.
func (p *sioPoll) until(prefix string) string {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		status, body := p.srv.sioDo(p.t, http.MethodGet, p.url, "")
		if status != http.StatusOK {
			p.t.Fatalf("poll: %d %q", status, body)
		}
		for _, packet := range strings.Split(body, "\x1e") {
			if packet == "2" {
				p.post("3")
			}
			if strings.HasPrefix(packet, prefix) {
				return packet
			}
		}
	}
	p.t.Fatalf("no packet starting with %q", prefix)
	return ""
}

// TestSocketIOLimits: one address opened 5,000 Socket.IO sessions, and 150
// handshakes with 900 KB usernames took the server to 351 MB. Socket.IO
// sessions count against SOCKETS_PER_ADDRESS together with /ws (429 on the
// handshake beyond), packets and polling bodies are capped at 64 KiB like
// /ws frames (413), and the auth payload is bounded.
func TestSocketIOLimits(t *testing.T) {
	t.Parallel()
	_, url, _ := newShop(t)
	srv := startServer(t, url, func(c *serverConfig) { c.Limits.SocketsPerAddress = 3 })
	srv.anonymous(t) // one /ws socket
	a, _ := srv.sioHandshake(t)
	if got := a.open["maxPayload"]; got != float64(64<<10) {
		t.Errorf("handshake maxPayload %v, want 65536", got)
	}
	srv.sioHandshake(t)
	if _, status := srv.sioHandshake(t); status != http.StatusTooManyRequests {
		t.Fatalf("4th socket of the address as a Socket.IO handshake: %d, want 429", status)
	}
	if _, resp, err := srv.dial(t, "/ws", nil, nil); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th socket of the address on /ws: %v %v, want 429", err, resp)
	}
	// Ending a Socket.IO session frees its slot.
	a.post("1")
	var b *sioPoll
	dbtest.Eventually(t, waitTimeout, func() bool {
		b, _ = srv.sioHandshake(t)
		return b != nil
	})

	// 64 KiB: a packet of exactly that much passes, one byte more is 413.
	if status := b.post("40"); status != http.StatusOK {
		t.Fatalf("CONNECT: %d", status)
	}
	b.until("42[\"connection-confirmed\"")
	event := func(size int) string {
		prefix := `42["get-stats","`
		return prefix + strings.Repeat("x", size-len(prefix)-2) + `"]`
	}
	if status := b.post(event(64 << 10)); status != http.StatusOK {
		t.Errorf("POST of 64 KiB: %d, want 200", status)
	}
	if status := b.post(event(64<<10 + 1)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("POST of 64 KiB + 1: %d, want 413", status)
	}

	// An auth payload over 4 KiB is refused at CONNECT (CONNECT_ERROR).
	dbtest.Eventually(t, waitTimeout, func() bool { // b's slot is freed by the 413
		b, _ = srv.sioHandshake(t)
		return b != nil
	})
	if status := b.post(`40{"username":"` + strings.Repeat("u", 5<<10) + `"}`); status != http.StatusOK {
		t.Fatalf("CONNECT with a 5 KiB auth: %d", status)
	}
	if got := b.until(`44{`); !strings.Contains(got, "auth: at most 4 KiB") {
		t.Errorf("CONNECT with a 5 KiB auth got %q, want a CONNECT_ERROR about the auth payload", got)
	}
}
