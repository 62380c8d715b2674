package socketio

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pgpush/pgpush/db/dbtest"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 10 * time.Second

// echoHandler is the OnConnect of the real-client tests (see
// testdata/node/client.test.mjs).
func echoHandler(s *Socket) {
	_ = s.Emit("connection-confirmed", map[string]any{"socketId": s.ID(), "serverTime": time.Now().UnixMilli()})
	next, inOrder := 0, true
	for ev := range s.Events() {
		args := make([]any, len(ev.Args))
		for i, a := range ev.Args {
			args[i] = a
		}
		switch ev.Name {
		case "echo":
			if ev.Ack != nil {
				_ = ev.Ack(args...)
			} else {
				_ = s.Emit("echo", args...)
			}
		case "whoami":
			if ev.Ack != nil {
				_ = ev.Ack(map[string]any{"id": s.ID(), "auth": s.Auth()})
			}
		case "seq":
			var i int
			if len(ev.Args) == 0 || json.Unmarshal(ev.Args[0], &i) != nil || i != next {
				inOrder = false
			}
			next++
		case "seq-check":
			if ev.Ack != nil {
				_ = ev.Ack(map[string]any{"count": next, "inOrder": inOrder})
			}
		case "burst":
			var n int
			if len(ev.Args) > 0 {
				_ = json.Unmarshal(ev.Args[0], &n)
			}
			for i := range min(n, 10_000) {
				if s.Emit("burst", i) != nil {
					return
				}
			}
		case "disconnect-me":
			s.Close("client asked")
		}
	}
}

// startServer serves srv on /socket.io/ of a test server; cleanup shuts srv
// down, then the HTTP server. It returns the base URL.
func startServer(t *testing.T, srv *Server) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", srv)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown()=%v, want nil", err)
		}
	})
	return ts.URL
}

// sockets returns an OnConnect that hands each socket to the test and
// echoes like echoHandler.
func sockets() (func(*Socket), <-chan *Socket) {
	ch := make(chan *Socket, 16)
	return func(s *Socket) {
		ch <- s
		echoHandler(s)
	}, ch
}

func waitFor[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

// pollClient speaks Engine.IO long-polling by hand.
type pollClient struct {
	t    *testing.T
	url  string // with EIO, transport and sid
	sid  string
	http *http.Client
}

func newHTTPClient(t *testing.T) *http.Client {
	c := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// handshakePolling opens a polling session and returns it with the
// handshake JSON.
func handshakePolling(t *testing.T, base string) (*pollClient, map[string]any) {
	t.Helper()
	hc := newHTTPClient(t)
	status, body := do(t, hc, http.MethodGet, base+"/socket.io/?EIO=4&transport=polling", "")
	if status != http.StatusOK || !strings.HasPrefix(body, "0{") {
		t.Fatalf("handshake: %d %q, want 200 0{…}", status, body)
	}
	var open map[string]any
	if err := json.Unmarshal([]byte(body[1:]), &open); err != nil {
		t.Fatalf("handshake JSON %q: %v", body, err)
	}
	sid, _ := open["sid"].(string)
	return &pollClient{t: t, url: base + "/socket.io/?EIO=4&transport=polling&sid=" + url.QueryEscape(sid), sid: sid, http: hc}, open
}

func do(t *testing.T, hc *http.Client, method, u, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, u, err)
	}
	return resp.StatusCode, string(b)
}

func (c *pollClient) get() (int, string) { return do(c.t, c.http, http.MethodGet, c.url, "") }

func (c *pollClient) post(body string) int {
	status, _ := do(c.t, c.http, http.MethodPost, c.url, body)
	return status
}

// expect polls until it has seen packets starting with each prefix in
// want, in order, answering pings; it returns the matching packets.
func (c *pollClient) expect(want ...string) []string {
	c.t.Helper()
	var got []string
	deadline := time.Now().Add(waitTimeout)
	for len(got) < len(want) {
		if time.Now().After(deadline) {
			c.t.Fatalf("polling: got %q, want prefixes %q", got, want)
		}
		status, body := c.get()
		if status != http.StatusOK {
			c.t.Fatalf("poll: %d %q", status, body)
		}
		for _, p := range strings.Split(body, "\x1e") {
			if p == "2" {
				c.post("3")
				continue
			}
			if len(got) < len(want) && strings.HasPrefix(p, want[len(got)]) {
				got = append(got, p)
			}
		}
	}
	return got
}

