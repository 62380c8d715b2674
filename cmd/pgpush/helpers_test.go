package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/pgpush/pgpush/db/dbtest"
)

// waitTimeout bounds every wait for something that must happen.
const waitTimeout = 10 * time.Second

type testServer struct {
	base   string // http://127.0.0.1:port
	dbURL  string
	cancel context.CancelFunc
	done   chan error
}

// newShop makes a fresh database with the demo shop and its admin.
func newShop(t *testing.T) (*pgxpool.Pool, string, string) {
	t.Helper()
	pool, url := dbtest.NewPool(t)
	password, err := setUpDemo(context.Background(), pool, bcrypt.MinCost, discardLogger())
	if err != nil {
		t.Fatalf("setUpDemo: %v", err)
	}
	return pool, url, password
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startServer runs serve in-process on a free port against dbURL.
func startServer(t *testing.T, dbURL string, mutate func(*serverConfig)) *testServer {
	t.Helper()
	return startServerLogged(t, dbURL, mutate, io.Discard)
}

// startServerLogged is startServer with the server's debug log in logs.
func startServerLogged(t *testing.T, dbURL string, mutate func(*serverConfig), logs io.Writer) *testServer {
	t.Helper()
	cfg := serverConfig{
		DatabaseURL:   dbURL,
		SessionSecret: []byte("test-secret-test-secret-test-secret!"),
		Retention:     time.Hour,
		ShutdownWait:  5 * time.Second,
		HashCost:      bcrypt.MinCost,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{base: "http://" + ln.Addr().String(), dbURL: dbURL, cancel: cancel, done: make(chan error, 1)}
	started := make(chan struct{})
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { s.done <- runServer(ctx, cfg, ln, logger, func() { close(started) }) }()
	select {
	case <-started:
	case err := <-s.done:
		t.Fatalf("serve: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() { s.stop(t) })
	// Serving starts before the listener has caught up; tests start from a
	// ready server, as a load balancer would send traffic to one.
	dbtest.Eventually(t, waitTimeout, func() bool {
		resp, err := http.Get(s.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

// stop shuts the server down and checks it exits cleanly. Idempotent.
func (s *testServer) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if !ok {
			return // stopped before
		}
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
		close(s.done)
	case <-time.After(waitTimeout):
		t.Error("server did not stop")
	}
}

func (s *testServer) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(s.base, "http") + path
}

// login returns the session cookie for email/password.
func (s *testServer) login(t *testing.T, email, password string) *http.Cookie {
	t.Helper()
	resp, body := s.request(t, http.MethodPost, "/api/v1/auth/login", nil, map[string]string{"email": email, "password": password})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s: status %d, body %s", email, resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "pgpush_session" {
			return c
		}
	}
	t.Fatalf("login %s: no session cookie", email)
	return nil
}

func (s *testServer) admin(t *testing.T, shopPassword string) *http.Cookie {
	t.Helper()
	return s.login(t, demoAdminEmail, shopPassword)
}

// request sends a JSON request and returns the response with its body read.
func (s *testServer) request(t *testing.T, method, path string, cookie *http.Cookie, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

// dial opens a socket with the cookie (if any) and extra headers.
func (s *testServer) dial(t *testing.T, path string, cookie *http.Cookie, header http.Header) (*wsClient, *http.Response, error) {
	t.Helper()
	if header == nil {
		header = http.Header{}
	}
	if cookie != nil {
		header.Add("Cookie", cookie.String())
	}
	dialer := websocket.Dialer{HandshakeTimeout: waitTimeout}
	conn, resp, err := dialer.Dial(s.wsURL(path), header)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}, resp, nil
}

// connect dials /ws and consumes the connected frame.
func (s *testServer) connect(t *testing.T, cookie *http.Cookie) *wsClient {
	t.Helper()
	c, _, err := s.dial(t, "/ws", cookie, nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	c.expectType("connected")
	return c
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) sendRaw(kind int, b []byte) {
	c.t.Helper()
	if err := c.conn.WriteMessage(kind, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readWithin reads one JSON frame or fails after d.
func (c *wsClient) readWithin(d time.Duration) (map[string]any, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, errors.New("frame is not a JSON object: " + string(b))
	}
	return m, nil
}

func (c *wsClient) read() map[string]any {
	c.t.Helper()
	m, err := c.readWithin(waitTimeout)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// expectType reads the next frame and checks its "type".
func (c *wsClient) expectType(typ string) map[string]any {
	c.t.Helper()
	m := c.read()
	if m["type"] != typ {
		c.t.Fatalf("got frame %v, want type %q", m, typ)
	}
	return m
}

// expectEvent reads the next frame and checks it is event name.
func (c *wsClient) expectEvent(name string) map[string]any {
	c.t.Helper()
	m := c.read()
	if m["event"] != name {
		c.t.Fatalf("got frame %v, want event %q", m, name)
	}
	return m
}

func (c *wsClient) subscribe(channel string) {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribe", "channel": channel})
	m := c.expectType("subscribed")
	if m["channel"] != channel {
		c.t.Fatalf("subscribed to %v, want %q", m["channel"], channel)
	}
}

// expectClose reads until the server closes and checks the code.
func (c *wsClient) expectClose(code int) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		_, _, err := c.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("got %v, want close %d", err, code)
		}
		if ce.Code != code {
			c.t.Fatalf("got close %d %q, want %d", ce.Code, ce.Text, code)
		}
		return
	}
}

// exec runs SQL as an application (or psql) would, committed.
func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// dialStalled opens a socket with a 4 KiB receive buffer, so that a client
// that stops reading fills the server's queue rather than the kernel's.
// The buffer is set before connecting: shrinking it on an open connection
// makes the kernel drop data and fall into retransmission timeouts.
func (s *testServer) dialStalled(t *testing.T, cookie *http.Cookie) *wsClient {
	t.Helper()
	smallBuffer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	dialer := websocket.Dialer{NetDialContext: smallBuffer.DialContext}
	conn, _, err := dialer.Dial(s.wsURL("/ws"), http.Header{"Cookie": {cookie.String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{t: t, conn: conn}
	c.expectType("connected")
	return c
}
