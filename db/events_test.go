package db_test

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgpush/pgpush/db"
)

// TestEventsAfterOrdersByCommit is the case the (seq, id) position exists
// for: transaction A takes its event id before B does but commits after
// it. A reader that paged by id would have passed A's id when it read B,
// and never deliver A; by commit sequence A comes after B.
func TestEventsAfterOrdersByCommit(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	if seq, id := lastPosition(t, ctx, pool); seq != 0 || id != 0 {
		t.Fatalf("LastPosition of an empty log = (%d, %d), want (0, 0)", seq, id)
	}

	txA := begin(t, ctx, pool)
	a := publish(t, ctx, txA, "c", "a")
	var b1, b2 int64
	inTx(t, ctx, pool, func(tx pgx.Tx) {
		b1 = publish(t, ctx, tx, "c", "b1")
		b2 = publish(t, ctx, tx, "c", "b2")
	})
	if a >= b1 {
		t.Fatalf("ids a=%d, b1=%d: want A's id taken first", a, b1)
	}

	// A listener starting now begins after B, not knowing A exists.
	seqB, idB := lastPosition(t, ctx, pool)
	if idB != b2 {
		t.Fatalf("LastPosition after B = (%d, %d), want id %d", seqB, idB, b2)
	}
	if got, want := ids(eventsAfter(t, ctx, pool, 0, 0, 10)), []int64{b1, b2}; !slices.Equal(got, want) {
		t.Fatalf("EventsAfter(0, 0) before A commits = %v, want %v", got, want)
	}

	commit(t, ctx, txA)
	seqA, idA := lastPosition(t, ctx, pool)
	if seqA <= seqB || idA != a {
		t.Fatalf("LastPosition after A = (%d, %d), want seq > %d and id %d", seqA, idA, seqB, a)
	}
	after := eventsAfter(t, ctx, pool, seqB, idB, 10)
	if got, want := ids(after), []int64{a}; !slices.Equal(got, want) {
		t.Fatalf("EventsAfter(%d, %d) = %v, want %v: the late commit was skipped", seqB, idB, got, want)
	}
	if after[0].Seq != seqA {
		t.Errorf("seq of A's event = %d, want %d", after[0].Seq, seqA)
	}
	all := eventsAfter(t, ctx, pool, 0, 0, 10)
	if got, want := ids(all), []int64{b1, b2, a}; !slices.Equal(got, want) {
		t.Fatalf("EventsAfter(0, 0) = %v, want %v (commit order)", got, want)
	}
	if all[0].Seq != seqB || all[1].Seq != seqB {
		t.Errorf("seqs of B's events = %d, %d, want both %d: one per transaction", all[0].Seq, all[1].Seq, seqB)
	}
	if rows := eventsAfter(t, ctx, pool, seqA, idA, 10); len(rows) != 0 {
		t.Errorf("EventsAfter(LastPosition) = %v, want nothing", ids(rows))
	}
}

// TestEventsAfterPages: a cursor anywhere, even inside a transaction's
// events, resumes right after it.
func TestEventsAfterPages(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)

	// Three transactions: two events, one, two.
	var e [5]int64
	inTx(t, ctx, pool, func(tx pgx.Tx) {
		e[0] = publish(t, ctx, tx, "a", "e0")
		e[1] = publish(t, ctx, tx, "b", "e1")
	})
	e[2] = publish(t, ctx, pool, "a", "e2")
	inTx(t, ctx, pool, func(tx pgx.Tx) {
		e[3] = publish(t, ctx, tx, "b", "e3")
		e[4] = publish(t, ctx, tx, "a", "e4")
	})
	var s [5]int64
	for i, id := range e {
		s[i] = positionOf(t, ctx, pool, id)
	}
	if s[0] != s[1] || s[3] != s[4] || !(s[1] < s[2] && s[2] < s[3]) {
		t.Fatalf("seqs %v, want one per transaction in commit order", s)
	}

	tests := []struct {
		name    string
		seq, id int64
		limit   int
		want    []int64
	}{
		{"from the start", 0, 0, 10, e[:]},
		{"limit", 0, 0, 3, e[:3]},
		{"inside a transaction", s[0], e[0], 10, e[1:]},
		{"after a transaction", s[1], e[1], 10, e[2:]},
		{"before a transaction", s[3], 0, 10, e[3:]},
		{"at the end", s[4], e[4], 10, []int64{}},
		{"past the end", s[4] + 1, 0, 10, []int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := eventsAfter(t, ctx, pool, tt.seq, tt.id, tt.limit)
			if !slices.Equal(ids(got), tt.want) {
				t.Fatalf("EventsAfter(%d, %d, %d) = %v, want %v", tt.seq, tt.id, tt.limit, ids(got), tt.want)
			}
		})
	}
}