// connectPolling opens a polling session and connects to "/".
func connectPolling(t *testing.T, base, auth string) *pollClient {
	t.Helper()
	c, _ := handshakePolling(t, base)
	if status := c.post("40" + auth); status != http.StatusOK {
		t.Fatalf("POST 40: %d", status)
	}
	return c
}

func dialWS(t *testing.T, base, query string) *websocket.Conn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/socket.io/?EIO=4&transport=websocket" + query
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readWS reads the next text frame that is not a ping, answering pings.
func readWS(t *testing.T, conn *websocket.Conn) string {
	t.Helper()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read websocket: %v", err)
		}
		if string(msg) == "2" {
			writeWS(t, conn, "3")
			continue
		}
		return string(msg)
	}
}

func writeWS(t *testing.T, conn *websocket.Conn, msg string) {
	t.Helper()
	if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("write websocket %q: %v", msg, err)
	}
}

// wsClosed reads until the server closes conn, and returns what it read.
func wsClosed(t *testing.T, conn *websocket.Conn) []string {
	t.Helper()
	var got []string
	for {
		_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
		_, msg, err := conn.ReadMessage()
		if err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				t.Fatalf("websocket not closed; read %q", got)
			}
			return got
		}
		got = append(got, string(msg))
	}
}

func sessionCount(srv *Server) int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.sessions)
}

func TestHandshakeRefusals(t *testing.T) {
	t.Parallel()
	srv := &Server{CheckRequest: func(r *http.Request) error {
		if r.Header.Get("X-Refuse") != "" {
			return errors.New("refused by test")
		}
		return nil
	}}
	base := startServer(t, srv)
	hc := newHTTPClient(t)
	tests := []struct {
		name       string
		method     string
		query      string
		refuse     bool
		wantStatus int
		wantError  string
	}{
		{name: "no EIO", method: "GET", query: "transport=polling", wantStatus: 400, wantError: "unsupported protocol version: EIO must be 4"},
		{name: "EIO 3", method: "GET", query: "EIO=3&transport=polling", wantStatus: 400, wantError: "unsupported protocol version: EIO must be 4"},
		{name: "unknown transport", method: "GET", query: "EIO=4&transport=flashsocket", wantStatus: 400, wantError: "unknown transport"},
		{name: "unknown sid", method: "GET", query: "EIO=4&transport=polling&sid=nope", wantStatus: 400, wantError: "unknown session id"},
		{name: "POST handshake", method: "POST", query: "EIO=4&transport=polling", wantStatus: 400, wantError: "bad handshake method"},
		{name: "websocket without upgrade", method: "GET", query: "EIO=4&transport=websocket", wantStatus: 400, wantError: "expected a websocket upgrade"},
		{name: "CheckRequest refuses", method: "GET", query: "EIO=4&transport=polling", refuse: true, wantStatus: 403, wantError: "refused by test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tt.method, base+"/socket.io/?"+tt.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.refuse {
				req.Header.Set("X-Refuse", "1")
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Error string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("body: %v", err)
			}
			if resp.StatusCode != tt.wantStatus || body.Error != tt.wantError {
				t.Fatalf("%s ?%s = %d %q, want %d %q", tt.method, tt.query, resp.StatusCode, body.Error, tt.wantStatus, tt.wantError)
			}
		})
	}
}

