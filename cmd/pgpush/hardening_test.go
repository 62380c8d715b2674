package main

// Tests of issue 13 ("safe to expose"): what an anonymous client, or a
// page on another site, can do to memory, storage and other users. Each
// runs a real server on a real database with real clients.

import (
	"io"
	"net/http"
	"strings"
	"testing"
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
