package main

// Tests of issue 13 ("safe to expose"): what an anonymous client, or a
// page on another site, can do to memory, storage and other users. Each
// runs a real server on a real database with real clients.

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
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