func TestDefaultOriginCheck(t *testing.T) {
	t.Parallel()
	base := startServer(t, &Server{})
	hc := newHTTPClient(t)
	host := strings.TrimPrefix(base, "http://")
	for _, tt := range []struct {
		origin string
		want   int
	}{
		{"", 200},
		{"http://" + host, 200},
		{"http://evil.example", 403},
		{"::bad", 403},
	} {
		req, _ := http.NewRequest("GET", base+"/socket.io/?EIO=4&transport=polling", nil)
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("Origin %q: status %d, want %d", tt.origin, resp.StatusCode, tt.want)
		}
		if resp.StatusCode == http.StatusOK { // close the session
			var open struct{ SID string }
			_ = json.Unmarshal(body[1:], &open)
			do(t, hc, "POST", base+"/socket.io/?EIO=4&transport=polling&sid="+open.SID, "1")
		}
	}
}

func TestMaxSessions(t *testing.T) {
	t.Parallel()
	srv := &Server{MaxSessions: 1}
	base := startServer(t, srv)
	c, _ := handshakePolling(t, base)
	status, body := do(t, newHTTPClient(t), "GET", base+"/socket.io/?EIO=4&transport=polling", "")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "too many sessions") {
		t.Fatalf("second handshake: %d %q, want 503 too many sessions", status, body)
	}
	c.post("1")
	dbtest.Eventually(t, waitTimeout, func() bool { return sessionCount(srv) == 0 })
	c, _ = handshakePolling(t, base)
	c.post("1")
}

// slots is an Acquire that allows max sessions at once and counts what
// it handed out and got back.
type slots struct {
	mu                  sync.Mutex
	max, held, released int
}

func (sl *slots) acquire(*http.Request) (func(), bool) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.held-sl.released >= sl.max {
		return nil, false
	}
	sl.held++
	var once sync.Once
	return func() {
		once.Do(func() {
			sl.mu.Lock()
			sl.released++
			sl.mu.Unlock()
		})
	}, true
}

func (sl *slots) counts() (held, released int) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.held, sl.released
}

// TestAcquire: a handshake Acquire refuses gets 429 and no session; a
// slot comes back when its session ends, and at once when MaxSessions
// refuses the handshake after Acquire.
func TestAcquire(t *testing.T) {
	t.Parallel()
	sl := &slots{max: 1}
	srv := &Server{Acquire: sl.acquire}
	base := startServer(t, srv)
	c, _ := handshakePolling(t, base)
	status, body := do(t, newHTTPClient(t), "GET", base+"/socket.io/?EIO=4&transport=polling", "")
	if status != http.StatusTooManyRequests || !strings.Contains(body, "too many sockets") {
		t.Fatalf("handshake Acquire refused: %d %q, want 429", status, body)
	}
	if n := sessionCount(srv); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
	c.post("1")
	dbtest.Eventually(t, waitTimeout, func() bool { held, released := sl.counts(); return held == 1 && released == 1 })

	sl = &slots{max: 5}
	srv = &Server{MaxSessions: 1, Acquire: sl.acquire}
	base = startServer(t, srv)
	c, _ = handshakePolling(t, base)
	if status, _ := do(t, newHTTPClient(t), "GET", base+"/socket.io/?EIO=4&transport=polling", ""); status != http.StatusServiceUnavailable {
		t.Fatalf("handshake over MaxSessions: %d, want 503", status)
	}
	if held, released := sl.counts(); held != 2 || released != 1 {
		t.Fatalf("after a refusal by MaxSessions: %d slots taken, %d given back; want 2 and 1", held, released)
	}
	c.post("1")
	dbtest.Eventually(t, waitTimeout, func() bool { _, released := sl.counts(); return released == 2 })
}

