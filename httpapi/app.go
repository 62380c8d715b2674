package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/realtime"
	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/triggers"
	"github.com/pgpush/pgpush/web"
)

// Config is everything Run needs. cmd/pgpush fills it from flags and the
// environment and checks it before anything starts. Zero values mean the
// defaults noted.
type Config struct {
	DatabaseURL    string
	ListenAddr     string        // ":3000"
	SessionSecret  []byte        // >= 32 bytes
	AllowedOrigins []string      // empty: the request's own host
	Retention      time.Duration // 24h
	NoMigrate      bool
	ShutdownWait   time.Duration // 10s
	HashCost       int           // bcrypt cost; 0: session's default
	Hub            realtime.Options
	TrustedProxies Proxies // peers trusted for X-Forwarded-For/-Proto; empty: none
	Limits         Limits
	// SessionCheckEvery is how often open sockets' sessions are checked
	// against the database. 0 means 30s.
	SessionCheckEvery time.Duration
	// PprofAddr, when set (e.g. 127.0.0.1:6060), serves net/http/pprof there,
	// on its own listener so it is never exposed on the public port.
	PprofAddr string
}

// Run runs the server on ln until ctx ends, then shuts down: stop
// accepting, close sockets with 1001, stop the listener. started, when not
// nil, is called once the server accepts connections.
func Run(ctx context.Context, cfg Config, ln net.Listener, logger *slog.Logger, started func()) error {
	defer ln.Close()
	pool, err := db.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if !cfg.NoMigrate {
		if _, err := db.Migrate(ctx, pool, "up", logger); err != nil {
			return err
		}
	}
	sessions, err := session.NewStore(pool, session.Options{Secret: cfg.SessionSecret, HashCost: cfg.HashCost, Secure: cfg.TrustedProxies.Secure})
	if err != nil {
		return err
	}
	policy := session.NewPolicy(pool)
	if err := policy.Reload(ctx); err != nil {
		return err
	}
	if cfg.ShutdownWait <= 0 {
		cfg.ShutdownWait = 10 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 24 * time.Hour
	}
	if cfg.SessionCheckEvery <= 0 {
		cfg.SessionCheckEvery = 30 * time.Second
	}
	if cfg.Hub.Retention <= 0 {
		cfg.Hub.Retention = cfg.Retention
	}
	hub := realtime.NewHub(cfg.Hub, policy, realtime.PoolStore{DB: pool}, logger)

	connConfig, err := db.ParseConfig(cfg.DatabaseURL, db.ListenerApplicationName)
	if err != nil {
		return err
	}
	// Reloads run off the listener's goroutine so that a slow query never
	// delays event delivery; a burst of them collapses into one.
	reload := make(chan struct{}, 1)
	listener := &realtime.Listener{
		ConnConfig:     connConfig,
		Dispatch:       hub.Dispatch,
		ControlChannel: triggers.ControlChannel,
		Logger:         logger,
		Control: func(payload string) {
			msg, err := realtime.ParseControl(payload)
			switch {
			case err != nil:
				logger.Warn("ignored control notification", "err", err)
			case msg.SessionID != "":
				hub.CloseSession(msg.SessionID)
			case msg.Reload:
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		},
	}
	listenConn, start, err := listener.Start(ctx)
	if err != nil {
		return err
	}
	hub.SetPosition(start)
	hub.CheckSessionsOnOpen(func(ctx context.Context, id string) (bool, error) {
		live, err := sessions.LiveSessions(ctx, []string{id})
		return live[id], err
	})

	api := &Server{
		Pool:           pool,
		Sessions:       sessions,
		Policy:         policy,
		Hub:            hub,
		ListenerReady:  listener.Ready,
		AllowedOrigins: cfg.AllowedOrigins,
		Logger:         logger,
		Static:         web.Handler(),
		Metrics:        newMetrics(hub, listener),
		Proxies:        cfg.TrustedProxies,
		Limits:         cfg.Limits,
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return listener.Run(gctx, listenConn) })
	g.Go(func() error {
		// Grants are reloaded when announced; sessions are also checked
		// every 30 s, which catches logouts announced while this
		// instance's listener was reconnecting, and expired sessions.
		sessionCheck := time.NewTicker(cfg.SessionCheckEvery)
		defer sessionCheck.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-reload:
				if err := policy.Reload(gctx); err != nil {
					logger.Error("reload grants", "err", err)
					continue
				}
				hub.Reauthorize(gctx)
				if !policy.AnonymousAllowed() {
					hub.CloseAnonymous("authentication required")
				}
			case <-sessionCheck.C:
			}
			checked := hub.SessionIDs()
			live, err := sessions.LiveSessions(gctx, checked)
			if err != nil {
				logger.Error("check sessions", "err", err)
				continue
			}
			if n := hub.CloseEndedSessions(checked, live); n > 0 {
				logger.Info("closed sockets of ended sessions", "count", n)
			}
		}
	})
	if cfg.PprofAddr != "" {
		pprofSrv := &http.Server{Addr: cfg.PprofAddr, Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			if err := pprofSrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve pprof: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			return pprofSrv.Close()
		})
	}
	g.Go(func() error { return prune(gctx, pool, sessions, cfg.Retention, logger) })
	g.Go(func() error {
		hub.RunStatsPush(gctx, time.Second)
		return nil
	})
	g.Go(func() error {
		markDelivered(gctx, pool, hub.DeliveredNotifications(), logger)
		return nil
	})
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, done := context.WithTimeout(context.WithoutCancel(gctx), cfg.ShutdownWait)
		defer done()
		if serr := api.Shutdown(shutdownCtx); serr != nil {
			logger.Warn("socket.io sessions still open at shutdown deadline", "err", serr)
		}
		err := srv.Shutdown(shutdownCtx)
		if herr := hub.Shutdown(shutdownCtx); herr != nil {
			logger.Warn("sockets still open at shutdown deadline", "err", herr)
		}
		if err != nil {
			_ = srv.Close()
		}
		return nil
	})
	logger.Info("pgpush serving", "addr", ln.Addr().String())
	if started != nil {
		started()
	}
	return g.Wait()
}

// prune deletes events past the retention, and expired sessions, every
// minute (and at start).
func prune(ctx context.Context, pool db.Querier, sessions *session.Store, retention time.Duration, logger *slog.Logger) error {
	ticker := time.NewTicker(time.Minute)
	defer ticker.Stop()
	for {
		if err := db.PruneNotifications(ctx, pool, retention); err != nil && ctx.Err() == nil {
			logger.Error("prune notifications", "err", err)
		}
		if _, err := sessions.PruneExpired(ctx); err != nil && ctx.Err() == nil {
			logger.Error("prune sessions", "err", err)
		}
		n, err := db.PruneEvents(ctx, pool, retention, 5000)
		if err != nil && ctx.Err() == nil {
			logger.Error("prune events", "err", err)
		} else if n > 0 {
			logger.Info("pruned events", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// markDelivered records, in batches, which notifications reached a member,
// so they are no longer pending for the next socket that joins.
func markDelivered(ctx context.Context, pool db.Querier, ids <-chan int64, logger *slog.Logger) {
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
		if err := db.MarkNotificationsDelivered(ctx, pool, batch); err != nil && ctx.Err() == nil {
			logger.Error("mark notifications delivered", "err", err)
		}
	}
}

func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