// TestUncommittedEventsAreInvisible: readers see an event only once its
// transaction commits, and never one that rolled back, including one taken
// back with a savepoint in a transaction that then commits other events.
func TestUncommittedEventsAreInvisible(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)

	open := begin(t, ctx, pool)
	pending := publish(t, ctx, open, "c", "pending")

	rolledBack := begin(t, ctx, pool)
	gone := publish(t, ctx, rolledBack, "c", "rolled-back")
	if err := rolledBack.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// The first event of a transaction is the one that sequences it; when
	// a savepoint takes it back, the next event must take over.
	var undone, kept int64
	inTx(t, ctx, pool, func(tx pgx.Tx) {
		exec(t, ctx, tx, `SAVEPOINT s`)
		undone = publish(t, ctx, tx, "c", "undone")
		exec(t, ctx, tx, `ROLLBACK TO SAVEPOINT s`)
		kept = publish(t, ctx, tx, "c", "kept")
	})

	if got, want := ids(eventsAfter(t, ctx, pool, 0, 0, 10)), []int64{kept}; !slices.Equal(got, want) {
		t.Fatalf("EventsAfter(0, 0) = %v, want %v", got, want)
	}
	for _, id := range []int64{pending, gone, undone} {
		if _, err := db.PositionOf(ctx, pool, id); !errors.Is(err, db.ErrEventExpired) {
			t.Errorf("PositionOf(%d) err = %v, want ErrEventExpired", id, err)
		}
	}
	if _, id := lastPosition(t, ctx, pool); id != kept {
		t.Errorf("LastPosition id = %d, want %d", id, kept)
	}

	commit(t, ctx, open)
	if got, want := ids(eventsAfter(t, ctx, pool, 0, 0, 10)), []int64{kept, pending}; !slices.Equal(got, want) {
		t.Fatalf("EventsAfter(0, 0) after commit = %v, want %v", got, want)
	}
}

// TestTwoPhaseEventsNumberedLikeAny: a transaction marked
// pgpush.two_phase rings no doorbell (PostgreSQL refuses PREPARE after
// NOTIFY), but once committed its events are numbered and read like any
// other, in commit order (migration 00006).
func TestTwoPhaseEventsNumberedLikeAny(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	before := publish(t, ctx, pool, "c", "before")
	var twoPhase int64
	inTx(t, ctx, pool, func(tx pgx.Tx) {
		exec(t, ctx, tx, `SET LOCAL pgpush.two_phase = on`)
		twoPhase = publish(t, ctx, tx, "c", "two-phase")
		if n := count(t, ctx, tx, `SELECT count(*) FROM pgpush.events WHERE id = $1 AND first_in_xact`, twoPhase); n != 0 {
			t.Errorf("two-phase event flagged to ring the doorbell")
		}
	})
	after := publish(t, ctx, pool, "c", "after")
	if got, want := ids(eventsAfter(t, ctx, pool, 0, 0, 10)), []int64{before, twoPhase, after}; !slices.Equal(got, want) {
		t.Fatalf("EventsAfter(0, 0) = %v, want %v", got, want)
	}
}

