// Package socketio serves Socket.IO clients (socket.io-client 4.x): Engine.IO
// protocol v4 over HTTP long-polling and WebSocket, with the upgrade from
// one to the other, and Socket.IO protocol v5 on the default namespace "/".
//
// It implements the documented protocols
// (https://github.com/socketio/engine.io-protocol,
// https://github.com/socketio/socket.io-protocol); it is not a copy of any
// library. It is small so that pgpush controls backpressure (a send queue
// capped in bytes per socket), auth (Socket.Auth, Socket.Request) and
// cookies. Binary packets, other namespaces, JSONP and CORS are not
// supported.
package socketio

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults of the Server fields, those of the reference server.
const (
	defaultPingInterval = 25 * time.Second
	defaultPingTimeout  = 20 * time.Second
	defaultMaxPayload   = 1_000_000
)

const (
	// connectTimeout closes an Engine.IO session whose client sends no
	// Socket.IO CONNECT, as the reference server does after 45 s.
	connectTimeout = 45 * time.Second
	// writeWait bounds one WebSocket write.
	writeWait = 10 * time.Second
	// closeFlushWait is how long a closing polling session waits for a GET
	// to fetch its last packets (DISCONNECT, close).
	closeFlushWait = 5 * time.Second
	// upgradeNoopDelay paces polling GETs while a WebSocket probe is under
	// way: such a GET answers a noop after this delay at the latest, so the
	// client can pause polling without spinning.
	upgradeNoopDelay = 100 * time.Millisecond
)

var (
	errShuttingDown = errors.New("server is shutting down")
	errTooMany      = errors.New("too many sessions")
	errRefused      = errors.New("too many sockets from this address")
)

// Server handles /socket.io/ (mount it with mux.Handle("/socket.io/",
// srv)). Its exported fields must be set before the first request; the
// zero value is usable.
//
// The long-polling GET lasts up to PingInterval: the http.Server's
// WriteTimeout is extended for it when the ResponseWriter allows.
type Server struct {
	PingInterval time.Duration // 0: 25s
	PingTimeout  time.Duration // 0: 20s
	MaxPayload   int           // 0: 1e6 bytes (also the read limit on websocket frames)
	MaxSessions  int           // 0: unlimited; over it, handshake gets HTTP 503
	// Acquire, when set, is asked at each handshake that CheckRequest
	// passed for a slot for the new session, such as one of a per-client
	// socket limit. ok false refuses the handshake with HTTP 429; otherwise
	// release is called once, when the session ends.
	Acquire func(r *http.Request) (release func(), ok bool)
	// CheckRequest vets the handshake request (origin check, rate limits).
	// A non-nil error refuses it with HTTP 403 and the error text as JSON
	// {"error":...}. When nil, a request whose Origin header names another
	// host than the request's is refused, as a browser page of another site
	// could otherwise open a socket with the user's cookies.
	CheckRequest func(r *http.Request) error
	// CheckAuth vets the auth payload of a Socket.IO CONNECT. A non-nil
	// error refuses the connection with a CONNECT_ERROR packet (the
	// client's connect_error event, with the error text as its message),
	// the Socket.IO way to refuse: it travels as the answer to CONNECT, so
	// it reaches the client whatever its transport is doing. The session
	// then ends after the connect timeout unless the client leaves first.
	CheckAuth func(auth json.RawMessage) error
	// OnConnect is called, in its own goroutine, for each client that
	// completed a Socket.IO CONNECT to "/"; it must return when s.Done() is
	// closed. The connection's lifetime is the function's lifetime: when it
	// returns, the socket is disconnected. Nil: events are discarded and the
	// socket lives until the client leaves.
	OnConnect func(s *Socket)
	// Logger receives per-session debug logs; nil discards them.
	Logger *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	releases map[*session]func() // from Acquire, called by remove
	closing  bool                // set by Shutdown; refuses new sessions and goroutines
	force    chan struct{}       // closed when Shutdown's ctx ends: stop flushing
	wg       sync.WaitGroup
}