func TestPollingSession(t *testing.T) {
	t.Parallel()
	onConnect, conns := sockets()
	srv := &Server{OnConnect: onConnect}
	base := startServer(t, srv)

	c, open := handshakePolling(t, base)
	if open["pingInterval"] != 25000.0 || open["pingTimeout"] != 20000.0 || open["maxPayload"] != 1e6 {
		t.Fatalf("handshake %v: want the default timings", open)
	}
	if ups, _ := open["upgrades"].([]any); len(ups) != 1 || ups[0] != "websocket" {
		t.Fatalf("upgrades=%v, want [websocket]", open["upgrades"])
	}
	if status := c.post(`40{"user_id":"u-1","username":"bob"}`); status != http.StatusOK {
		t.Fatalf("POST CONNECT: %d", status)
	}
	s := waitFor(t, conns)
	got := c.expect(`40{"sid":"`, `42["connection-confirmed",`)
	if got[0] != `40{"sid":"`+s.ID()+`"}` {
		t.Fatalf("CONNECT reply %q, want sid %q", got[0], s.ID())
	}
	if string(s.Auth()) != `{"user_id":"u-1","username":"bob"}` {
		t.Fatalf("Auth()=%s", s.Auth())
	}
	if s.Request().RemoteAddr == "" {
		t.Fatal("Request().RemoteAddr is empty")
	}

	if status := c.post("42[\"echo\",\"hi\"]\x1e4212[\"echo\",1,{\"a\":[2]}]\x1e6"); status != http.StatusOK {
		t.Fatalf("POST events: %d", status)
	}
	got = c.expect(`42["echo"`, `4312`)
	if got[0] != `42["echo","hi"]` || got[1] != `4312[1,{"a":[2]}]` {
		t.Fatalf("replies %q", got)
	}

	// Client-side disconnect ends the socket.
	if status := c.post("41\x1e1"); status != http.StatusOK {
		t.Fatalf("POST disconnect: %d", status)
	}
	waitFor(t, s.Done())
	dbtest.Eventually(t, waitTimeout, func() bool { return sessionCount(srv) == 0 })
	if err := s.Emit("late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Emit after close=%v, want ErrClosed", err)
	}
}

func TestOverlappingPollCloses(t *testing.T) {
	t.Parallel()
	srv := &Server{}
	base := startServer(t, srv)
	c, _ := handshakePolling(t, base)

	first := make(chan string, 1)
	go func() {
		_, body := c.get()
		first <- body
	}()
	dbtest.Eventually(t, waitTimeout, func() bool {
		srv.mu.Lock()
		s := srv.sessions[c.sid]
		srv.mu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.getting
	})
	if status, body := c.get(); status != http.StatusBadRequest {
		t.Fatalf("second GET: %d %q, want 400", status, body)
	}
	if body := waitFor(t, first); body != "1" {
		t.Fatalf("first GET=%q, want close packet 1", body)
	}
	dbtest.Eventually(t, waitTimeout, func() bool { return sessionCount(srv) == 0 })
	if status, _ := c.get(); status != http.StatusBadRequest {
		t.Fatalf("GET after close: %d, want 400", status)
	}
}

