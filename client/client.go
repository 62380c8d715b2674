// Package client is a Go client for pgpush's WebSocket protocol (/ws, SPEC
// §3): it logs in (or connects anonymously), subscribes to channels with a
// filter, a resume point or a snapshot, delivers typed events, and
// survives lost connections and server restarts without losing or
// repeating an event.
//
//	c, err := client.New("http://localhost:3000", client.Options{
//		Email: "ops@example.com", Password: pw,
//	})
//	if err := c.Connect(ctx); err != nil { … }
//	defer c.Close(context.Background())
//	sub, err := c.Subscribe(ctx, "order_changes", client.SubscribeOptions{
//		Filter:  json.RawMessage(`{"status":"paid"}`),
//		OnEvent: func(ev client.Event) { fmt.Println(ev.Event, ev.ChangedFields()) },
//	})
//
// After a dropped connection the Client reconnects with exponential backoff
// and jitter, logs in again if the server ended the session, and
// re-subscribes every channel with "since" set to the last event id it
// delivered there, so the server replays what was committed meanwhile.
//
// Callbacks (Options.OnState, Options.OnError, Options.OnBroadcast and the
// SubscribeOptions callbacks) run one at a time on the Client's own
// goroutine, in the order the server sent the frames: a callback needs no
// lock to update state shared with the others. A callback that blocks
// holds up the connection: the server closes a socket that stops reading
// (1013) and the Client then resumes with "since", so nothing is lost, but
// keep callbacks short. Unsubscribe may be called from a callback;
// Subscribe and Close must not be, since they wait for that goroutine.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults of the Options durations.
const (
	DefaultBackoffMin   = 250 * time.Millisecond
	DefaultBackoffMax   = 10 * time.Second
	DefaultPingInterval = 25 * time.Second
	DefaultPongTimeout  = 10 * time.Second
	DefaultDialTimeout  = 10 * time.Second
)

const (
	// writeWait bounds one frame write; a server that does not read for
	// that long is treated as gone.
	writeWait = 10 * time.Second
	// maxFrameBytes bounds one frame from the server. Rows of any size
	// arrive whole (SPEC §3), and a snapshot frame holds up to 500 rows.
	maxFrameBytes = 256 << 20
	// maxChannelBytes is the server's limit on channel names.
	maxChannelBytes = 200
	// closePolicyViolation (1008) is the server's close code for a missing
	// or ended session: a new socket with the same cookie fails the same way.
	closePolicyViolation = 1008
)

// State is the state of a Client's connection.
type State int