// ServeHTTP serves the Engine.IO endpoint: handshakes, polling GET and
// POST, and WebSocket connections.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		httpError(w, http.StatusBadRequest, "unsupported protocol version: EIO must be 4")
		return
	}
	transport := q.Get("transport")
	if transport != transportPolling && transport != transportWebsocket {
		httpError(w, http.StatusBadRequest, "unknown transport")
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		srv.handshake(w, r, transport)
		return
	}
	srv.mu.Lock()
	s := srv.sessions[sid]
	srv.mu.Unlock()
	if s == nil {
		httpError(w, http.StatusBadRequest, "unknown session id")
		return
	}
	switch {
	case transport == transportWebsocket:
		s.serveUpgrade(w, r)
	case r.Method == http.MethodGet:
		s.servePoll(w, r)
	case r.Method == http.MethodPost:
		s.serveData(w, r)
	default:
		httpError(w, http.StatusBadRequest, "bad method")
	}
}

// handshake opens a new Engine.IO session on the given transport.
func (srv *Server) handshake(w http.ResponseWriter, r *http.Request, transport string) {
	if r.Method != http.MethodGet {
		httpError(w, http.StatusBadRequest, "bad handshake method")
		return
	}
	if transport == transportWebsocket && !websocket.IsWebSocketUpgrade(r) {
		httpError(w, http.StatusBadRequest, "expected a websocket upgrade")
		return
	}
	check := srv.CheckRequest
	if check == nil {
		check = checkSameOrigin
	}
	if err := check(r); err != nil {
		httpError(w, http.StatusForbidden, err.Error())
		return
	}
	s, err := srv.newSession(r, transport)
	if errors.Is(err, errRefused) {
		httpError(w, http.StatusTooManyRequests, err.Error())
		return
	}
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	open := encodeOpen(s.id, transport, srv.pingInterval(), srv.pingTimeout(), srv.maxPayload())
	if transport == transportPolling {
		writePayload(w, [][]byte{open})
		return
	}
	conn, err := srv.upgrader().Upgrade(w, r, nil)
	if err != nil { // Upgrade has answered the client
		s.close("websocket upgrade failed", false)
		return
	}
	// The open packet is the first frame; the write pump sends it.
	s.queue.pushControl(open)
	s.serveWebsocket(conn)
}

