package db_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/dbtest"
)

// The tests live in package db_test because db/dbtest imports db.
func TestMain(m *testing.M) { dbtest.Main(m) }

// testTimeout bounds each test's queries, so that a lock a test did not
// expect fails the test instead of hanging the run.
const testTimeout = 30 * time.Second

// retention is what the tests pass to prune and claim; rows they age by
// past are beyond it.
const (
	retention = time.Hour
	past      = 2 * time.Hour
)

// setup gives t its own migrated database and a context bounded by
// testTimeout.
func setup(t *testing.T) (context.Context, *pgxpool.Pool) {
	t.Helper()
	pool, _ := dbtest.NewPool(t)
	return testContext(t), pool
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// begin starts a transaction that the test commits or rolls back itself;
// one left open is rolled back before the pool closes, since
// pgxpool.Pool.Close waits for every acquired connection.
func begin(t *testing.T, ctx context.Context, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() {
		if err := tx.Rollback(context.Background()); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
			t.Errorf("rollback: %v", err)
		}
	})
	return tx
}

// commit commits tx and numbers it, as the sequencer does right after
// commits (migration 00006): readers see events only once numbered.
func commit(t *testing.T, ctx context.Context, tx pgx.Tx) {
	t.Helper()
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	sequence(t, ctx, tx.Conn())
}

// sequence numbers what committed, as the elected listener does.
func sequence(t *testing.T, ctx context.Context, q db.Querier) {
	t.Helper()
	if _, err := db.Sequence(ctx, q); err != nil {
		t.Fatalf("Sequence: %v", err)
	}
}

// inTx runs fn in a transaction and commits it; commit numbers it.
func inTx(t *testing.T, ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx)) {
	t.Helper()
	tx := begin(t, ctx, pool)
	fn(tx)
	commit(t, ctx, tx)
}

// publish records a custom event whose data names it.
func publish(t *testing.T, ctx context.Context, q db.Querier, channel, event string) int64 {
	t.Helper()
	data, err := json.Marshal(map[string]string{"name": event})
	if err != nil {
		t.Fatal(err)
	}
	id, err := db.Publish(ctx, q, channel, event, data)
	if err != nil {
		t.Fatalf("Publish(%q, %q): %v", channel, event, err)
	}
	if _, inTx := q.(pgx.Tx); !inTx {
		sequence(t, ctx, q) // committed on its own
	}
	return id
}

// eventsAfter reads the log as a listener does, after numbering what
// committed (q a pool; a transaction reads what it sees).
func eventsAfter(t *testing.T, ctx context.Context, q db.Querier, seq, id int64, limit int) []db.EventRow {
	t.Helper()
	if _, inTx := q.(pgx.Tx); !inTx {
		sequence(t, ctx, q)
	}
	rows, err := db.EventsAfter(ctx, q, seq, id, limit)
	if err != nil {
		t.Fatalf("EventsAfter(%d, %d, %d): %v", seq, id, limit, err)
	}
	return rows
}

func lastPosition(t *testing.T, ctx context.Context, q db.Querier) (seq, id int64) {
	t.Helper()
	seq, id, err := db.LastPosition(ctx, q)
	if err != nil {
		t.Fatalf("LastPosition: %v", err)
	}
	return seq, id
}

func positionOf(t *testing.T, ctx context.Context, q db.Querier, id int64) int64 {
	t.Helper()
	seq, err := db.PositionOf(ctx, q, id)
	if err != nil {
		t.Fatalf("PositionOf(%d): %v", id, err)
	}
	return seq
}

func ids(rows []db.EventRow) []int64 {
	out := []int64{}
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

// exec runs SQL that sets up or inspects a test's state.
func exec(t *testing.T, ctx context.Context, q db.Querier, sql string, args ...any) int64 {
	t.Helper()
	tag, err := q.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
}

// count runs a query that returns one number.
func count(t *testing.T, ctx context.Context, q db.Querier, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := q.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// jsonEqual compares JSON by value: jsonb normalises spacing and key order.
func jsonEqual(t *testing.T, got, want []byte) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("unmarshal %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("unmarshal %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}