const (
	// StateDisconnected: no connection; a reconnect is scheduled.
	StateDisconnected State = iota
	// StateConnecting: logging in or opening the socket.
	StateConnecting
	// StateConnected: the server sent its "connected" frame.
	StateConnected
	// StateClosed: for good, after Close or an error that a reconnect
	// cannot fix (bad credentials, an anonymous socket refused).
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateDisconnected:
		return "disconnected"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateClosed:
		return "closed"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

// StateChange is what Options.OnState receives.
type StateChange struct {
	State State
	// Err is why the connection was lost (Disconnected), why the last
	// attempt failed (Connecting after a failure), or why the Client
	// closed (Closed; nil after Close).
	Err error
	// Attempt counts reconnect attempts since the last connection: the
	// number of this attempt (Disconnected, Connecting) or of the one that
	// succeeded (Connected); 0 for the first Connect.
	Attempt int
	// Delay is, in StateDisconnected, how long until the next attempt.
	Delay time.Duration
}

// User is the account the Client logged in as.
type User struct {
	ID    int64  `json:"id"`
	Email string `json:"email"`
	Role  string `json:"role"`
}

// Options configure a Client. Every field is optional; zero values mean
// the documented defaults.
type Options struct {
	// Email and Password log in with POST /api/v1/auth/login. An empty
	// Email connects anonymously, with the rights of role "anonymous".
	Email    string
	Password string
	// Header holds extra WebSocket handshake headers. Origin is always the
	// server's own origin, which the server allows by default.
	Header http.Header
	// TLSConfig is used for https:// and wss:// URLs; nil means Go's
	// defaults.
	TLSConfig *tls.Config
	// BackoffMin and BackoffMax bound the reconnect delay: it doubles from
	// BackoffMin up to BackoffMax, and each delay is drawn at random from
	// its upper half, so that clients dropped together by a restart do not
	// come back together. Defaults 250ms and 10s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// PingInterval is how often the Client sends {"type":"ping"}; a
	// connection with no frame at all for PingInterval+PongTimeout is taken
	// for dead and replaced. Defaults 25s and 10s.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// DialTimeout bounds the login request and the WebSocket handshake up
	// to the server's "connected" frame. Default 10s.
	DialTimeout time.Duration
	// OnState receives every connection state change.
	OnState func(StateChange)
	// OnError receives errors that belong to no call: error frames that
	// name no subscribed channel, malformed frames, and resync_required
	// on subscriptions without OnResync.
	OnError func(error)
	// OnBroadcast receives frames sent to every socket, such as
	// {"type":"new_product","data":{…}}, and any other frame type the
	// Client does not handle itself.
	OnBroadcast func(Broadcast)
	// Logger gets connection events (lost, reconnected); default: none.
	Logger *slog.Logger
}

// Client is one logical connection to a pgpush server. It outlives the
// WebSocket under it: subscriptions and their resume positions survive
// reconnects. Create it with New, then Connect, Subscribe, and Close.
type Client struct {
	base   string // http(s)://host[/prefix], no trailing slash
	wsURL  string
	origin string
	opts   Options
	log    *slog.Logger
	http   *http.Client
	dialer *websocket.Dialer

	// ctx ends when Close is called; the run goroutine and every dial and
	// login it makes use it.
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed when the run goroutine has exited.
	done chan struct{}

	// writeMu serialises data frame writes: gorilla/websocket allows one
	// writer at a time (WriteControl excepted).
	writeMu sync.Mutex

	mu sync.Mutex
	// conn is the open socket, nil while disconnected. Only the run
	// goroutine reads from it.
	conn *websocket.Conn
	subs map[string]*Subscription
	// leaving counts "unsubscribed" answers still due on conn for
	// channels given up, so that they do not end a newer subscription.
	leaving  map[string]int
	state    State
	user     *User
	loggedIn bool // a session exists that Close should end
	started  bool // Connect succeeded and the run goroutine runs
	closing  bool // Close was called
	err      error
}

// New makes a Client for the server at rawURL: its base URL
// ("http://localhost:3000", "https://push.example.com/prefix") or its
// WebSocket URL ("ws://localhost:3000/ws"). It does no I/O; Connect does.
func New(rawURL string, opts Options) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("server url: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
		u.Path = strings.TrimSuffix(u.Path, "/ws")
	case "wss":
		u.Scheme = "https"
		u.Path = strings.TrimSuffix(u.Path, "/ws")
	default:
		return nil, fmt.Errorf("server url %q: want http://, https://, ws:// or wss://", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("server url %q has no host", rawURL)
	}
	if opts.Email != "" && opts.Password == "" {
		return nil, errors.New("a password is needed with an email")
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	u.Path = strings.TrimSuffix(u.Path, "/")
	base := u.String()
	wsScheme := "ws"
	if u.Scheme == "https" {
		wsScheme = "wss"
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = DefaultBackoffMin
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	opts.BackoffMax = max(opts.BackoffMax, opts.BackoffMin)
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.PongTimeout <= 0 {
		opts.PongTimeout = DefaultPongTimeout
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = opts.TLSConfig
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		base:   base,
		wsURL:  wsScheme + "://" + u.Host + u.Path + "/ws",
		origin: u.Scheme + "://" + u.Host,
		opts:   opts,
		log:    logger,
		http:   &http.Client{Jar: jar, Transport: transport, Timeout: opts.DialTimeout},
		dialer: &websocket.Dialer{
			Jar:              jar,
			TLSClientConfig:  opts.TLSConfig,
			HandshakeTimeout: opts.DialTimeout,
			Proxy:            http.ProxyFromEnvironment,
		},
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		subs:    map[string]*Subscription{},
		leaving: map[string]int{},
	}, nil
}

// Connect logs in (when Options.Email is set) and opens the socket, once:
// a wrong password, an unreachable server or a refused socket is an error
// here. After it succeeds, lost connections are re-established in the
// background until Close. Connect may be called again after it failed.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closing:
		c.mu.Unlock()
		return ErrClosed
	case c.started:
		c.mu.Unlock()
		return errors.New("client is already connected")
	}
	c.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel) // Close ends a Connect in progress
	defer stop()

	c.setState(StateChange{State: StateConnecting})
	if c.opts.Email != "" {
		if err := c.login(ctx); err != nil {
			c.setState(StateChange{State: StateDisconnected, Err: err})
			return err
		}
	}
	conn, err := c.dial(ctx)
	if err != nil {
		c.setState(StateChange{State: StateDisconnected, Err: err})
		return err
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		conn.Close()
		return ErrClosed
	}
	c.started = true
	c.mu.Unlock()
	go c.run(conn)
	return nil
}

// User is the account the Client logged in as, or nil when anonymous or
// before Connect.
func (c *Client) User() *User {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.user == nil {
		return nil
	}
	u := *c.user
	return &u
}