// newSession registers a session and starts its heartbeat goroutine.
func (srv *Server) newSession(r *http.Request, transport string) (*session, error) {
	req := r.Clone(context.WithoutCancel(r.Context()))
	req.Body = http.NoBody
	s := &session{
		srv:       srv,
		id:        rand.Text(),
		req:       req,
		queue:     newSendQueue(),
		pong:      make(chan struct{}, 1),
		connected: make(chan struct{}, 1),
		closing:   make(chan struct{}),
		dead:      make(chan struct{}),
		left:      make(chan struct{}),
		probing:   make(chan struct{}),
		transport: transport,
	}
	s.log = srv.logger().With("sid", s.id, "transport", transport)
	release := func() {}
	if srv.Acquire != nil {
		var ok bool
		if release, ok = srv.Acquire(r); !ok {
			return nil, errRefused
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closing {
		release()
		return nil, errShuttingDown
	}
	if srv.MaxSessions > 0 && len(srv.sessions) >= srv.MaxSessions {
		release()
		return nil, errTooMany
	}
	if srv.sessions == nil {
		srv.sessions = make(map[string]*session)
		srv.releases = make(map[*session]func())
	}
	srv.sessions[s.id] = s
	srv.releases[s] = release
	srv.wg.Go(s.run)
	s.log.Debug("session opened", "remote_addr", r.RemoteAddr)
	return s, nil
}

// goOwned runs f in a goroutine that Shutdown waits for; it reports false,
// without running f, once Shutdown has begun. Checking closing under mu
// keeps wg.Go from racing wg.Wait.
func (srv *Server) goOwned(f func()) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closing {
		return false
	}
	srv.wg.Go(f)
	return true
}

// remove forgets a session that has ended and gives back its Acquire slot.
func (srv *Server) remove(s *session) {
	srv.mu.Lock()
	delete(srv.sessions, s.id)
	release := srv.releases[s]
	delete(srv.releases, s)
	srv.mu.Unlock()
	if release != nil {
		release()
	}
}

// forced returns the channel closed when Shutdown gives up flushing.
func (srv *Server) forced() <-chan struct{} {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.force == nil {
		srv.force = make(chan struct{})
	}
	return srv.force
}

// Shutdown refuses new sessions, disconnects every socket (Socket.IO
// DISCONNECT, then the Engine.IO transport is closed) and waits for the
// sessions and the OnConnect calls to return. When ctx ends first it stops
// flushing, closes the transports at once and returns ctx.Err(); OnConnect
// calls still running then are not waited for.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.forced() // make force before anyone waits on it
	srv.mu.Lock()
	srv.closing = true
	sessions := make([]*session, 0, len(srv.sessions))
	for _, s := range srv.sessions {
		sessions = append(sessions, s)
	}
	srv.mu.Unlock()

	for _, s := range sessions {
		s.close("server shutting down", true)
	}
	done := make(chan struct{})
	go func() {
		srv.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		srv.mu.Lock()
		select {
		case <-srv.force:
		default:
			close(srv.force)
		}
		srv.mu.Unlock()
		return ctx.Err()
	}
}

func (srv *Server) pingInterval() time.Duration {
	if srv.PingInterval > 0 {
		return srv.PingInterval
	}
	return defaultPingInterval
}

func (srv *Server) pingTimeout() time.Duration {
	if srv.PingTimeout > 0 {
		return srv.PingTimeout
	}
	return defaultPingTimeout
}

func (srv *Server) maxPayload() int {
	if srv.MaxPayload > 0 {
		return srv.MaxPayload
	}
	return defaultMaxPayload
}

func (srv *Server) logger() *slog.Logger {
	if srv.Logger != nil {
		return srv.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (srv *Server) upgrader() *websocket.Upgrader {
	return &websocket.Upgrader{
		HandshakeTimeout: writeWait,
		// The origin was vetted by CheckRequest at the handshake; an
		// upgrade must also present the session id, which only the page
		// that made the handshake can read.
		CheckOrigin: func(*http.Request) bool { return true },
	}
}

// encodeOpen encodes the Engine.IO open packet with the handshake JSON.
func encodeOpen(sid, transport string, pingInterval, pingTimeout time.Duration, maxPayload int) []byte {
	upgrades := []string{}
	if transport == transportPolling {
		upgrades = append(upgrades, transportWebsocket)
	}
	data, _ := json.Marshal(struct { // cannot fail: strings and numbers
		SID          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int64    `json:"pingInterval"`
		PingTimeout  int64    `json:"pingTimeout"`
		MaxPayload   int      `json:"maxPayload"`
	}{sid, upgrades, pingInterval.Milliseconds(), pingTimeout.Milliseconds(), maxPayload})
	return appendEnginePacket(nil, enginePacket{Type: engineOpen, Data: data})
}

// checkSameOrigin refuses a request whose Origin header names another host
// than the request's; requests without Origin (non-browser clients) pass.
func checkSameOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil {
		return fmt.Errorf("bad origin %q", origin)
	}
	if !strings.EqualFold(u.Host, r.Host) {
		return fmt.Errorf("origin %q not allowed", origin)
	}
	return nil
}

// httpError answers with status and the JSON body {"error": msg}.
func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// writePayload answers a polling GET with packets joined by the record
// separator.
func writePayload(w http.ResponseWriter, packets [][]byte) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(encodePayload(packets))
}
