// Package db owns pgpush's connection to PostgreSQL: opening pools with the
// right application_name, applying pgpush's own schema with goose, and the
// queries on the event log that the listener and resuming clients read.
package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// ApplicationName is what every pgpush connection but the listener shows in
// pg_stat_activity.
const ApplicationName = "pgpush"

// ListenerApplicationName marks the one LISTEN connection per instance.
const ListenerApplicationName = "pgpush-listener"

// migrationTable keeps goose's bookkeeping out of the application's names.
const migrationTable = "pgpush_schema_version"

//go:embed migrations/*.sql
var migrations embed.FS

// ParseConfig parses a connection string and names the connection so that
// operators can tell pgpush's connections apart.
func ParseConfig(url, applicationName string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", redact(err))
	}
	cfg.RuntimeParams["application_name"] = applicationName
	return cfg, nil
}

// Open connects a pool and checks that the database answers, so that a bad
// URL fails at start rather than at the first request.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", redact(err))
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = ApplicationName
	// pgpush's queries are short walks down indexes, but on a large log
	// PostgreSQL's estimates for them pass jit_above_cost, and compiling
	// costs more than the query: a replay page (ChannelEventsBetween) took
	// 498 ms with JIT and 103 ms without, on a scratch log of 2.5 million
	// commits (2026-12-01). Set after connecting, not as a startup
	// parameter, which PgBouncer refuses.
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `SET jit = off`)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// redact drops the parse error's text, which pgx builds from the URL and so
// may carry a password.
func redact(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if inner := pe.Unwrap(); inner != nil {
			return fmt.Errorf("invalid connection string: %w", inner)
		}
		return errors.New("invalid connection string")
	}
	return err
}

// MigrationStatus is one migration and whether it has been applied.
type MigrationStatus struct {
	Version int64
	Name    string
	Applied bool
}

// Migrate runs goose in the given direction ("up", "down") or reports
// "status". A session-level advisory lock makes concurrent starts of several
// instances safe: the second waits and then finds nothing pending.
func Migrate(ctx context.Context, pool *pgxpool.Pool, direction string, logger *slog.Logger) ([]MigrationStatus, error) {
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	provider, err := newProvider(sqlDB, logger)
	if err != nil {
		return nil, err
	}
	defer provider.Close()
	switch direction {
	case "up":
		if _, err := provider.Up(ctx); err != nil {
			return nil, fmt.Errorf("migrate up: %w", err)
		}
	case "down":
		if _, err := provider.Down(ctx); err != nil && !errors.Is(err, goose.ErrNoNextVersion) {
			return nil, fmt.Errorf("migrate down: %w", err)
		}
	case "status":
	default:
		return nil, fmt.Errorf("migrate: unknown direction %q (want up, down or status)", direction)
	}
	statuses, err := provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(statuses))
	for _, s := range statuses {
		out = append(out, MigrationStatus{
			Version: s.Source.Version,
			Name:    s.Source.Path,
			Applied: s.State == goose.StateApplied,
		})
	}
	return out, nil
}

func newProvider(sqlDB *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	// Retry every second (for up to 5 minutes) rather than goose's 5 s, so
	// instances starting together wait for each other only briefly.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys,
		goose.WithSessionLocker(locker),
		goose.WithTableName(migrationTable),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(logger),
	)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return provider, nil
}
