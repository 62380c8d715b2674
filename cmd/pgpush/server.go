package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/httpapi"
	"github.com/pgpush/pgpush/realtime"
	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/web"
)

// serverConfig is everything runServer needs. serve fills it from flags and
// the environment, demo from its throwaway cluster, tests directly. Zero
// values mean the defaults noted; withDefaults applies them, in one place.
type serverConfig struct {
	DatabaseURL    string
	ListenAddr     string        // ":3000"
	SessionSecret  []byte        // >= 32 bytes
	AllowedOrigins []string      // empty: the request's own host
	Retention      time.Duration // 24h: events, pending notifications, room messages
	NoMigrate      bool
	ShutdownWait   time.Duration // 10s
	HashCost       int           // bcrypt cost; 0: session's default
	Hub            realtime.Options
	TrustedProxies httpapi.Proxies // peers trusted for X-Forwarded-For/-Proto; empty: none
	Limits         httpapi.Limits
	// SessionCheckEvery is how often open sockets' sessions are checked
	// against the database. 30s.
	SessionCheckEvery time.Duration
	// PprofAddr, when set (e.g. 127.0.0.1:6060), serves net/http/pprof there,
	// on its own listener so it is never exposed on the public port.
	PprofAddr string
}

func (c serverConfig) withDefaults() serverConfig {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.ListenAddr == "" {
		c.ListenAddr = ":3000"
	}
	def(&c.Retention, 24*time.Hour)
	def(&c.ShutdownWait, 10*time.Second)
	def(&c.SessionCheckEvery, 30*time.Second)
	// One retention for everything the log keeps: the hub uses it for
	// pending notifications, the prune loop for events.
	c.Hub.Retention = c.Retention
	return c
}

// server is one running pgpush instance: what runServer builds from a
// config, and the goroutines it owns.
type server struct {
	cfg      serverConfig
	log      *slog.Logger
	pool     *pgxpool.Pool
	sessions *session.Store
	policy   *session.Policy
	hub      *realtime.Hub
	listener *realtime.Listener
	api      *httpapi.Server
	history  *httpapi.History // the operator view's last minutes
	// reload carries "grants changed" from the listener's goroutine to the
	// reload loop, so that a slow query never delays event delivery; a
	// burst of announcements collapses into one reload.
	reload chan struct{}
}

// runServer runs pgpush on ln until ctx ends, then shuts down: stop
// accepting, close sockets with 1001, stop the listener. started, when not
// nil, is called once the server accepts connections.
func runServer(ctx context.Context, cfg serverConfig, ln net.Listener, logger *slog.Logger, started func()) error {
	defer ln.Close()
	cfg = cfg.withDefaults()
	pool, err := db.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	s := &server{cfg: cfg, log: logger, pool: pool, reload: make(chan struct{}, 1)}
	if err := s.open(ctx); err != nil {
		return err
	}
	return s.run(ctx, ln, started)
}

// open migrates and builds every component; the listener connects once so
// that a wrong URL fails here, before anything is served.
func (s *server) open(ctx context.Context) error {
	if !s.cfg.NoMigrate {
		if _, err := db.Migrate(ctx, s.pool, "up", s.log); err != nil {
			return err
		}
	}
	var err error
	s.sessions, err = session.NewStore(s.pool, session.Options{Secret: s.cfg.SessionSecret, HashCost: s.cfg.HashCost, Secure: s.cfg.TrustedProxies.Secure})
	if err != nil {
		return err
	}
	s.policy = session.NewPolicy(s.pool)
	if err := s.policy.Reload(ctx); err != nil {
		return err
	}
	s.hub = realtime.NewHub(s.cfg.Hub, s.policy, realtime.PoolStore{DB: s.pool}, s.log)
	s.hub.CheckSessionsOnOpen(func(ctx context.Context, id string) (bool, error) {
		live, err := s.sessions.LiveSessions(ctx, []string{id})
		return live[id], err
	})
	connConfig, err := db.ParseConfig(s.cfg.DatabaseURL, db.ListenerApplicationName)
	if err != nil {
		return err
	}
	s.listener = &realtime.Listener{
		ConnConfig:     connConfig,
		StartFunc:      s.hub.SetPosition,
		DispatchFunc:   s.dispatch,
		ControlFunc:    s.control,
		ControlChannel: db.ControlChannel,
		Logger:         s.log,
	}
	s.history = httpapi.NewHistory(s.hub.Stats(), s.listener)
	s.api = &httpapi.Server{
		Pool:           s.pool,
		Sessions:       s.sessions,
		Policy:         s.policy,
		Hub:            s.hub,
		ListenerReady:  s.listener.Ready,
		AllowedOrigins: s.cfg.AllowedOrigins,
		Logger:         s.log,
		Static:         web.Handler(),
		Metrics:        httpapi.NewMetrics(s.hub, s.listener),
		History:        s.history,
		Proxies:        s.cfg.TrustedProxies,
		Limits:         s.cfg.Limits,
	}
	return nil
}

// dispatch hands the listener's events to the hub, then to the history
// for their latencies: the hub has one latency observer, and /metrics holds
// it.
func (s *server) dispatch(events []*realtime.Event) {
	s.hub.Dispatch(events)
	s.history.Dispatched(events)
}

// control acts on a ControlChannel payload. It runs on the listener's
// goroutine, so it only closes sockets or hands work to the reload loop.
func (s *server) control(payload string) {
	msg, err := db.ParseControl(payload)
	switch {
	case err != nil:
		s.log.Warn("ignored control notification", "err", err)
	case msg.SessionID != "":
		s.hub.CloseSession(msg.SessionID)
	case msg.Reload:
		select {
		case s.reload <- struct{}{}:
		default:
		}
	}
}

