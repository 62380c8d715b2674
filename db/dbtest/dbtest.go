// Package dbtest gives every database test its own real PostgreSQL database,
// so tests run in parallel against the real server without seeing each
// other's rows, and without mocks.
//
// Each test package starts one throwaway cluster in TestMain, migrates a
// template database once, and copies it per test with CREATE DATABASE …
// TEMPLATE, which is much faster than migrating each test's database:
//
//	func TestMain(m *testing.M) { dbtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		t.Parallel()
//		pool, _ := dbtest.NewPool(t)
//		…
//	}
//
// Without server binaries the tests skip with a one-line reason, except when
// the CI environment variable is set: CI must not pass by skipping.
package dbtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/cluster"
)

// templateDB is migrated once per test package; each test's database is a
// copy of it. Nobody may stay connected to it, or CREATE DATABASE fails.
const templateDB = "pgpush_template"

const (
	// startTimeout covers initdb, server start and the migrations.
	startTimeout = 2 * time.Minute

	// queryTimeout bounds CREATE and DROP DATABASE. Both wait up to 5 s for
	// other sessions to leave the database, so it leaves room for that.
	queryTimeout = 30 * time.Second

	// maxIdentifierBytes is PostgreSQL's NAMEDATALEN-1: longer names are
	// silently truncated, which could make two tests share a name.
	maxIdentifierBytes = 63
)

// state is what Main sets up for the package's tests. Main writes it before
// m.Run and after it returns, when no test runs, so tests read it without a
// lock; only the admin pool is created lazily and needs adminMu.
var (
	pgCluster  *cluster.Cluster
	skipReason string
	dbCounter  atomic.Int64

	adminMu   sync.Mutex
	adminPool *pgxpool.Pool
)

// Main runs a test package's tests against a fresh PostgreSQL cluster and
// exits with their result. Call it from TestMain. After the tests pass it
// also fails the run if goroutines leaked, since every long-lived goroutine
// must have an owner that stops it.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	c, err := start(ctx)
	cancel()
	switch {
	case errors.Is(err, cluster.ErrNoServerBinaries) && os.Getenv("CI") == "":
		skipReason = "dbtest: " + err.Error()
	case err != nil:
		fmt.Fprintf(os.Stderr, "dbtest: %v\n", err)
		return 1
	}
	pgCluster = c

	// pg_ctl starts the server in its own session, so ^C reaches only us;
	// stop the server rather than leave it running.
	stopOnSignal := stopClusterOnSignal(c)
	code := m.Run()
	stopOnSignal()

	closeAdminPool()
	if c != nil {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "dbtest: %v\n", err)
			code = 1
		}
	}
	// Leaks only matter when the tests passed: a failed test may well leave
	// goroutines behind, and that report would bury the real failure.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "dbtest: goroutines leaked after the tests passed: %v\n", err)
			code = 1
		}
	}
	return code
}

// start starts the cluster and migrates the template database. On error it
// leaves nothing running.
func start(ctx context.Context) (*cluster.Cluster, error) {
	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		return nil, err
	}
	if err := createTemplate(ctx, c); err != nil {
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	return c, nil
}

func createTemplate(ctx context.Context, c *cluster.Cluster) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to cluster: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	name := pgx.Identifier{templateDB}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}

	pool, err := db.Open(ctx, c.URL(templateDB))
	if err != nil {
		return fmt.Errorf("open template database: %w", err)
	}
	_, err = db.Migrate(ctx, pool, "up", nil)
	// CREATE DATABASE … TEMPLATE needs the template to have no sessions.
	pool.Close()
	if err != nil {
		return fmt.Errorf("migrate template database: %w", err)
	}

	// From now on nobody can connect to the template by mistake and so
	// break every later CREATE DATABASE.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+name+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("lock template database: %w", err)
	}
	return nil
}

// stopClusterOnSignal stops c and exits when the test binary is interrupted
// or terminated. The returned func ends the watch and waits for it, so that
// goleak does not see its goroutine.
func stopClusterOnSignal(c *cluster.Cluster) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case sig := <-sigs:
			if c != nil {
				if err := c.Stop(); err != nil {
					fmt.Fprintf(os.Stderr, "dbtest: %v\n", err)
				}
			}
			fmt.Fprintf(os.Stderr, "dbtest: %v: stopped postgres\n", sig)
			os.Exit(1)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		<-exited
	}
}

// admin returns the shared pool on database "postgres" that creates and
// drops the tests' databases, connecting on first use.
func admin(ctx context.Context) (*pgxpool.Pool, error) {
	adminMu.Lock()
	defer adminMu.Unlock()
	if adminPool != nil {
		return adminPool, nil
	}
	cfg, err := pgxpool.ParseConfig(pgCluster.URL("postgres"))
	if err != nil {
		return nil, fmt.Errorf("parse admin url: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "pgpush-dbtest"
	// A fault test's Restart kills these connections without the pool
	// noticing; a ping per acquire (cheap next to CREATE DATABASE) replaces
	// them before they fail a test's setup or cleanup.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect admin pool: %w", err)
	}
	adminPool = pool
	return pool, nil
}

func closeAdminPool() {
	adminMu.Lock()
	defer adminMu.Unlock()
	if adminPool != nil {
		adminPool.Close()
		adminPool = nil
	}
}

// New creates an empty, migrated database for t and returns its URL. The
// database is dropped when t ends, even if connections are still open. It is
// safe for concurrent use by parallel tests.
func New(t testing.TB) string {
	t.Helper()
	return createDatabase(t, templateDB)
}

// NewEmpty creates an empty database for t, copied from template0 and not
// migrated, and returns its URL; migration tests start from it. Like New it
// is dropped when t ends and is safe for concurrent use by parallel tests.
// template0 rather than the default template1, which a cluster's owner may
// have changed: an empty database must really be empty.
func NewEmpty(t testing.TB) string {
	t.Helper()
	return createDatabase(t, "template0")
}

func createDatabase(t testing.TB, template string) string {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if pgCluster == nil {
		t.Fatal("dbtest: no cluster: call dbtest.Main from TestMain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	pool, err := admin(ctx)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}

	name := dbName(dbCounter.Add(1), t.Name())
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE "+pgx.Identifier{template}.Sanitize()); err != nil {
		t.Fatalf("dbtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// t's context is done by now; cleanup gets its own deadline.
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		// FORCE ends sessions a test left open (PostgreSQL 13 and later).
		if _, err := pool.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	return pgCluster.URL(name)
}

// NewPool creates a database for t like New and opens a pool on it with
// db.Open. The pool is closed when t ends.
func NewPool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	url := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	pool, err := db.Open(ctx, url)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	// Registered after New's drop, so it runs before it.
	t.Cleanup(pool.Close)
	return pool, url
}

// Cluster returns the test package's cluster so that fault tests can restart
// it. It is nil when the tests are skipped for lack of server binaries.
// Restarting it closes the connections of every test running in parallel, so
// such tests should not call t.Parallel.
func Cluster() *cluster.Cluster {
	return pgCluster
}

// dbName makes a unique database name from the test's name. The counter
// keeps names unique after truncation and makes the name traceable to its
// test in pg_stat_activity and the server log.
func dbName(n int64, testName string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "t%d_", n)
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= maxIdentifierBytes {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