// TestPositionOf: a resume id that is not in the log gives
// ErrEventExpired, which realtime turns into ErrResyncRequired. (Ids past
// the retention are covered with the partitions that hold them, in
// realtime's store tests.)
func TestPositionOf(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	kept := publish(t, ctx, pool, "c", "kept")
	rows := eventsAfter(t, ctx, pool, 0, 0, 10)
	if got, want := ids(rows), []int64{kept}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	keptSeq := rows[0].Seq
	// A transaction of three events with a one-event one committed in
	// the middle of its ids: found by the range of its ids and by its
	// one id (migration 00015), each only where it holds the event.
	many := begin(t, ctx, pool)
	m1 := publish(t, ctx, many, "c", "m1")
	one := publish(t, ctx, pool, "c", "one")
	m2 := publish(t, ctx, many, "c", "m2")
	m3 := publish(t, ctx, many, "c", "m3")
	commit(t, ctx, many)
	rows = eventsAfter(t, ctx, pool, keptSeq, kept, 10)
	if got, want := ids(rows), []int64{one, m1, m2, m3}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	oneSeq, manySeq := rows[0].Seq, rows[1].Seq

	tests := []struct {
		name    string
		id      int64
		wantSeq int64
		wantErr error
	}{
		{"kept", kept, keptSeq, nil},
		{"one event inside another commit's ids", one, oneSeq, nil},
		{"first of several", m1, manySeq, nil},
		{"middle of several", m2, manySeq, nil},
		{"last of several", m3, manySeq, nil},
		{"never existed", kept + 1000, 0, db.ErrEventExpired},
		{"zero", 0, 0, db.ErrEventExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seq, err := db.PositionOf(ctx, pool, tt.id)
			if seq != tt.wantSeq || !errors.Is(err, tt.wantErr) {
				t.Fatalf("PositionOf(%d) = %d, %v, want %d, %v", tt.id, seq, err, tt.wantSeq, tt.wantErr)
			}
		})
	}
}

// TestChannelEventsBetween covers replay: one channel's events between a
// client's resume position and the live stream's position, page by page.
func TestChannelEventsBetween(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)

	// a0 takes its id first and commits last, after the stream position.
	late := begin(t, ctx, pool)
	a0 := publish(t, ctx, late, "a", "a0")
	var a1, a2, a3, a4, b1, b2 int64
	inTx(t, ctx, pool, func(tx pgx.Tx) {
		a1 = publish(t, ctx, tx, "a", "a1")
		b1 = publish(t, ctx, tx, "b", "b1")
		a2 = publish(t, ctx, tx, "a", "a2")
	})
	b2 = publish(t, ctx, pool, "b", "b2")
	a3 = publish(t, ctx, pool, "a", "a3")
	a4 = publish(t, ctx, pool, "a", "a4")
	toSeq, toID := lastPosition(t, ctx, pool)
	commit(t, ctx, late)
	publish(t, ctx, pool, "a", "after")

	s1 := positionOf(t, ctx, pool, a1)
	s3 := positionOf(t, ctx, pool, a3)
	s4 := positionOf(t, ctx, pool, a4)
	lateSeq := positionOf(t, ctx, pool, a0)
	tests := []struct {
		name            string
		channel         string
		fromSeq, fromID int64
		toSeq, toID     int64
		limit           int
		want            []int64
	}{
		{"all up to the stream position", "a", 0, 0, toSeq, toID, 10, []int64{a1, a2, a3, a4}},
		{"limit", "a", 0, 0, toSeq, toID, 2, []int64{a1, a2}},
		{"from inside a transaction", "a", s1, a1, toSeq, toID, 10, []int64{a2, a3, a4}},
		{"to is inclusive", "a", 0, 0, s3, a3, 10, []int64{a1, a2, a3}},
		{"empty range", "a", s3, a3, s3, a3, 10, []int64{}},
		{"from after to", "a", s4, a4, s3, a3, 10, []int64{}},
		{"other channel", "b", 0, 0, toSeq, toID, 10, []int64{b1, b2}},
		{"unknown channel", "nope", 0, 0, toSeq, toID, 10, []int64{}},
		// Bounds are positions: a0's id is below every other, its seq above.
		{"to a late commit", "a", 0, 0, lateSeq, a0, 10, []int64{a1, a2, a3, a4, a0}},
		{"from the stream position to a late commit", "a", toSeq, toID, lateSeq, a0, 10, []int64{a0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rows, err := db.ChannelEventsBetween(ctx, pool, []string{tt.channel}, tt.fromSeq, tt.fromID, tt.toSeq, tt.toID, tt.limit, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(rows); !slices.Equal(got, tt.want) {
				t.Errorf("ChannelEventsBetween(%q, (%d, %d), (%d, %d), %d) = %v, want %v",
					tt.channel, tt.fromSeq, tt.fromID, tt.toSeq, tt.toID, tt.limit, got, tt.want)
			}
		})
	}

	// Paging from the last row of each page, as realtime.PoolStore.Replay
	// does, reads each event once.
	t.Run("pages", func(t *testing.T) {
		t.Parallel()
		var got []int64
		fromSeq, fromID := int64(0), int64(0)
		for range 10 {
			rows, err := db.ChannelEventsBetween(ctx, pool, []string{"a"}, fromSeq, fromID, toSeq, toID, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) == 0 {
				break
			}
			got = append(got, ids(rows)...)
			fromSeq, fromID = rows[0].Seq, rows[0].ID
		}
		if want := []int64{a1, a2, a3, a4}; !slices.Equal(got, want) {
			t.Errorf("paged replay = %v, want %v", got, want)
		}
	})
}