func (s *server) run(ctx context.Context, ln net.Listener, started func()) error {
	if err := s.listener.Start(ctx); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return s.listener.Run(gctx) })
	g.Go(func() error { s.watchGrantsAndSessions(gctx); return nil })
	g.Go(func() error { s.prune(gctx); return nil })
	g.Go(func() error { s.hub.RunStatsPush(gctx, time.Second); return nil })
	g.Go(func() error { s.hub.RunPings(gctx); return nil })
	g.Go(func() error { s.hub.RunWriteDelay(gctx); return nil })
	g.Go(func() error { s.markDelivered(gctx); return nil })
	g.Go(func() error { s.history.Run(gctx); return nil })
	if s.cfg.PprofAddr != "" {
		g.Go(func() error { return servePprof(gctx, s.cfg.PprofAddr) })
	}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		s.shutdown(context.WithoutCancel(gctx), srv)
		return nil
	})
	s.log.Info("pgpush serving", "addr", ln.Addr().String())
	if started != nil {
		started()
	}
	return g.Wait()
}

// shutdown stops accepting, ends Socket.IO sessions (whose pending
// long-polls http.Server.Shutdown would otherwise wait for), and closes
// every socket with 1001, all within ShutdownWait.
func (s *server) shutdown(ctx context.Context, srv *http.Server) {
	ctx, done := context.WithTimeout(ctx, s.cfg.ShutdownWait)
	defer done()
	// Sockets and event streams are closed (1001) alongside the HTTP
	// server's shutdown, not after it: an open event stream is a request
	// that Shutdown would otherwise wait for until the deadline.
	hubDone := make(chan error, 1)
	go func() { hubDone <- s.hub.Shutdown(ctx) }()
	if err := s.api.Shutdown(ctx); err != nil {
		s.log.Warn("socket.io sessions still open at shutdown deadline", "err", err)
	}
	err := srv.Shutdown(ctx)
	if herr := <-hubDone; herr != nil {
		s.log.Warn("sockets still open at shutdown deadline", "err", herr)
	}
	if err != nil {
		_ = srv.Close()
	}
}

// watchGrantsAndSessions reloads grants when they are announced, and checks
// open sockets' sessions every SessionCheckEvery: that catches logouts
// announced while this instance's listener was reconnecting, and expired
// sessions.
func (s *server) watchGrantsAndSessions(ctx context.Context) {
	sessionCheck := time.NewTicker(s.cfg.SessionCheckEvery)
	defer sessionCheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.reload:
			if err := s.policy.Reload(ctx); err != nil {
				if ctx.Err() != nil {
					return // shutting down: not an error
				}
				s.log.Error("reload grants", "err", err)
				continue
			}
			s.hub.Reauthorize(ctx)
			if !s.policy.AnonymousAllowed() {
				s.hub.CloseAnonymous("authentication required")
			}
		case <-sessionCheck.C:
		}
		checked := s.hub.SessionIDs()
		live, err := s.sessions.LiveSessions(ctx, checked)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("check sessions", "err", err)
			continue
		}
		if n := s.hub.CloseEndedSessions(checked, live); n > 0 {
			s.log.Info("closed sockets of ended sessions", "count", n)
		}
	}
}

// prune applies the retention every minute (and at start): event log
// partitions, pending notifications and room messages, expired sessions.
// Only the instance whose listener is the sequencer does it, so that
// several instances do not repeat the same work.
func (s *server) prune(ctx context.Context) {
	// Checked every second, so that an instance that becomes the
	// sequencer (at start, or when another instance stops) prunes at once.
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var last time.Time
	for {
		if s.listener.Sequencer() && time.Since(last) >= time.Minute {
			s.pruneOnce(ctx)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (s *server) pruneOnce(ctx context.Context) {
	if err := db.PruneNotifications(ctx, s.pool, s.cfg.Retention); err != nil && ctx.Err() == nil {
		s.log.Error("prune notifications", "err", err)
	}
	if n, err := db.PruneRoomMessages(ctx, s.pool, s.cfg.Retention, 5000); err != nil && ctx.Err() == nil {
		s.log.Error("prune room messages", "err", err)
	} else if n > 0 {
		s.log.Info("pruned room messages", "count", n)
	}
	if _, err := s.sessions.PruneExpired(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("prune sessions", "err", err)
	}
	n, err := db.PruneEvents(ctx, s.pool, s.cfg.Retention, 5000)
	if err != nil && ctx.Err() == nil {
		s.log.Error("prune events", "err", err)
	} else if n > 0 {
		s.log.Info("dropped event log partitions", "count", n)
	}
}

// markDelivered records, in batches, which notifications reached a member,
// so they are no longer pending for the next socket that joins.
func (s *server) markDelivered(ctx context.Context) {
	ids := s.hub.DeliveredNotifications()
	for {
		var batch []int64
		select {
		case <-ctx.Done():
			return
		case id := <-ids:
			batch = append(batch, id)
		}
	drain:
		for len(batch) < 500 {
			select {
			case id := <-ids:
				batch = append(batch, id)
			default:
				break drain
			}
		}
		if err := db.MarkNotificationsDelivered(ctx, s.pool, batch); err != nil && ctx.Err() == nil {
			s.log.Error("mark notifications delivered", "err", err)
		}
	}
}

// servePprof serves net/http/pprof on addr until ctx ends.
func servePprof(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve pprof: %w", err)
	}
	return nil
}