func TestBadPacketsCloseSession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		connect bool
		packets string
	}{
		{name: "garbage", packets: "hello"},
		{name: "empty record", packets: "40\x1e"},
		{name: "binary base64", packets: "bAQID"},
		{name: "client ping", packets: "2"},
		{name: "open from client", packets: "0"},
		{name: "upgrade over polling", packets: "5"},
		{name: "message without data", packets: "4"},
		{name: "event before connect", packets: `42["echo"]`},
		{name: "bad JSON", connect: true, packets: `42["echo"`},
		{name: "binary event", connect: true, packets: `451-["a",{"_placeholder":true,"num":0}]`},
		{name: "reserved event", connect: true, packets: `42["connect"]`},
		{name: "second connect", connect: true, packets: "40"},
		{name: "connect error from client", connect: true, packets: `44{"message":"x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/polling", func(t *testing.T) {
			t.Parallel()
			srv := &Server{}
			base := startServer(t, srv)
			c, _ := handshakePolling(t, base)
			if tt.connect {
				if status := c.post("40"); status != http.StatusOK {
					t.Fatalf("POST 40: %d", status)
				}
			}
			if status := c.post(tt.packets); status != http.StatusBadRequest {
				t.Fatalf("POST %q: %d, want 400", tt.packets, status)
			}
			dbtest.Eventually(t, waitTimeout, func() bool { return sessionCount(srv) == 0 })
		})
		t.Run(tt.name+"/websocket", func(t *testing.T) {
			t.Parallel()
			srv := &Server{}
			base := startServer(t, srv)
			conn := dialWS(t, base, "")
			if open := readWS(t, conn); !strings.HasPrefix(open, "0{") {
				t.Fatalf("first frame %q, want open packet", open)
			}
			if tt.connect {
				writeWS(t, conn, "40")
				if got := readWS(t, conn); !strings.HasPrefix(got, `40{"sid":`) {
					t.Fatalf("CONNECT reply %q", got)
				}
			}
			for _, p := range strings.Split(tt.packets, "\x1e") {
				writeWS(t, conn, p)
			}
			wsClosed(t, conn)
			dbtest.Eventually(t, waitTimeout, func() bool { return sessionCount(srv) == 0 })
		})
	}
}

func TestOtherNamespaceRefused(t *testing.T) {
	t.Parallel()
	base := startServer(t, &Server{})
	conn := dialWS(t, base, "")
	readWS(t, conn)
	writeWS(t, conn, "40/admin,")
	if got, want := readWS(t, conn), `44/admin,{"message":"Invalid namespace"}`; got != want {
		t.Fatalf("reply %q, want %q", got, want)
	}
}

func TestPayloadTooLarge(t *testing.T) {
	t.Parallel()
	srv := &Server{MaxPayload: 100}
	base := startServer(t, srv)
	c, open := handshakePolling(t, base)
	if open["maxPayload"] != 100.0 {
		t.Fatalf("maxPayload=%v, want 100", open["maxPayload"])
	}
	if status := c.post(`42["echo","` + strings.Repeat("x", 200) + `"]`); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("POST 200 bytes: %d, want 413", status)
	}
	dbtest.Eventually(t, waitTimeout, func() bool { return sessionCount(srv) == 0 })

	conn := dialWS(t, base, "")
	readWS(t, conn)
	writeWS(t, conn, "40")
	readWS(t, conn)
	writeWS(t, conn, `42["echo","`+strings.Repeat("x", 200)+`"]`)
	wsClosed(t, conn)
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	onConnect, conns := sockets()
	srv := &Server{PingInterval: 20 * time.Millisecond, PingTimeout: 200 * time.Millisecond, OnConnect: onConnect}
	base := startServer(t, srv)

	// A client that answers stays: expect answers pings while it waits
	// for five of them.
	c := connectPolling(t, base, "")
	s := waitFor(t, conns)
	for range 5 {
		status, body := c.get()
		if status != http.StatusOK {
			t.Fatalf("poll: %d %q", status, body)
		}
		for _, p := range strings.Split(body, "\x1e") {
			if p == "2" {
				c.post("3")
			}
		}
	}
	select {
	case <-s.Done():
		t.Fatal("socket closed although the client answered every ping")
	default:
	}

	// Silence closes it within pingInterval + pingTimeout.
	waitFor(t, s.Done())
	if _, ok := <-s.Events(); ok {
		t.Fatal("Events() not closed after ping timeout")
	}

	// The same over a WebSocket.
	conn := dialWS(t, base, "")
	readWS(t, conn)
	writeWS(t, conn, "40")
	s = waitFor(t, conns)
	waitFor(t, s.Done())
	wsClosed(t, conn)
}

func TestUpgrade(t *testing.T) {
	t.Parallel()
	onConnect, conns := sockets()
	srv := &Server{OnConnect: onConnect}
	base := startServer(t, srv)
	c := connectPolling(t, base, "")
	s := waitFor(t, conns)
	c.expect(`40{"sid":`, `42["connection-confirmed"`)
	conn := probeUpgrade(t, base, c)
	// Emitted before the upgrade packet: delivered over the WebSocket.
	if err := s.Emit("queued", 1); err != nil {
		t.Fatal(err)
	}
	writeWS(t, conn, "5")
	if got := readWS(t, conn); got != `42["queued",1]` {
		t.Fatalf("first frame after upgrade %q", got)
	}
	writeWS(t, conn, `4233["echo","over ws"]`)
	if got := readWS(t, conn); got != `4333["over ws"]` {
		t.Fatalf("ack %q", got)
	}
	if status, _ := c.get(); status != http.StatusBadRequest {
		t.Fatalf("GET after upgrade: %d, want 400", status)
	}
	// A second WebSocket for the session is refused.
	u := "ws" + strings.TrimPrefix(base, "http") + "/socket.io/?EIO=4&transport=websocket&sid=" + url.QueryEscape(c.sid)
	if conn2, resp, err := websocket.DefaultDialer.Dial(u, nil); err == nil {
		conn2.Close()
		t.Fatal("second websocket accepted")
	} else if resp != nil {
		resp.Body.Close()
	}

	s.Close("test")
	if got := wsClosed(t, conn); len(got) == 0 || got[len(got)-1] != "41" {
		t.Fatalf("frames before close %q, want DISCONNECT 41 last", got)
	}
}

// TestCloseDuringUpgrade: a socket closed while its client upgrades (after
// "3probe", before "5") still gets its last packets, over the WebSocket:
// the client paused polling, so no GET would fetch them.
func TestCloseDuringUpgrade(t *testing.T) {
	t.Parallel()
	onConnect, conns := sockets()
	base := startServer(t, &Server{OnConnect: onConnect})
	c := connectPolling(t, base, "")
	s := waitFor(t, conns)
	c.expect(`40{"sid":`, `42["connection-confirmed"`)
	conn := probeUpgrade(t, base, c)
	if err := s.Emit("last", "words"); err != nil {
		t.Fatal(err)
	}
	s.Close("kicked")
	writeWS(t, conn, "5")
	// The engine's close packet may follow: the teardown began while the
	// session still polled.
	got := strings.Join(wsClosed(t, conn), " ")
	if got != `42["last","words"] 41` && got != `42["last","words"] 41 1` {
		t.Fatalf("frames before close %q, want the last event, then DISCONNECT 41", got)
	}
}

func TestFailedProbeKeepsPolling(t *testing.T) {
	t.Parallel()
	onConnect, conns := sockets()
	base := startServer(t, &Server{OnConnect: onConnect})
	c := connectPolling(t, base, "")
	s := waitFor(t, conns)
	c.expect(`40{"sid":`)

	conn := dialWS(t, base, "&sid="+url.QueryEscape(c.sid))
	writeWS(t, conn, "2probe")
	readWS(t, conn)
	conn.Close() // gives up before "5"
	if err := s.Emit("still", "polling"); err != nil {
		t.Fatal(err)
	}
	c.expect(`42["still","polling"]`)
	c.post("1")
}

func TestWebsocketOnly(t *testing.T) {
	t.Parallel()
	onConnect, conns := sockets()
	srv := &Server{PingInterval: time.Minute, OnConnect: onConnect}
	base := startServer(t, srv)
	conn := dialWS(t, base, "")
	open := readWS(t, conn)
	var hs struct {
		SID          string
		Upgrades     []string
		PingInterval int
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(open, "0")), &hs); err != nil || hs.SID == "" || len(hs.Upgrades) != 0 || hs.PingInterval != 60000 {
		t.Fatalf("open packet %q (%v)", open, err)
	}
	writeWS(t, conn, `40{"user_id":"u-9"}`)
	s := waitFor(t, conns)
	if got := readWS(t, conn); got != `40{"sid":"`+s.ID()+`"}` {
		t.Fatalf("CONNECT reply %q", got)
	}
	if string(s.Auth()) != `{"user_id":"u-9"}` {
		t.Fatalf("Auth()=%s", s.Auth())
	}
	readWS(t, conn) // connection-confirmed
	writeWS(t, conn, `427["whoami"]`)
	if got := readWS(t, conn); !strings.HasPrefix(got, `437[{"auth":{"user_id":"u-9"}`) {
		t.Fatalf("whoami ack %q", got)
	}
	writeWS(t, conn, "1")
	waitFor(t, s.Done())
	wsClosed(t, conn)
}

func TestOnConnectReturnDisconnects(t *testing.T) {
	t.Parallel()
	base := startServer(t, &Server{OnConnect: func(s *Socket) { _ = s.Emit("bye") }})
	conn := dialWS(t, base, "")
	readWS(t, conn)
	writeWS(t, conn, "40")
	got := wsClosed(t, conn)
	if len(got) != 3 || got[1] != `42["bye"]` || got[2] != "41" {
		t.Fatalf("frames %q, want CONNECT reply, bye, DISCONNECT", got)
	}
}

func TestEmitQueueFull(t *testing.T) {
	t.Parallel()
	onConnect, conns := sockets()
	base := startServer(t, &Server{OnConnect: onConnect})
	c := connectPolling(t, base, "") // and does not poll
	s := waitFor(t, conns)
	big := strings.Repeat("x", 100_000)
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		err = s.Emit("big", big)
	}
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Emit of 2 MB unread=%v, want ErrQueueFull", err)
	}
	waitFor(t, s.Done())
	if err := s.Emit("more"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Emit after ErrQueueFull=%v, want ErrClosed", err)
	}
	// The backlog was dropped: the client gets DISCONNECT, then close.
	for _, want := range []string{"41", "1"} {
		if status, got := c.get(); status != http.StatusOK || got != want {
			t.Fatalf("GET: %d %q, want %q", status, got, want)
		}
	}
}

func TestAckOnce(t *testing.T) {
	t.Parallel()
	acks := make(chan error, 1)
	base := startServer(t, &Server{OnConnect: func(s *Socket) {
		for ev := range s.Events() {
			if ev.Ack == nil {
				acks <- errors.New("Ack is nil for an event with an ack id")
				continue
			}
			_ = ev.Ack("first")
			acks <- ev.Ack("second")
		}
	}})
	conn := dialWS(t, base, "")
	readWS(t, conn)
	writeWS(t, conn, "40")
	readWS(t, conn)
	writeWS(t, conn, `429["q"]`)
	if got := readWS(t, conn); got != `439["first"]` {
		t.Fatalf("ack %q", got)
	}
	if err := waitFor(t, acks); !errors.Is(err, ErrAckSent) {
		t.Fatalf("second Ack=%v, want ErrAckSent", err)
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	onConnect, conns := sockets()
	srv := &Server{OnConnect: onConnect}
	base := startServer(t, srv)

	conn := dialWS(t, base, "")
	readWS(t, conn)
	writeWS(t, conn, "40")
	waitFor(t, conns)

	c := connectPolling(t, base, "")
	waitFor(t, conns)
	c.expect(`40{"sid":`, `42["connection-confirmed"`)
	pending := make(chan string, 1)
	go func() {
		_, body := c.get()
		pending <- body
	}()

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(ctx) }()
	if got := wsClosed(t, conn); len(got) == 0 || got[len(got)-1] != "41" {
		t.Fatalf("websocket frames %q, want DISCONNECT 41 last", got)
	}
	if got := waitFor(t, pending); got != "41" {
		t.Fatalf("pending GET=%q, want DISCONNECT", got)
	}
	if status, got := c.get(); status != http.StatusOK || got != "1" {
		t.Fatalf("GET after DISCONNECT: %d %q, want close packet", status, got)
	}
	if err := waitFor(t, shutdown); err != nil {
		t.Fatalf("Shutdown()=%v, want nil", err)
	}
	status, body := do(t, newHTTPClient(t), "GET", base+"/socket.io/?EIO=4&transport=polling", "")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("handshake after Shutdown: %d %q, want 503", status, body)
	}
}

// probeUpgrade opens a WebSocket for c's session and probes it: the
// server answers "3probe", and c's pending GET gets a noop. The upgrade
// packet "5" is the caller's to send.
func probeUpgrade(t *testing.T, base string, c *pollClient) *websocket.Conn {
	t.Helper()
	pending := make(chan string, 1)
	go func() {
		_, body := c.get()
		pending <- body
	}()
	conn := dialWS(t, base, "&sid="+url.QueryEscape(c.sid))
	writeWS(t, conn, "2probe")
	if got := readWS(t, conn); got != "3probe" {
		t.Fatalf("probe reply %q, want 3probe", got)
	}
	if got := waitFor(t, pending); got != "6" {
		t.Fatalf("pending GET=%q, want noop 6", got)
	}
	return conn
}
