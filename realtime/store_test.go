package realtime

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/dbtest"
)

// logBundle is a database whose event log a test fills by hand.
type logBundle struct {
	ctx   context.Context
	pool  *pgxpool.Pool
	store PoolStore
}

func setupLog(t *testing.T) logBundle {
	t.Helper()
	pool, _ := dbtest.NewPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return logBundle{ctx: ctx, pool: pool, store: PoolStore{DB: pool}}
}

func (b logBundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := b.pool.Exec(b.ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// write commits one transaction with an event per created_at (NULL: now),
// as a writer would, and returns the event ids.
func (b logBundle) write(t *testing.T, createdAt ...*time.Time) []int64 {
	t.Helper()
	var ids []int64
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		for _, at := range createdAt {
			var id int64
			if err := tx.QueryRow(b.ctx, `
				INSERT INTO pgpush.events (channel, event, data, created_at)
				VALUES ('log', 'e', '{}', coalesce($1, statement_timestamp())) RETURNING id`, at).Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("write events: %v", err)
	}
	return ids
}

func (b logBundle) sequence(t *testing.T) {
	t.Helper()
	if _, err := db.Sequence(b.ctx, b.pool); err != nil {
		t.Fatalf("Sequence: %v", err)
	}
}

func (b logBundle) prune(t *testing.T, retention time.Duration) int {
	t.Helper()
	n, err := db.PruneEvents(b.ctx, b.pool, retention, 100)
	if err != nil {
		t.Fatalf("PruneEvents: %v", err)
	}
	return n
}

// oldPartition makes the partition of the hour that began ago, as the
// sequencer's instance did then.
func (b logBundle) oldPartition(t *testing.T, ago time.Duration) time.Time {
	t.Helper()
	hour := time.Now().Add(-ago).UTC().Truncate(time.Hour)
	b.exec(t, fmt.Sprintf(`CREATE TABLE pgpush.events_old PARTITION OF pgpush.events FOR VALUES FROM ('%s') TO ('%s')`,
		hour.Format(time.RFC3339), hour.Add(time.Hour).Format(time.RFC3339)))
	return hour.Add(time.Minute)
}

// TestRetentionDropsPartitions: events older than the retention go with
// their whole partition; newer ones stay and can be resumed from; the
// partitions of this hour and the coming two exist (migration 00012).
func TestRetentionDropsPartitions(t *testing.T) {
	t.Parallel()
	b := setupLog(t)
	old := b.oldPartition(t, 72*time.Hour)
	oldIDs := b.write(t, &old)
	newIDs := b.write(t, nil)
	b.sequence(t)
	if n := b.prune(t, 24*time.Hour); n != 1 {
		t.Fatalf("PruneEvents dropped %d partitions, want 1", n)
	}
	var gone bool
	if err := b.pool.QueryRow(b.ctx, `SELECT to_regclass('pgpush.events_old') IS NULL`).Scan(&gone); err != nil || !gone {
		t.Fatalf("the old partition is still there (err %v)", err)
	}
	if _, err := b.store.PositionOf(b.ctx, oldIDs[0]); !errors.Is(err, ErrResyncRequired) {
		t.Fatalf("PositionOf(pruned event) error = %v, want ErrResyncRequired", err)
	}
	if _, err := b.store.PositionOf(b.ctx, newIDs[0]); err != nil {
		t.Fatalf("PositionOf(kept event) = %v, want its position", err)
	}
	var ahead int
	if err := b.pool.QueryRow(b.ctx, `
		SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'pgpush.events'::regclass AND c.relname ~ '^events_[0-9]{8}h[0-9]{2}$'`).Scan(&ahead); err != nil {
		t.Fatal(err)
	}
	if ahead < 3 {
		t.Fatalf("%d hourly partitions, want this hour's and the coming two", ahead)
	}
}

// TestRetentionNeverLeavesPartialReplay: a transaction that wrote to a
// partition that is dropped, and was numbered after an event that stays,
// takes that event's resume id with it: replaying from there would miss
// part of the transaction.
func TestRetentionNeverLeavesPartialReplay(t *testing.T) {
	t.Parallel()
	b := setupLog(t)
	old := b.oldPartition(t, 72*time.Hour)
	b.write(t, &old)
	kept := b.write(t, nil)
	b.sequence(t)
	longTx := b.write(t, &old, nil) // began writing long ago, committed now
	b.sequence(t)
	b.prune(t, 24*time.Hour)
	if _, err := b.store.PositionOf(b.ctx, kept[0]); !errors.Is(err, ErrResyncRequired) {
		t.Fatalf("PositionOf(event before the long transaction) error = %v, want ErrResyncRequired", err)
	}
	if _, err := b.store.PositionOf(b.ctx, longTx[1]); !errors.Is(err, ErrResyncRequired) {
		t.Fatalf("PositionOf(the long transaction's kept event) error = %v, want ErrResyncRequired", err)
	}
	after := b.write(t, nil)
	b.sequence(t)
	if _, err := b.store.PositionOf(b.ctx, after[0]); err != nil {
		t.Fatalf("PositionOf(event after the prune) = %v, want its position", err)
	}
}

// TestRetentionWaitsForNumbering: a partition whose writer has committed
// but is not numbered yet stays, or its events would be lost.
func TestRetentionWaitsForNumbering(t *testing.T) {
	t.Parallel()
	b := setupLog(t)
	old := b.oldPartition(t, 72*time.Hour)
	ids := b.write(t, &old)
	if n := b.prune(t, 24*time.Hour); n != 0 {
		t.Fatalf("PruneEvents dropped %d partitions before their commits were numbered, want 0", n)
	}
	b.sequence(t)
	if pos, err := b.store.PositionOf(b.ctx, ids[0]); err != nil || pos.ID != ids[0] {
		t.Fatalf("PositionOf = %+v, %v; want the event", pos, err)
	}
}

// TestRetentionOfTheDefaultPartition: events written while no instance
// made their hour's partition land in the default partition, and go by
// DELETE once past the retention.
func TestRetentionOfTheDefaultPartition(t *testing.T) {
	t.Parallel()
	b := setupLog(t)
	old := time.Now().Add(-72 * time.Hour)
	ids := b.write(t, &old)
	b.sequence(t)
	var inDefault int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM pgpush.events_default`).Scan(&inDefault); err != nil || inDefault != 1 {
		t.Fatalf("default partition holds %d events (err %v), want 1", inDefault, err)
	}
	b.prune(t, 24*time.Hour)
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM pgpush.events_default`).Scan(&inDefault); err != nil || inDefault != 0 {
		t.Fatalf("default partition holds %d events after the prune (err %v), want 0", inDefault, err)
	}
	if _, err := b.store.PositionOf(b.ctx, ids[0]); !errors.Is(err, ErrResyncRequired) {
		t.Fatalf("PositionOf(pruned event) error = %v, want ErrResyncRequired", err)
	}
}

// TestReplayPagesByBytes: a replay of large events reads pages bounded by
// bytes, not only rows, and still delivers every event once, in order.
func TestReplayPagesByBytes(t *testing.T) {
	t.Parallel()
	b := setupLog(t)
	const events, size = 12, 900 << 10 // 10.8 MB: three pages of ~4 MiB
	var want []int64
	for i := range events {
		var id int64
		if err := b.pool.QueryRow(b.ctx, `SELECT pgpush.publish('big', 'e', jsonb_build_object('n', $1::int, 'pad', repeat('x', $2)))`, i, size).Scan(&id); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	if _, err := db.Sequence(b.ctx, b.pool); err != nil {
		t.Fatal(err)
	}
	end, err := b.store.PositionOf(b.ctx, want[len(want)-1])
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	err = b.store.Replay(b.ctx, []string{"big"}, Position{}, end, func(ev *Event) error {
		got = append(got, ev.Pos.ID)
		return nil
	})
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Replay = %v, %v; want %v", got, err, want)
	}

	rows, err := db.ChannelEventsBetween(b.ctx, b.pool, []string{"big"}, 0, 0, end.Seq, end.ID, 500, 2*size)
	if err != nil || len(rows) != 2 {
		t.Fatalf("a page bounded to two rows' bytes read %d rows, %v; want 2", len(rows), err)
	}
}