// State is the connection's state now.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Done is closed when the Client has closed for good: after Close, or
// after an error no reconnect can fix (see Err).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the Client closed by itself (bad credentials on a re-login,
// an anonymous socket the server refuses), or nil.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection for good and waits, up to ctx, for the
// Client's goroutine to exit. It ends every subscription (their Err is
// ErrClosed) and, when the Client logged in, logs out, so that the server
// does not keep the session (a user holds at most 20). Calling it again
// does nothing.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closing {
		started := c.started
		c.mu.Unlock()
		if started {
			select {
			case <-c.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	c.closing = true
	// Cancelled under mu, so that the run goroutine either sees it before
	// it publishes a new conn, or we see that conn here.
	c.cancel()
	conn, started, loggedIn := c.conn, c.started, c.loggedIn
	c.loggedIn = false
	c.mu.Unlock()

	if conn != nil {
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, "client closed"), time.Now().Add(time.Second))
		conn.Close() // unblocks the reader
	}
	if started {
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	} else {
		c.finish(nil)
		close(c.done)
	}
	if loggedIn {
		return c.logout(ctx)
	}
	return nil
}

// run owns the connection from the first successful Connect to Close.
func (c *Client) run(conn *websocket.Conn) {
	defer close(c.done)
	needLogin := false
	attempts := 0 // reconnect attempts before conn
	for {
		err := c.serve(conn, attempts)
		if c.ctx.Err() != nil {
			c.finish(nil)
			return
		}
		c.log.Warn("pgpush connection lost", "err", err)
		if fatal := c.reconnectable(err, &needLogin); fatal != nil {
			c.finish(fatal)
			return
		}
		conn = nil
		for attempt := 1; conn == nil; attempt++ {
			attempts = attempt
			delay := c.backoff(attempt)
			c.setState(StateChange{State: StateDisconnected, Err: err, Attempt: attempt, Delay: delay})
			if !sleepCtx(c.ctx, delay) {
				c.finish(nil)
				return
			}
			c.setState(StateChange{State: StateConnecting, Attempt: attempt})
			err = nil
			if needLogin {
				if err = c.login(c.ctx); err == nil {
					needLogin = false
				}
			}
			if err == nil {
				conn, err = c.dial(c.ctx)
			}
			if c.ctx.Err() != nil {
				if conn != nil {
					conn.Close()
				}
				c.finish(nil)
				return
			}
			if err != nil {
				c.log.Warn("pgpush reconnect", "attempt", attempt, "err", err)
				if fatal := c.reconnectable(err, &needLogin); fatal != nil {
					c.finish(fatal)
					return
				}
				continue
			}
			c.log.Info("pgpush reconnected", "attempt", attempt)
		}
	}
}

// reconnectable decides what a lost connection or failed attempt needs: a
// new login after 1008 (the session ended), or nothing more (the returned
// error ends the Client): a refused login, or 1008 on an anonymous socket,
// which a retry would only repeat.
func (c *Client) reconnectable(err error, needLogin *bool) (fatal error) {
	if errors.Is(err, ErrBadCredentials) {
		return err
	}
	var ce *CloseError
	if errors.As(err, &ce) && ce.Code == closePolicyViolation {
		if c.opts.Email == "" {
			return err
		}
		*needLogin = true
	}
	return nil
}

// finish ends the Client: every subscription ends, the state is Closed.
// err is nil after Close.
func (c *Client) finish(err error) {
	c.mu.Lock()
	c.closing = true
	c.err = err
	subs := c.subs
	c.subs = map[string]*Subscription{}
	var subErr error = ErrClosed
	if err != nil {
		subErr = err
	}
	for _, s := range subs {
		s.endLocked(subErr)
	}
	c.mu.Unlock()
	c.cancel()
	c.setState(StateChange{State: StateClosed, Err: err})
}

// backoff is the delay before reconnect attempt n (1-based): doubling from
// BackoffMin to BackoffMax, drawn from the upper half of that ceiling.
// Jitter spreads the clients a server restart dropped together; keeping
// the lower half out keeps one client from hammering a server that is
// still down.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.opts.BackoffMax
	if shift := attempt - 1; shift < 30 {
		if d := c.opts.BackoffMin << shift; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	half := ceiling / 2
	return half + rand.N(ceiling-half+1)
}

func (c *Client) setState(sc StateChange) {
	c.mu.Lock()
	c.state = sc.State
	c.mu.Unlock()
	if c.opts.OnState != nil {
		c.opts.OnState(sc)
	}
}

func (c *Client) onError(err error) {
	if c.opts.OnError != nil {
		c.opts.OnError(err)
		return
	}
	c.log.Warn("pgpush", "err", err)
}

