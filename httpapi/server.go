// Package httpapi owns pgpush's HTTP surface: the REST routes with JSON
// errors, health and readiness, and the WebSocket upgrade with its origin
// check and session authentication.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/realtime"
	"github.com/pgpush/pgpush/realtime/socketio"
	"github.com/pgpush/pgpush/session"
)

// maxBodyBytes bounds request bodies; pgpush's bodies are small JSON.
const maxBodyBytes = 1 << 20

// maxSocketIOPayload bounds a Socket.IO packet, and so a long-polling POST
// body (413) and a WebSocket frame (closed): the same 64 KiB as a /ws
// frame (realtime.Options.MaxFrameBytes' default), announced to clients as
// the handshake's maxPayload.
const maxSocketIOPayload = 64 << 10

// maxSocketIOAuthBytes bounds a Socket.IO client's auth payload ({user_id,
// username}), which the socket keeps for its lifetime.
const maxSocketIOAuthBytes = 4 << 10

// Server holds what the routes need. Every field is required unless noted.
type Server struct {
	Pool     *pgxpool.Pool
	Sessions *session.Store
	Policy   *session.Policy
	Hub      *realtime.Hub
	// ListenerReady reports whether the listener is connected and caught up.
	ListenerReady func() bool
	// AllowedOrigins lists origins ("https://app.example.com") allowed to
	// open /ws from a browser. Empty means only the request's own host.
	AllowedOrigins []string
	Logger         *slog.Logger
	// Static serves the dashboard at /, /pgpush.js and /pgpush.d.ts. Optional.
	Static http.Handler
	// Metrics serves /metrics. Optional.
	Metrics http.Handler
	// History feeds GET /api/v1/admin/overview, which is served only when
	// it is set.
	History *History
	// Proxies are the peers trusted for X-Forwarded-For/-Proto.
	Proxies Proxies
	// Limits bound logins and sockets per client. Zero values: defaults.
	Limits Limits

	upgrader     websocket.Upgrader
	socketIO     *socketio.Server
	loginByAddr  *keyedLimiter
	loginByEmail *keyedLimiter
	conns        *connCounter
}

// Limits protect the server from brute force and from one client hogging
// it. Zero values mean the defaults noted.
type Limits struct {
	// LoginFailuresPerAddress failed logins from one address before 429;
	// one more is allowed every 3 s. Default 20.
	LoginFailuresPerAddress int
	// LoginFailuresPerAccount failed logins for one account before 429;
	// one more is allowed every minute. Default 5.
	LoginFailuresPerAccount int
	// SocketsPerAddress caps open sockets from one address, /ws and
	// Socket.IO sessions together (HTTP 429 beyond). Default 200.
	SocketsPerAddress int
	// SocketIOSessions caps Socket.IO sessions on this instance, whatever
	// their address (HTTP 503 beyond). Default 10,000.
	SocketIOSessions int
}

