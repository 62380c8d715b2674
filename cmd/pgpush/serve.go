package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/httpapi"
	"github.com/pgpush/pgpush/realtime"
	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/triggers"
)

// config is everything serve needs, filled from flags and the environment
// and checked before anything starts. Zero values mean the defaults.
type config struct {
	DatabaseURL    string
	ListenAddr     string        // ":3000"
	SessionSecret  []byte        // >= 32 bytes
	AllowedOrigins []string      // empty: the request's own host
	Retention      time.Duration // 24h
	NoMigrate      bool
	ShutdownWait   time.Duration // 10s
	HashCost       int           // bcrypt cost; 0: session's default
	Hub            realtime.Options
}

func configFromEnv(getenv env) (config, error) {
	cfg := config{
		DatabaseURL:   getenv("DATABASE_URL"),
		ListenAddr:    getenv("LISTEN_ADDR"),
		SessionSecret: []byte(getenv("SESSION_SECRET")),
		Retention:     24 * time.Hour,
		ShutdownWait:  10 * time.Second,
	}
	if cfg.ListenAddr == "" {
		port := getenv("PORT")
		if port == "" {
			port = "3000"
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return cfg, fmt.Errorf("invalid PORT %q: want a number from 0 to 65535", port)
		}
		cfg.ListenAddr = ":" + port
	}
	for _, o := range strings.Split(getenv("ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.AllowedOrigins = append(cfg.AllowedOrigins, o)
		}
	}
	if v := getenv("EVENT_RETENTION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("invalid EVENT_RETENTION %q: want a duration such as 24h", v)
		}
		cfg.Retention = d
	}
	if v := getenv("SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("invalid SHUTDOWN_TIMEOUT %q: want a duration such as 10s", v)
		}
		cfg.ShutdownWait = d
	}
	return cfg, nil
}

func (c config) check() error {
	if c.DatabaseURL == "" {
		return errors.New("no database: set DATABASE_URL or pass --database-url")
	}
	if len(c.SessionSecret) < session.MinSecretBytes {
		return fmt.Errorf("SESSION_SECRET must be at least %d bytes (got %d); generate one with: openssl rand -base64 48",
			session.MinSecretBytes, len(c.SessionSecret))
	}
	return nil
}

func runServe(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("serve", "pgpush serve [--no-migrate]   (configured by the environment: DATABASE_URL, SESSION_SECRET, PORT, ...)",
		"DATABASE_URL=postgres://localhost/shop SESSION_SECRET=$(openssl rand -base64 48) pgpush serve", cio)
	url := databaseURLFlag(fs, cio)
	noMigrate := fs.Bool("no-migrate", false, "do not apply pending migrations at start")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	cfg, err := configFromEnv(cio.getenv)
	if err != nil {
		return err
	}
	cfg.DatabaseURL, cfg.NoMigrate = *url, *noMigrate
	if err := cfg.check(); err != nil {
		return err
	}
	logger := newLogger(cio.stderr, cio.getenv)
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	return serve(ctx, cfg, ln, logger, nil)
}

// serve runs the server on ln until ctx ends, then shuts down: stop
// accepting, close sockets with 1001, stop the listener. started, when not
// nil, is called once the server accepts connections.
func serve(ctx context.Context, cfg config, ln net.Listener, logger *slog.Logger, started func()) error {
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
	sessions, err := session.NewStore(pool, session.Options{Secret: cfg.SessionSecret, HashCost: cfg.HashCost})
	if err != nil {
		return err
	}
	policy := session.NewPolicy(pool)
	if err := policy.Reload(ctx); err != nil {
		return err
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
			if id, ok := strings.CutPrefix(payload, session.LogoutPayloadPrefix); ok {
				hub.CloseSession(id)
				return
			}
			if payload == triggers.ReloadPayload {
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

	api := &httpapi.Server{
		Pool:           pool,
		Sessions:       sessions,
		Policy:         policy,
		Hub:            hub,
		ListenerReady:  listener.Ready,
		AllowedOrigins: cfg.AllowedOrigins,
		Logger:         logger,
		Started:        time.Now(),
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
			}
		}
	})
	g.Go(func() error { return prune(gctx, pool, cfg.Retention, logger) })
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

// prune deletes events past the retention every minute (and at start).
func prune(ctx context.Context, pool db.Querier, retention time.Duration, logger *slog.Logger) error {
	ticker := time.NewTicker(time.Minute)
	defer ticker.Stop()
	for {
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