// TestPublish also checks the rows the event queries return: each case
// publishes on its own channel and reads the event back.
func TestPublish(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	start := time.Now()
	tests := []struct {
		name     string
		channel  string
		event    string
		data     json.RawMessage
		wantData string // "" when Publish must fail
	}{
		{"data", "c1", "stock:low", json.RawMessage(`{"sku":"A1","n":[1,2]}`), `{"n":[1,2],"sku":"A1"}`},
		{"nil data", "c2", "e", nil, `{}`},
		{"empty data", "c3", "e", json.RawMessage{}, `{}`},
		{"non-object data", "c4", "e", json.RawMessage(`"text"`), `"text"`},
		{"no channel", "", "e", nil, ""},
		{"no event", "c5", "", nil, ""},
		{"invalid json", "c6", "e", json.RawMessage(`{`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := db.Publish(ctx, pool, tt.channel, tt.event, tt.data)
			if tt.wantData == "" {
				if err == nil {
					t.Fatalf("Publish(%q, %q, %s) = %d, want an error", tt.channel, tt.event, tt.data, id)
				}
				return
			}
			if err != nil {
				t.Fatalf("Publish(%q, %q, %s): %v", tt.channel, tt.event, tt.data, err)
			}
			sequence(t, ctx, pool)
			rows, err := db.ChannelEventsBetween(ctx, pool, []string{tt.channel}, 0, 0, math.MaxInt64, math.MaxInt64, 10, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 {
				t.Fatalf("events on %q = %v, want [%d]", tt.channel, ids(rows), id)
			}
			r := rows[0]
			if r.ID != id || r.Seq != positionOf(t, ctx, pool, id) || r.Channel != tt.channel || r.Event != tt.event || r.Origin != "" {
				t.Errorf("row = %+v, want id %d on %q, event %q, no origin", r, id, tt.channel, tt.event)
			}
			if !jsonEqual(t, r.Data, []byte(tt.wantData)) {
				t.Errorf("data = %s, want %s", r.Data, tt.wantData)
			}
			// The server's clock, so allow for skew with the test's.
			if d := r.CreatedAt.Sub(start); d < -time.Minute || d > time.Minute {
				t.Errorf("created_at = %v, want about %v", r.CreatedAt, start)
			}
		})
	}
}

func TestChannelHasEvents(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	publish(t, ctx, pool, "published", "e")
	rolledBack := begin(t, ctx, pool)
	publish(t, ctx, rolledBack, "rolled-back", "e")
	if err := rolledBack.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		channel string
		want    bool
	}{
		{"published", true},
		{"rolled-back", false},
		{"never", false},
		{"publish", false}, // no prefix match
	}
	for _, tt := range tests {
		t.Run(tt.channel, func(t *testing.T) {
			t.Parallel()
			got, err := db.ChannelHasEvents(ctx, pool, tt.channel)
			if err != nil || got != tt.want {
				t.Fatalf("ChannelHasEvents(%q) = %v, %v, want %v", tt.channel, got, err, tt.want)
			}
		})
	}
}