// Handler returns the routes. Unknown paths get 404 and wrong methods 405,
// both as JSON.
func (s *Server) Handler() http.Handler {
	if s.Limits.LoginFailuresPerAddress <= 0 {
		s.Limits.LoginFailuresPerAddress = 20
	}
	if s.Limits.LoginFailuresPerAccount <= 0 {
		s.Limits.LoginFailuresPerAccount = 5
	}
	if s.Limits.SocketsPerAddress <= 0 {
		s.Limits.SocketsPerAddress = 200
	}
	if s.Limits.SocketIOSessions <= 0 {
		s.Limits.SocketIOSessions = 10_000
	}
	s.loginByAddr = newKeyedLimiter(3*time.Second, s.Limits.LoginFailuresPerAddress)
	s.loginByEmail = newKeyedLimiter(time.Minute, s.Limits.LoginFailuresPerAccount)
	s.conns = &connCounter{max: s.Limits.SocketsPerAddress}
	s.upgrader = websocket.Upgrader{
		// gorilla only does the handshake (and a refusal's close frame):
		// the hub reads and writes the connection itself, so the
		// *websocket.Conn and its buffers are dropped once the socket is
		// handed over. A zero ReadBufferSize reuses the HTTP server's
		// reader instead of allocating one more; the pool lends a write
		// buffer only for the refusal.
		ReadBufferSize:  0,
		WriteBufferSize: 0,
		WriteBufferPool: &sync.Pool{},
		// No compression: the hub frames messages itself, once per event
		// for every socket.
		EnableCompression: false,
		// Checked before Upgrade with a JSON 403; by then it has passed.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	route := func(path string, methods map[string]http.HandlerFunc) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			h, ok := methods[r.Method]
			if !ok && r.Method == http.MethodHead {
				h, ok = methods[http.MethodGet]
			}
			if !ok {
				allowed := make([]string, 0, len(methods))
				for m := range methods {
					allowed = append(allowed, m)
				}
				w.Header().Set("Allow", strings.Join(allowed, ", "))
				writeError(w, http.StatusMethodNotAllowed, "method not allowed")
				return
			}
			if r.Method == http.MethodPost && !s.checkPost(w, r) {
				return
			}
			h(w, r)
		})
	}
	route("/api/v1/auth/login", map[string]http.HandlerFunc{http.MethodPost: s.login})
	route("/api/v1/auth/logout", map[string]http.HandlerFunc{http.MethodPost: s.logout})
	route("/api/v1/auth/me", map[string]http.HandlerFunc{http.MethodGet: s.me})
	route("/api/v1/channels", map[string]http.HandlerFunc{http.MethodGet: s.channels})
	route("/api/v1/channels/{channel}/events", map[string]http.HandlerFunc{http.MethodPost: s.publish})
	route("/api/v1/stats", map[string]http.HandlerFunc{http.MethodGet: s.stats})
	route("/rooms", map[string]http.HandlerFunc{http.MethodGet: s.rooms})
	route("/healthz", map[string]http.HandlerFunc{http.MethodGet: s.healthz})
	route("/readyz", map[string]http.HandlerFunc{http.MethodGet: s.readyz})
	route("/ws", map[string]http.HandlerFunc{http.MethodGet: s.websocket})
	route("/api/v1/stream", map[string]http.HandlerFunc{http.MethodGet: s.stream})
	s.socketIO = &socketio.Server{
		MaxPayload:  maxSocketIOPayload,
		MaxSessions: s.Limits.SocketIOSessions,
		CheckRequest: func(r *http.Request) error {
			if !s.originAllowed(r) {
				return errors.New("origin not allowed")
			}
			return nil
		},
		// The auth payload ({user_id, username}) is kept for the socket's
		// life: refused at CONNECT beyond a few KiB.
		CheckAuth: func(auth json.RawMessage) error {
			if len(auth) > maxSocketIOAuthBytes {
				return fmt.Errorf("auth: at most %d KiB ({user_id, username})", maxSocketIOAuthBytes>>10)
			}
			return nil
		},
		// A Socket.IO session is a socket like a /ws one: it holds a slot
		// of its address from the handshake until the session ends.
		Acquire: func(r *http.Request) (func(), bool) {
			addr := s.Proxies.ClientIP(r)
			if !s.conns.acquire(addr) {
				return nil, false
			}
			return func() { s.conns.release(addr) }, true
		},
		OnConnect: s.serveSocketIO,
		Logger:    s.Logger,
	}
	mux.Handle("/socket.io/", s.socketIO)
	mux.HandleFunc("/{$}", s.root)
	if s.Metrics != nil {
		route("/metrics", map[string]http.HandlerFunc{http.MethodGet: s.Metrics.ServeHTTP})
	}
	if s.History != nil {
		route("/api/v1/admin/overview", map[string]http.HandlerFunc{http.MethodGet: s.adminOverview})
	}
	if s.Static != nil {
		route("/pgpush.js", map[string]http.HandlerFunc{http.MethodGet: s.Static.ServeHTTP})
		route("/pgpush.d.ts", map[string]http.HandlerFunc{http.MethodGet: s.Static.ServeHTTP})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
	return http.MaxBytesHandler(mux, maxBodyBytes)
}

// root is the bare host: a WebSocket upgrade there behaves like /ws (as
// Ocha API and chat-ws clients connect); anything else is the dashboard.
func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		s.websocket(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if s.Static != nil {
		s.Static.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "pgpush is running. Open a WebSocket on /ws.")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}

// checkPost refuses, answering itself, a POST that a page on another site
// could have sent with the user's cookies: a browser sends a cross-site
// form or a text/plain fetch without a preflight, but never with
// Content-Type application/json, and names the page's Origin. So a POST
// with a body must be JSON (else 415), and a present Origin must be
// allowed (else 403), which also covers bodiless POSTs such as logout.
func (s *Server) checkPost(w http.ResponseWriter, r *http.Request) bool {
	if !s.originAllowed(r) {
		writeError(w, http.StatusForbidden, "origin not allowed")
		return false
	}
	// ContentLength is -1 when unknown (chunked): that is a body too.
	if r.ContentLength != 0 {
		mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mediaType != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "the body must be JSON, sent with Content-Type: application/json")
			return false
		}
	}
	return true
}

// decodeBody reads a JSON object body into v, answering 400 itself.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "body too large")
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "missing JSON body")
		default:
			writeError(w, http.StatusBadRequest, "invalid JSON body")
		}
		return false
	}
	return true
}

