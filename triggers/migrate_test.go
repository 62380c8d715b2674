package triggers

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

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

// TestGeneratedCaptureMigration takes migration 00013 (and any after it)
// down and up again with every kind of watched table: a plain one with
// column rules and a broadcast, a partition, an inheritance parent and a
// partitioned table.
// Down gives each the generic triggers with the same rules, up the
// generated function again (statement triggers stay on the parents), and
// the events are the same before, between and after.
func TestGeneratedCaptureMigration(t *testing.T) {
	t.Parallel()
	tb := setup(t,
		`CREATE TABLE orders (id int, secret text, note text, at timestamptz)`,
		`CREATE TABLE measurements (id int, region text) PARTITION BY LIST (region)`,
		`CREATE TABLE measurements_eu PARTITION OF measurements FOR VALUES IN ('eu')`,
		`CREATE TABLE animals (id int, name text)`,
		`CREATE TABLE cats () INHERITS (animals)`)
	mustWatch(t, tb, Config{Table: "orders", Exclude: []string{"secret"}, Broadcast: "new_order"})
	mustWatch(t, tb, Config{Table: "measurements_eu", Entity: "m"})
	mustWatch(t, tb, Config{Table: "animals"})
	mustWatch(t, tb, Config{Table: "measurements"})
	triggers := func() string {
		t.Helper()
		rows, err := tb.pool.Query(tb.ctx, `
			SELECT tgrelid::regclass || ' ' || tgname || ' ' ||
			       CASE WHEN tgfoid::regproc::text ~ '^pgpush\.capture_[0-9]' THEN 'generated' ELSE tgfoid::regproc::text END
			FROM pg_trigger WHERE tgname LIKE 'pgpush_capture%' AND tgname <> 'pgpush_capture_truncate' AND tgparentid = 0
			ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		list, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(list, "\n")
	}
	write := func(id int) {
		t.Helper()
		mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders VALUES ($1, 'x', 'n', '2026-01-25 10:30:00+00')`, id)
		mustExec(t, tb.ctx, tb.pool, `INSERT INTO measurements VALUES ($1, 'eu')`, id)
		mustExec(t, tb.ctx, tb.pool, `INSERT INTO cats VALUES ($1, 'Tom')`, id)
		mustExec(t, tb.ctx, tb.pool, `UPDATE animals SET name = 'Tommy' WHERE id = $1`, id)
	}
	wantAfterWrite := []string{
		"order_changes order:created", "pgpush:broadcast new_order",
		"m_changes m:created", "measurement_changes measurement:created", // row triggers fire before statement triggers
		"animal_changes animal:updated",
	}
	generated := triggers()
	const wantGenerated = "animals pgpush_capture_delete pgpush.capture_rows\n" +
		"animals pgpush_capture_insert pgpush.capture_rows\n" +
		"animals pgpush_capture_update pgpush.capture_rows\n" +
		"measurements pgpush_capture_delete pgpush.capture_rows\n" +
		"measurements pgpush_capture_insert pgpush.capture_rows\n" +
		"measurements pgpush_capture_update pgpush.capture_rows\n" +
		"measurements_eu pgpush_capture generated\n" +
		"orders pgpush_capture generated"
	if generated != wantGenerated {
		t.Fatalf("triggers after watch:\n%s\nwant:\n%s", generated, wantGenerated)
	}
	check := func(step string, write1 int, wantTriggers string) {
		t.Helper()
		if got := triggers(); got != wantTriggers {
			t.Fatalf("%s: triggers:\n%s\nwant:\n%s", step, got, wantTriggers)
		}
		before := len(events(t, tb))
		write(write1)
		got := events(t, tb)[before:]
		var names []string
		for _, e := range got {
			names = append(names, e.Channel+" "+e.Event)
		}
		if !slices.Equal(names, wantAfterWrite) {
			t.Fatalf("%s: events %q, want %q", step, names, wantAfterWrite)
		}
		if _, ok := got[0].data["secret"]; ok || got[0].data["at"] != "2026-01-25T10:30:00.000Z" {
			t.Fatalf("%s: order event %s: want no secret and the time in UTC", step, got[0].EventRow.Data)
		}
	}
	check("watched", 1, wantGenerated)
	// Down one migration at a time, the later ones first, until 00013 is.
	for applied := true; applied; {
		statuses, err := db.Migrate(tb.ctx, tb.pool, "down", nil)
		if err != nil {
			t.Fatalf("migrate down: %v", err)
		}
		applied = slices.ContainsFunc(statuses, func(s db.MigrationStatus) bool { return s.Version == 13 && s.Applied })
	}
	check("after down", 2, strings.ReplaceAll(strings.ReplaceAll(wantGenerated,
		"measurements_eu pgpush_capture generated", "measurements_eu pgpush_capture pgpush.capture"),
		"orders pgpush_capture generated",
		"orders pgpush_capture_delete pgpush.capture_rows\norders pgpush_capture_insert pgpush.capture_rows\norders pgpush_capture_update pgpush.capture_rows"))
	if got := captureFunctions(t, tb); got != 0 {
		t.Fatalf("%d generated functions after down, want 0", got)
	}
	if _, err := db.Migrate(tb.ctx, tb.pool, "up", nil); err != nil {
		t.Fatalf("migrate up: %v", err)
	}
	check("after up", 3, wantGenerated)
}
