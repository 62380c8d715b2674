package triggers

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgpush/pgpush/db"
)

// TestMigrationsDownAndUpKeepEvents takes the schema back to numbering at
// commit (before migration 00006) and forward again, with events in
// the log, numbered and not: no event is lost or numbered twice, watched
// tables keep their triggers, and writes go on in between.
func TestMigrationsDownAndUpKeepEvents(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (customer_id) VALUES (1), (2)`)
	sequence(t, tb)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (customer_id) VALUES (3)`) // committed, not numbered

	count := func(sql string) int {
		t.Helper()
		var n int
		if err := tb.pool.QueryRow(tb.ctx, sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	// Every migration from 00006 on goes down and comes back.
	status, err := db.Migrate(tb.ctx, tb.pool, "status", nil)
	if err != nil {
		t.Fatalf("migrate status: %v", err)
	}
	newMigrations := 0
	for _, m := range status {
		if m.Version >= 6 {
			newMigrations++
		}
	}
	for range newMigrations {
		if _, err := db.Migrate(tb.ctx, tb.pool, "down", nil); err != nil {
			t.Fatalf("migrate down: %v", err)
		}
	}
	if n := count(`SELECT count(*) FROM pg_trigger WHERE tgname = 'pgpush_capture' AND tgrelid = 'orders'::regclass`); n != 1 {
		t.Fatalf("%d row triggers after migrating down, want 1", n)
	}
	if n := count(`SELECT count(*) FROM pgpush.events e WHERE NOT EXISTS (SELECT 1 FROM pgpush.commits c WHERE c.xid = e.xid)`); n != 0 {
		t.Fatalf("%d events without a commit number after migrating down, want 0", n)
	}
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (customer_id) VALUES (4)`) // numbered at commit, the old way
	if n := count(`SELECT count(*) FROM pgpush.commits`); n != 3 {
		t.Fatalf("%d commits after a write the old way, want 3", n)
	}

	for range newMigrations {
		if _, err := db.Migrate(tb.ctx, tb.pool, "up", nil); err != nil {
			t.Fatalf("migrate up: %v", err)
		}
	}
	if n := count(`SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgpush_capture%' AND tgrelid = 'orders'::regclass`); n != 2 {
		t.Fatalf("%d capture triggers after migrating up, want 2 (the row trigger and truncate)", n)
	}
	if n := count(`SELECT count(*) FROM pg_trigger WHERE tgname = 'pgpush_capture' AND tgrelid = 'orders'::regclass
		AND tgfoid::regproc::text = 'pgpush.capture_' || tgrelid::oid`); n != 1 {
		t.Fatalf("%d row triggers calling the generated function after migrating up, want 1", n)
	}
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (customer_id) VALUES (5)`)
	got := events(t, tb)
	var customers []string
	for i, e := range got {
		customers = append(customers, fmt.Sprint(e.data["customer_id"]))
		if i > 0 && !(e.Seq > got[i-1].Seq || (e.Seq == got[i-1].Seq && e.ID > got[i-1].ID)) {
			t.Fatalf("event %s does not come after %s", e, got[i-1])
		}
	}
	if got, want := strings.Join(customers, " "), "1 2 3 4 5"; got != want {
		t.Fatalf("events of customers %q after down and up, want %q", got, want)
	}
}