type userJSON struct {
	ID    int64  `json:"id"`
	Email string `json:"email"`
	Role  string `json:"role"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Email == "" || body.Password == "" {
		writeError(w, http.StatusBadRequest, `"email" and "password" are required`)
		return
	}
	// Only failures spend tokens: a user who logs in correctly is never
	// locked out by the limit, a guesser is after a few tries. Tokens are
	// taken before the password check and given back on success, so
	// parallel guesses cannot all slip past the limit.
	// An email that cannot be an account is refused before it becomes a
	// limiter key: keys must stay small and few.
	if session.ValidateEmail(body.Email) != nil {
		writeError(w, http.StatusUnauthorized, "invalid email or password")
		return
	}
	addr, account := s.Proxies.ClientIP(r), strings.ToLower(strings.TrimSpace(body.Email))
	// The address is checked first, so a limited address cannot create
	// per-account buckets at all.
	if !s.loginByAddr.take(addr) {
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "too many failed logins, try again later")
		return
	}
	if !s.loginByEmail.take(account) {
		s.loginByAddr.refund(addr)
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "too many failed logins, try again later")
		return
	}
	u, err := s.Sessions.Authenticate(r.Context(), body.Email, body.Password)
	if errors.Is(err, session.ErrBadCredentials) {
		writeError(w, http.StatusUnauthorized, "invalid email or password")
		return
	}
	s.loginByAddr.refund(addr)
	s.loginByEmail.refund(account)
	if err != nil {
		s.internalError(w, "login", err)
		return
	}
	if err := s.Sessions.Login(r.Context(), w, r, u); err != nil {
		s.internalError(w, "login", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]userJSON{"user": {u.ID, u.Email, u.Role}})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	id, err := s.Sessions.Logout(r.Context(), w, r)
	if errors.Is(err, session.ErrNoSession) {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	if err != nil {
		s.internalError(w, "logout", err)
		return
	}
	// Close local sockets at once; other instances hear the NOTIFY.
	s.Hub.CloseSession(id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]userJSON{"user": {u.ID, u.Email, u.Role}})
}

// requireUser answers 401 itself when there is no session.
func (s *Server) requireUser(w http.ResponseWriter, r *http.Request) (session.User, bool) {
	u, _, err := s.Sessions.FromRequest(r.Context(), r)
	if errors.Is(err, session.ErrNoSession) {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return session.User{}, false
	}
	if err != nil {
		s.internalError(w, "session", err)
		return session.User{}, false
	}
	return u, true
}

// principal is the caller as the realtime layer sees it: the session's
// user, or anonymous when there is none and anonymous holds grants.
func (s *Server) principal(r *http.Request) (*session.Principal, error) {
	u, id, err := s.Sessions.FromRequest(r.Context(), r)
	if err == nil {
		return &session.Principal{UserID: u.ID, Email: u.Email, Role: u.Role, Attrs: u.Attrs, SessionID: id}, nil
	}
	if !errors.Is(err, session.ErrNoSession) {
		return nil, err
	}
	if s.Policy.AnonymousAllowed() {
		return &session.Principal{Role: session.RoleAnonymous}, nil
	}
	return nil, session.ErrNoSession
}

func (s *Server) channels(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	if errors.Is(err, session.ErrNoSession) {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	if err != nil {
		s.internalError(w, "channels", err)
		return
	}
	counts := s.Hub.ChannelCounts()
	type channelJSON struct {
		Name        string `json:"name"`
		Subscribers int    `json:"subscribers"`
	}
	list := []channelJSON{}
	for _, name := range s.Policy.VisibleChannels(p) {
		list = append(list, channelJSON{name, counts[name]})
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": list})
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	if errors.Is(err, session.ErrNoSession) {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	if err != nil {
		s.internalError(w, "publish", err)
		return
	}
	channel := r.PathValue("channel")
	var body struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Event == "" {
		writeError(w, http.StatusBadRequest, `"event" is required`)
		return
	}
	if string(body.Data) == "null" {
		body.Data = nil
	}
	if len(body.Data) > 0 && body.Data[0] != '{' {
		writeError(w, http.StatusBadRequest, `"data" must be a JSON object`)
		return
	}
	if err := realtime.CheckPublish(body.Event, body.Data); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if db.ReservedChannel(channel) {
		writeError(w, http.StatusForbidden, "rooms and notifications have their own messages (send-message, send-notification)")
		return
	}
	access, err := s.Policy.Access(r.Context(), p, channel)
	switch {
	case errors.Is(err, session.ErrUnknownChannel) && p.Role == session.RoleAdmin:
		// An admin's first publish is what makes a custom channel exist.
	case errors.Is(err, session.ErrUnknownChannel), errors.Is(err, session.ErrForbidden):
		writeError(w, http.StatusForbidden, "not allowed to publish on this channel")
		return
	case err != nil:
		s.internalError(w, "publish", err)
		return
	case !access.Publish:
		writeError(w, http.StatusForbidden, "not allowed to publish on this channel")
		return
	}
	id, err := realtime.PoolStore{DB: s.Pool}.Publish(r.Context(), channel, body.Event, body.Data)
	if err != nil {
		s.internalError(w, "publish", err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": fmt.Sprint(id), "channel": channel, "event": body.Event})
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Hub.ServerStats())
}

// maxRoomsListed bounds GET /rooms (SPEC §4): anyone allowed to chat can
// make rooms, and one list must not grow with them.
const maxRoomsListed = 1000

// rooms lists chat rooms that hold messages (the chat-ws API): the most
// recently active ones the caller may join, newest first.
func (s *Server) rooms(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	if errors.Is(err, session.ErrNoSession) {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	if err != nil {
		s.internalError(w, "rooms", err)
		return
	}
	rooms, err := db.RecentRooms(r.Context(), s.Pool, maxRoomsListed, func(room string) bool {
		// A room channel is known without a query: this reads only the
		// cached grants while the rooms are being read.
		_, err := s.Policy.Access(r.Context(), p, db.RoomChannel(room))
		return err == nil
	})
	if err != nil {
		s.internalError(w, "rooms", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"rooms": rooms})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Pool.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "database unreachable"})
		return
	}
	if !s.ListenerReady() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "listener not connected"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) internalError(w http.ResponseWriter, op string, err error) {
	s.Logger.Error(op, "err", err)
	writeError(w, http.StatusServiceUnavailable, "temporarily unavailable, try again")
}

// originAllowed implements the cross-site WebSocket hijacking defence,
// and checkPost's cross-site POST one. A request without Origin is not
// from a browser, which is the only client that attaches cookies on
// another site's behalf.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(s.AllowedOrigins) == 0 {
		return strings.EqualFold(u.Host, r.Host)
	}
	for _, allowed := range s.AllowedOrigins {
		if allowed == "*" || strings.EqualFold(strings.TrimSuffix(allowed, "/"), u.Scheme+"://"+u.Host) {
			return true
		}
	}
	return false
}

func (s *Server) websocket(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, "expected a WebSocket upgrade")
		return
	}
	if !s.originAllowed(r) {
		writeError(w, http.StatusForbidden, "origin not allowed")
		return
	}
	addr := s.Proxies.ClientIP(r)
	if !s.conns.acquire(addr) {
		writeError(w, http.StatusTooManyRequests, "too many sockets from this address")
		return
	}
	handedOff := false // once the socket's goroutine owns the count
	defer func() {
		if !handedOff {
			s.conns.release(addr)
		}
	}()
	p, authErr := s.principal(r)
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	if authErr != nil {
		reason := "authentication required"
		if !errors.Is(authErr, session.ErrNoSession) {
			s.Logger.Error("websocket session", "err", authErr)
			reason = "cannot check session, try again"
		}
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(realtime.ClosePolicyViolation, reason), time.Now().Add(5*time.Second))
		_ = conn.Close()
		return
	}
	// The socket outlives the request: its context is not the request's,
	// which would also keep the HTTP server's per-connection values for
	// the socket's lifetime; the hub's shutdown closes it. It runs on
	// goroutines of its own, so the handler's stack, grown by the session
	// lookup, is not kept either.
	handedOff = true
	s.Hub.ServeConn(context.Background(), conn, p, func() { s.conns.release(addr) })
}

// serveSocketIO authenticates a Socket.IO client as /ws does (session
// cookie, else anonymous when allowed, named by its auth payload) and
// hands it to the hub.
func (s *Server) serveSocketIO(sock *socketio.Socket) {
	p, err := s.principal(sock.Request())
	if err != nil {
		if !errors.Is(err, session.ErrNoSession) {
			s.Logger.Error("socket.io session", "err", err)
		}
		sock.Close("authentication required")
		return
	}
	if p.Anonymous() {
		var auth struct {
			Username string `json:"username"`
		}
		if json.Unmarshal(sock.Auth(), &auth) == nil && auth.Username != "" {
			// Checked (length, e-mail look-alike) where it is used, as a
			// sender's name, so the client hears why then.
			p.Name = realtime.BoundName(auth.Username)
		}
	}
	s.Hub.ServeSocketIO(context.Background(), sock, p)
}

// Shutdown ends Socket.IO sessions, including pending long-polls, which
// http.Server.Shutdown would otherwise wait for.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.socketIO == nil {
		return nil
	}
	return s.socketIO.Shutdown(ctx)
}
