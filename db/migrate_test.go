package db_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/dbtest"
)

// embeddedMigrations lists the migration files, which Migrate embeds, so
// that adding one does not need this test changed.
func embeddedMigrations(t *testing.T) []db.MigrationStatus {
	t.Helper()
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	var out []db.MigrationStatus
	for _, e := range entries {
		prefix, _, ok := strings.Cut(e.Name(), "_")
		if !ok || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		v, err := strconv.ParseInt(prefix, 10, 64)
		if err != nil {
			t.Fatalf("migration %s: %v", e.Name(), err)
		}
		out = append(out, db.MigrationStatus{Version: v, Name: e.Name()})
	}
	if len(out) == 0 {
		t.Fatal("no migrations found")
	}
	return out
}

// appliedUpTo is the status with the first n migrations applied.
func appliedUpTo(all []db.MigrationStatus, n int) []db.MigrationStatus {
	out := slices.Clone(all)
	for i := range out {
		out[i].Applied = i < n
	}
	return out
}

func migrate(t *testing.T, ctx context.Context, pool *pgxpool.Pool, direction string) []db.MigrationStatus {
	t.Helper()
	got, err := db.Migrate(ctx, pool, direction, nil)
	if err != nil {
		t.Fatalf("Migrate(%q): %v", direction, err)
	}
	return got
}

func openEmpty(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := db.Open(testContext(t), dbtest.NewEmpty(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func schemaExists(t *testing.T, ctx context.Context, pool *pgxpool.Pool) bool {
	t.Helper()
	return count(t, ctx, pool, `SELECT count(*) FROM pg_namespace WHERE nspname = 'pgpush'`) == 1
}

// TestMigrateRoundTrip applies every migration, takes them back one at a
// time, and applies them again: every Down must undo its Up.
func TestMigrateRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := openEmpty(t)
	all := embeddedMigrations(t)
	n := len(all)

	if got, want := migrate(t, ctx, pool, "status"), appliedUpTo(all, 0); !slices.Equal(got, want) {
		t.Fatalf("status of an empty database = %+v, want %+v", got, want)
	}
	if got, err := db.Migrate(ctx, pool, "sideways", nil); err == nil || !strings.Contains(err.Error(), `"sideways"`) {
		t.Fatalf("Migrate(sideways) = %+v, %v, want an error naming the direction", got, err)
	}
	if schemaExists(t, ctx, pool) {
		t.Fatal("Migrate(sideways) created schema pgpush")
	}
	if got, want := migrate(t, ctx, pool, "up"), appliedUpTo(all, n); !slices.Equal(got, want) {
		t.Fatalf("up = %+v, want %+v", got, want)
	}
	if got, want := migrate(t, ctx, pool, "up"), appliedUpTo(all, n); !slices.Equal(got, want) {
		t.Fatalf("up when up to date = %+v, want %+v", got, want)
	}
	for applied := n - 1; applied >= 0; applied-- {
		if got, want := migrate(t, ctx, pool, "down"), appliedUpTo(all, applied); !slices.Equal(got, want) {
			t.Fatalf("down to %d applied = %+v, want %+v", applied, got, want)
		}
	}
	if schemaExists(t, ctx, pool) {
		t.Error("schema pgpush exists after every migration was taken back")
	}
	// Nothing left to take back is not an error.
	if got, want := migrate(t, ctx, pool, "down"), appliedUpTo(all, 0); !slices.Equal(got, want) {
		t.Fatalf("down with nothing applied = %+v, want %+v", got, want)
	}
	if got, want := migrate(t, ctx, pool, "up"), appliedUpTo(all, n); !slices.Equal(got, want) {
		t.Fatalf("up again = %+v, want %+v", got, want)
	}
	if got, want := migrate(t, ctx, pool, "status"), appliedUpTo(all, n); !slices.Equal(got, want) {
		t.Fatalf("status = %+v, want %+v", got, want)
	}
	// The schema works again: an event is recorded and sequenced.
	id := publish(t, ctx, pool, "c", "after-round-trip")
	positionOf(t, ctx, pool, id)
}

// TestMigrateConcurrently starts two instances' migrations at once on an
// empty database: goose's advisory lock makes one wait for the other, which
// then finds nothing to do. Without it both would create the same tables.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pools := []*pgxpool.Pool{openEmpty(t), nil}
	// Two pools, like two instances; both on the same database.
	var err error
	pools[1], err = pgxpool.New(ctx, pools[0].Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pools[1].Close)

	start := make(chan struct{})
	errs := make([]error, len(pools))
	var wg sync.WaitGroup
	for i, pool := range pools {
		wg.Go(func() {
			<-start
			_, errs[i] = db.Migrate(ctx, pool, "up", nil)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate(up) #%d: %v", i, err)
		}
	}
	all := embeddedMigrations(t)
	if got, want := migrate(t, ctx, pools[0], "status"), appliedUpTo(all, len(all)); !slices.Equal(got, want) {
		t.Fatalf("status = %+v, want %+v", got, want)
	}
	if n := count(t, ctx, pools[0], `
		SELECT count(*) FROM (SELECT version_id FROM pgpush_schema_version
		WHERE version_id > 0 GROUP BY version_id HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("%d migrations recorded more than once, want 0", n)
	}
}
