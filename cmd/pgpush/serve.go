package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pgpush/pgpush/httpapi"
	"github.com/pgpush/pgpush/session"
)

func configFromEnv(getenv env) (serverConfig, error) {
	cfg := serverConfig{
		DatabaseURL:   getenv("DATABASE_URL"),
		ListenAddr:    getenv("LISTEN_ADDR"),
		SessionSecret: []byte(getenv("SESSION_SECRET")),
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
	if v := getenv("TRUSTED_PROXIES"); v != "" {
		proxies, err := httpapi.ParseProxies(v)
		if err != nil {
			return cfg, fmt.Errorf("invalid TRUSTED_PROXIES %q: want comma-separated addresses or CIDRs", v)
		}
		cfg.TrustedProxies = proxies
	}
	if v := getenv("SOCKETS_PER_ADDRESS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("invalid SOCKETS_PER_ADDRESS %q: want a positive number", v)
		}
		cfg.Limits.SocketsPerAddress = n
	}
	if v := getenv("SNAPSHOT_MAX_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("invalid SNAPSHOT_MAX_ROWS %q: want a positive number", v)
		}
		cfg.Hub.SnapshotMaxRows = n
	}
	if v := getenv("FANOUT_WRITE_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Second {
			return cfg, fmt.Errorf("invalid FANOUT_WRITE_DELAY %q: want a duration from 0 to 1s, such as 50ms", v)
		}
		cfg.Hub.WriteDelay = d
	}
	cfg.PprofAddr = getenv("PPROF_ADDR")
	if v := getenv("SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("invalid SHUTDOWN_TIMEOUT %q: want a duration such as 10s", v)
		}
		cfg.ShutdownWait = d
	}
	return cfg, nil
}

func checkConfig(c serverConfig) error {
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
	if err := checkConfig(cfg); err != nil {
		return err
	}
	logger := newLogger(cio.stderr, cio.getenv)
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	return runServer(ctx, cfg, ln, logger, nil)
}