// login posts the credentials and keeps the session cookie in the jar.
func (c *Client) login(ctx context.Context) error {
	body, err := json.Marshal(map[string]string{"email": c.opts.Email, "password": c.opts.Password})
	if err != nil {
		return err
	}
	op := "log in as " + c.opts.Email
	resp, err := c.post(ctx, "/api/v1/auth/login", body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: %w", op, ErrBadCredentials)
	default:
		return &HTTPError{Op: op, StatusCode: resp.StatusCode, Message: errorText(b)}
	}
	var answer struct {
		User User `json:"user"`
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		return fmt.Errorf("%s: unexpected answer: %w", op, err)
	}
	c.mu.Lock()
	c.user = &answer.User
	c.loggedIn = true
	c.mu.Unlock()
	return nil
}

// logout ends the session the Client logged in with.
func (c *Client) logout(ctx context.Context) error {
	resp, err := c.post(ctx, "/api/v1/auth/logout", []byte("{}"))
	if err != nil {
		return fmt.Errorf("log out: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	// 401: the session had already ended (logged out elsewhere, expired).
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return &HTTPError{Op: "log out", StatusCode: resp.StatusCode, Message: errorText(b)}
	}
	return nil
}

func (c *Client) post(ctx context.Context, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", c.origin)
	return c.http.Do(req)
}

// errorText is the "error" of a JSON error body, or the body itself.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(body))
}

// dial opens the socket and reads the server's first frame, so that a
// socket the server closes at once (no session: 1008) is an error here.
func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	header := http.Header{}
	for k, v := range c.opts.Header {
		header[k] = append([]string(nil), v...)
	}
	header.Set("Origin", c.origin)
	dialCtx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	conn, resp, err := c.dialer.DialContext(dialCtx, c.wsURL, header)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return nil, &HTTPError{Op: "open " + c.wsURL, StatusCode: resp.StatusCode, Message: errorText(b)}
		}
		return nil, fmt.Errorf("open %s: %w", c.wsURL, err)
	}
	conn.SetReadLimit(maxFrameBytes)
	stop := context.AfterFunc(dialCtx, func() { conn.Close() })
	defer stop()
	_ = conn.SetReadDeadline(time.Now().Add(c.opts.DialTimeout))
	_, b, err := conn.ReadMessage()
	if err != nil {
		conn.Close()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return nil, &CloseError{Code: ce.Code, Reason: ce.Text}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("open %s: waiting for the connected frame: %w", c.wsURL, err)
	}
	var first struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(b, &first) != nil || first.Type != "connected" {
		conn.Close()
		return nil, fmt.Errorf("open %s: first frame is not \"connected\": %.200s", c.wsURL, b)
	}
	if !stop() {
		// dialCtx ended just as the frame arrived; the conn is closed.
		return nil, fmt.Errorf("open %s: %w", c.wsURL, dialCtx.Err())
	}
	return conn, nil
}

// serve runs one connection: it re-subscribes every channel, then reads
// frames until the connection fails or Close closes it.
func (c *Client) serve(conn *websocket.Conn, attempts int) error {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		conn.Close()
		return ErrClosed
	}
	c.conn = conn
	clear(c.leaving)
	channels := make([]string, 0, len(c.subs))
	for ch := range c.subs {
		channels = append(channels, ch)
	}
	sort.Strings(channels)
	var werr error
	for _, ch := range channels {
		if werr = c.sendSubscribeLocked(conn, c.subs[ch]); werr != nil {
			break
		}
	}
	c.mu.Unlock()
	var err error
	if werr == nil {
		c.setState(StateChange{State: StateConnected, Attempt: attempts})
		err = c.readLoop(conn)
	} else {
		err = werr
	}

	c.mu.Lock()
	c.conn = nil
	for _, s := range c.subs {
		s.disconnectedLocked()
	}
	c.mu.Unlock()
	conn.Close()
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	return err
}

// readLoop reads and handles frames until an error. Every frame, and every
// server ping, moves the read deadline; our own pings make sure frames
// keep coming from a live server.
func (c *Client) readLoop(conn *websocket.Conn) error {
	deadline := c.opts.PingInterval + c.opts.PongTimeout
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(time.Now().Add(deadline))
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeWait))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	pingDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.pingLoop(conn, pingDone) })
	defer func() {
		close(pingDone)
		wg.Wait()
	}()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(deadline))
		_, b, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
				return &CloseError{Code: ce.Code, Reason: ce.Text}
			}
			// 1006 is gorilla's name for a connection that ended without
			// a close frame: the server (or the network) went away.
			return fmt.Errorf("connection dropped: %w", err)
		}
		c.handleFrame(conn, b)
	}
}

func (c *Client) pingLoop(conn *websocket.Conn, done <-chan struct{}) {
	t := time.NewTicker(c.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if err := c.writeJSON(conn, map[string]string{"type": "ping"}); err != nil {
				conn.Close() // the reader notices and reconnects
				return
			}
		}
	}
}

func (c *Client) writeJSON(conn *websocket.Conn, v any) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(writeWait))
	return conn.WriteJSON(v)
}

// sleepCtx waits for d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
