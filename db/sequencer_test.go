package db_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
)

// sequenceEvents runs one sequencer round that returns what it numbered.
func sequenceEvents(t *testing.T, ctx context.Context, pool *pgxpool.Pool, limit int) []db.EventRow {
	t.Helper()
	rows, err := db.SequenceEvents(ctx, pool, false, limit)
	if err != nil {
		t.Fatalf("SequenceEvents: %v", err)
	}
	return rows
}

// TestSequenceEventsReturnsWhatItNumbered: a round returns the events of
// the transactions it numbered, in delivery order, the same rows as
// EventsAfter reads. A transaction that was in progress at the previous
// round's snapshot is numbered in the round in which it commits (it is the
// oldest end of the xid range that round reads), in the order of its last
// event id among the others, as sequence() always ordered a batch.
func TestSequenceEventsReturnsWhatItNumbered(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	if rows := sequenceEvents(t, ctx, pool, 10); len(rows) != 0 {
		t.Fatalf("a round over an empty log returned %v", ids(rows))
	}

	long := begin(t, ctx, pool)
	l := publish(t, ctx, long, "c", "long")
	// A round while it is in progress: its xid goes into the snapshot's
	// in-progress list.
	a := publish(t, ctx, pool, "c", "a") // publish numbers it (a round)
	tx := begin(t, ctx, pool)
	b1 := publish(t, ctx, tx, "c", "b1")
	b2 := publish(t, ctx, tx, "d", "b2")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := long.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	got := sequenceEvents(t, ctx, pool, 10)
	if want := []int64{l, b1, b2}; !slices.Equal(ids(got), want) {
		t.Fatalf("round after two commits returned %v, want %v", ids(got), want)
	}
	seqA := positionOf(t, ctx, pool, a)
	if got[0].Seq != seqA+1 || got[1].Seq != seqA+2 || got[2].Seq != seqA+2 {
		t.Errorf("seqs %d %d %d after A's %d, want %d %d %d", got[0].Seq, got[1].Seq, got[2].Seq, seqA, seqA+1, seqA+2, seqA+2)
	}
	if want := eventsAfter(t, ctx, pool, seqA, a, 10); !slices.EqualFunc(got, want, sameEvent) {
		t.Errorf("round returned %v, EventsAfter reads %v", got, want)
	}
	if rows := sequenceEvents(t, ctx, pool, 10); len(rows) != 0 {
		t.Fatalf("a second round returned %v, want nothing", ids(rows))
	}
}

// TestSequenceEventsLimit: a round numbers every committed transaction
// but returns at most limit events; the rest are in the log for
// EventsAfter, and no later round returns them again.
func TestSequenceEventsLimit(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	var want []int64
	for range 3 {
		tx := begin(t, ctx, pool)
		for range 2 {
			want = append(want, publish(t, ctx, tx, "c", "e"))
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := sequenceEvents(t, ctx, pool, 4)
	if !slices.Equal(ids(got), want[:4]) {
		t.Fatalf("round with limit 4 returned %v, want %v", ids(got), want[:4])
	}
	last := got[len(got)-1]
	if rest := eventsAfter(t, ctx, pool, last.Seq, last.ID, 10); !slices.Equal(ids(rest), want[4:]) {
		t.Fatalf("EventsAfter the round's last event = %v, want %v", ids(rest), want[4:])
	}
	if rows := sequenceEvents(t, ctx, pool, 4); len(rows) != 0 {
		t.Fatalf("next round returned %v, want nothing", ids(rows))
	}
}

// TestSequenceEventsWakeRaisesFlag: a waking round raises the "awake"
// flag on its session, so writers skip the doorbell; lowering it stays
// with SequencerRest.
func TestSequenceEventsWakeRaisesFlag(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := db.SequenceEvents(ctx, conn, true, 10); err != nil {
		t.Fatalf("SequenceEvents(wake): %v", err)
	}
	var held bool
	err = pool.QueryRow(ctx, `SELECT NOT pg_try_advisory_lock_shared(7370707573680003)`).Scan(&held)
	if err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Fatal("the awake flag is down after a waking round")
	}
	if _, idle, err := db.SequencerRest(ctx, conn); err != nil || !idle {
		t.Fatalf("SequencerRest = idle %v, %v; want idle", idle, err)
	}
}

func sameEvent(a, b db.EventRow) bool {
	return a.Seq == b.Seq && a.ID == b.ID && a.Channel == b.Channel && a.Event == b.Event &&
		string(a.Data) == string(b.Data) && a.CreatedAt.Equal(b.CreatedAt) && a.Xid == b.Xid
}
