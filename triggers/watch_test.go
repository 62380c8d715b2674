package triggers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/dbtest"
)

// testTimeout bounds each test's queries; CREATE DATABASE under a parallel
// load takes most of it when anything does.
const testTimeout = 60 * time.Second

const ordersDDL = `CREATE TABLE orders (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	status      text NOT NULL DEFAULT 'new',
	total       numeric(10,2),
	customer_id integer,
	card_token  text
)`

type testBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
	url  string
}

// setup gives t its own migrated database with the statements in ddl run.
func setup(t *testing.T, ddl ...string) testBundle {
	t.Helper()
	pool, url := dbtest.NewPool(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	for _, q := range ddl {
		mustExec(t, ctx, pool, q)
	}
	return testBundle{ctx: ctx, pool: pool, url: url}
}

func mustExec(t *testing.T, ctx context.Context, q db.Querier, sql string, args ...any) {
	t.Helper()
	if _, err := q.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

func mustWatch(t *testing.T, tb testBundle, cfg Config) Watched {
	t.Helper()
	w, err := Watch(tb.ctx, tb.pool, cfg)
	if err != nil {
		t.Fatalf("Watch(%+v): %v", cfg, err)
	}
	return w
}

// connect opens a connection of t's own, closed when t ends, for session
// state (TimeZone, LISTEN) and for interleaving two transactions.
func connect(t *testing.T, tb testBundle) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(tb.ctx, tb.url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func begin(t *testing.T, ctx context.Context, conn *pgx.Conn) pgx.Tx {
	t.Helper()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

func commit(t *testing.T, ctx context.Context, tx pgx.Tx) {
	t.Helper()
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// event is an EventRow with its data decoded; numbers stay json.Number so
// that 99.99 is checked as written, not as a float64.
type event struct {
	db.EventRow
	data map[string]any
}

func (e event) String() string {
	return fmt.Sprintf("seq %d id %d %s %s %s", e.Seq, e.ID, e.Channel, e.Event, e.EventRow.Data)
}

// sequence numbers what committed so far, as the sequencer would, and
// returns how many transactions it numbered.
func sequence(t *testing.T, tb testBundle) int64 {
	t.Helper()
	var n int64
	err := tb.pool.AcquireFunc(tb.ctx, func(c *pgxpool.Conn) error {
		var err error
		n, err = db.Sequence(tb.ctx, c)
		return err
	})
	if err != nil {
		t.Fatalf("Sequence: %v", err)
	}
	return n
}

// events numbers what committed so far and returns every event in
// delivery order.
func events(t *testing.T, tb testBundle) []event {
	t.Helper()
	sequence(t, tb)
	rows, err := db.EventsAfter(tb.ctx, tb.pool, 0, 0, 1000)
	if err != nil {
		t.Fatalf("EventsAfter: %v", err)
	}
	out := make([]event, len(rows))
	for i, r := range rows {
		out[i] = event{EventRow: r, data: decode(t, r.Data)}
	}
	return out
}

func decode(t *testing.T, data []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode event data %s: %v", data, err)
	}
	return m
}

// wantEvents checks channel and event name of every committed event, in
// delivery order, and returns them.
func wantEvents(t *testing.T, tb testBundle, want ...string) []event {
	t.Helper()
	got := events(t, tb)
	var names []string
	for _, e := range got {
		names = append(names, e.Channel+" "+e.Event)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("events = %q, want %q\n%v", names, want, got)
	}
	return got
}

func keys(m map[string]any) []string {
	k := make([]string, 0, len(m))
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}

func TestWatchTableNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		ddl       []string
		cfg       Config
		insert    string
		wantTable string
		wantEvent string // channel and event
	}{
		{
			name:      "plain",
			ddl:       []string{ordersDDL},
			cfg:       Config{Table: "orders"},
			insert:    `INSERT INTO orders (total) VALUES (1)`,
			wantTable: `orders`,
			wantEvent: "order_changes order:created",
		},
		{
			name:      "upper case typed for a lower case table",
			ddl:       []string{ordersDDL},
			cfg:       Config{Table: "ORDERS"},
			insert:    `INSERT INTO orders (total) VALUES (1)`,
			wantTable: `orders`,
			wantEvent: "order_changes order:created",
		},
		{
			name: "schema-qualified",
			ddl: []string{`CREATE SCHEMA shop`, `CREATE TABLE shop.orders (id int PRIMARY KEY)`,
				`CREATE TABLE public.orders (id int PRIMARY KEY)`},
			cfg:       Config{Table: "shop.orders"},
			insert:    `INSERT INTO shop.orders VALUES (1); INSERT INTO public.orders VALUES (1)`,
			wantTable: `shop.orders`,
			wantEvent: "order_changes order:created",
		},
		{
			name:      "space in name, quoted",
			ddl:       []string{`CREATE TABLE "Order Items" (id int PRIMARY KEY)`},
			cfg:       Config{Table: `"Order Items"`, Entity: "order_item", Channel: "items"},
			insert:    `INSERT INTO "Order Items" VALUES (1)`,
			wantTable: `"Order Items"`,
			wantEvent: "items order_item:created",
		},
		{
			name:      "mixed case name, bare",
			ddl:       []string{`CREATE TABLE "Order_Items" (id int PRIMARY KEY)`},
			cfg:       Config{Table: "Order_Items"},
			insert:    `INSERT INTO "Order_Items" VALUES (1)`,
			wantTable: `"Order_Items"`,
			wantEvent: "Order_Item_changes Order_Item:created",
		},
		{
			name:      "single quote in name",
			ddl:       []string{`CREATE TABLE "it's" (id int PRIMARY KEY, "it's" text)`},
			cfg:       Config{Table: "it's", Entity: "it", Exclude: []string{"it's"}},
			insert:    `INSERT INTO "it's" VALUES (1, 'secret')`,
			wantTable: `"it's"`,
			wantEvent: "it_changes it:created",
		},
		{
			name: "quotes, spaces and backslash everywhere",
			ddl: []string{`CREATE SCHEMA "my ""schema"""`,
				`CREATE TABLE "my ""schema"""."Odd 'Table' ""x"" \y" (id int PRIMARY KEY, "it's ""x"" \y" text, "When's ""Due"" \" timestamptz)`},
			cfg:       Config{Table: `"my ""schema"""."Odd 'Table' ""x"" \y"`, Entity: "odd", Exclude: []string{`it's "x" \y`}},
			insert:    `INSERT INTO "my ""schema"""."Odd 'Table' ""x"" \y" VALUES (1, 'secret', '2026-01-25 10:30:00+00')`,
			wantTable: `"my ""schema"""."Odd 'Table' ""x"" \y"`,
			wantEvent: "odd_changes odd:created",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t, tt.ddl...)
			w := mustWatch(t, tb, tt.cfg)
			if w.Table != tt.wantTable {
				t.Errorf("Watch(%q).Table = %s, want %s", tt.cfg.Table, w.Table, tt.wantTable)
			}
			mustExec(t, tb.ctx, tb.pool, tt.insert)
			got := wantEvents(t, tb, tt.wantEvent)
			if v := got[0].data["id"]; v != json.Number("1") {
				t.Errorf("data.id = %v, want 1", v)
			}
			for _, c := range tt.cfg.Exclude {
				if v, ok := got[0].data[c]; ok {
					t.Errorf("excluded column %q sent as %v", c, v)
				}
			}
			// The same name that watched the table unwatches it.
			if err := Unwatch(tb.ctx, tb.pool, tt.cfg.Table); err != nil {
				t.Errorf("Unwatch(%q): %v", tt.cfg.Table, err)
			}
		})
	}
}

// TestWatchBareNameWithSpaceBug: `pgpush watch "Order Items"` typed in a
// shell reaches Watch as the bare name Order Items, which lookupTable means to
// accept through its quote_ident fallback. Before PostgreSQL 16, to_regclass
// raises "invalid name syntax" (42602) for such a name instead of returning
// NULL, so the fallback never runs and Watch and Unwatch fail.
func TestWatchBareNameWithSpaceBug(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE "Order Items" (id int PRIMARY KEY)`)
	w, err := Watch(tb.ctx, tb.pool, Config{Table: "Order Items", Entity: "order_item"})
	if err != nil {
		t.Fatalf("Watch(Order Items) bare: %v", err)
	}
	if got, want := w.Table, `"Order Items"`; got != want {
		t.Errorf("Table = %s, want %s", got, want)
	}
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO "Order Items" VALUES (1)`)
	wantEvents(t, tb, "order_item_changes order_item:created")
	if err := Unwatch(tb.ctx, tb.pool, "Order Items"); err != nil {
		t.Errorf("Unwatch(Order Items) bare: %v", err)
	}
}

// TestWatchOddTableTimestamp: a timestamptz column whose name needs quoting
// in the text[] trigger argument is still found and formatted.
func TestWatchOddColumnTimestamp(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE odd (id int PRIMARY KEY, "When's ""Due"" \" timestamptz, "a,b{c}" timestamp)`)
	mustWatch(t, tb, Config{Table: "odd"})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO odd VALUES (1, '2026-01-25 12:30:00+02', '2026-01-25 10:30:00')`)
	got := wantEvents(t, tb, "odd_changes odd:created")
	for _, col := range []string{`When's "Due" \`, "a,b{c}"} {
		if v, want := got[0].data[col], "2026-01-25T10:30:00.000Z"; v != want {
			t.Errorf("data[%q] = %v, want %s", col, v, want)
		}
	}
}

// TestWatchDefaultEntityOfOddName: characters an entity cannot hold
// become underscores, so "Order Items" gets entity Order_Item.
func TestWatchDefaultEntityOfOddName(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE "Order Items" (id int PRIMARY KEY)`)
	w, err := Watch(tb.ctx, tb.pool, Config{Table: `"Order Items"`})
	if err != nil {
		t.Fatalf("Watch(\"Order Items\"): %v", err)
	}
	if w.Entity != "Order_Item" || w.Channel != "Order_Item_changes" {
		t.Fatalf("Watch(\"Order Items\") = entity %q channel %q, want Order_Item, Order_Item_changes", w.Entity, w.Channel)
	}
}

// triggerCount counts pgpush's triggers on table: the row trigger and the
// truncate trigger, or on a partitioned table three statement triggers
// and the truncate trigger.
func triggerCount(t *testing.T, tb testBundle, table string) int {
	t.Helper()
	var n int
	err := tb.pool.QueryRow(tb.ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname LIKE $2 || '%'`,
		table, TriggerName).Scan(&n)
	if err != nil {
		t.Fatalf("count triggers: %v", err)
	}
	return n
}

// captureFunctions counts the functions generated for watched tables.
func captureFunctions(t *testing.T, tb testBundle) int {
	t.Helper()
	var n int
	err := tb.pool.QueryRow(tb.ctx, `SELECT count(*) FROM pg_proc
		WHERE pronamespace = 'pgpush'::regnamespace AND proname ~ '^capture_[0-9]+(_[0-9]+)?$'`).Scan(&n)
	if err != nil {
		t.Fatalf("count capture functions: %v", err)
	}
	return n
}

func TestWatchTwiceReconfigures(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})
	w := mustWatch(t, tb, Config{Table: "orders", Channel: "shop", Exclude: []string{"card_token"}})
	if got, want := w.Channel, "shop"; got != want {
		t.Errorf("Channel = %q, want %q", got, want)
	}
	if got, want := triggerCount(t, tb, "orders"), 2; got != want {
		t.Errorf("%d pgpush triggers on orders, want %d", got, want)
	}
	if got := captureFunctions(t, tb); got != 1 {
		t.Errorf("%d generated capture functions after watching twice, want 1", got)
	}
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (card_token) VALUES ('tok')`)
	got := wantEvents(t, tb, "shop order:created")
	if _, ok := got[0].data["card_token"]; ok {
		t.Errorf("card_token sent after re-watch with --exclude card_token: %s", got[0].EventRow.Data)
	}
	list, err := List(tb.ctx, tb.pool)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 || list[0].Channel != "shop" {
		t.Errorf("List() = %+v, want orders once on channel shop", list)
	}
}

// TestWatchedTableChangesShape: the generated function reads columns only
// through the row's jsonb, so dropping or renaming a column, even a
// formatted timestamp, never fails the writer's statement; a dropped
// table's function goes at the next watch.
func TestWatchedTableChangesShape(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE shipments (id int PRIMARY KEY, shipped_at timestamptz, due_on timestamp, note text)`,
		`CREATE TABLE gone (id int)`)
	mustWatch(t, tb, Config{Table: "shipments"})
	mustWatch(t, tb, Config{Table: "gone"})
	mustExec(t, tb.ctx, tb.pool, `ALTER TABLE shipments DROP COLUMN shipped_at`)
	mustExec(t, tb.ctx, tb.pool, `ALTER TABLE shipments RENAME COLUMN due_on TO due`)
	mustExec(t, tb.ctx, tb.pool, `ALTER TABLE shipments ADD COLUMN shipped_at text`)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO shipments VALUES (1, '2026-01-25 10:30:00.123456', 'n', 'not a time')`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE shipments SET note = 'm'`)
	mustExec(t, tb.ctx, tb.pool, `DELETE FROM shipments`)
	got := wantEvents(t, tb, "shipment_changes shipment:created", "shipment_changes shipment:updated", "shipment_changes shipment:deleted")
	// due kept its type but not its name: it leaves as PostgreSQL
	// prints it; shipped_at is now text, and stays as written.
	if v := got[0].data["due"]; v != "2026-01-25T10:30:00.123456" {
		t.Errorf("renamed timestamp column = %v, want PostgreSQL's own text", v)
	}
	if v := got[0].data["shipped_at"]; v != "not a time" {
		t.Errorf("text column named like a dropped timestamp = %v, want it as written", v)
	}
	mustExec(t, tb.ctx, tb.pool, `DROP TABLE gone`)
	if got := captureFunctions(t, tb); got != 2 {
		t.Fatalf("%d generated capture functions before the next watch, want 2", got)
	}
	mustWatch(t, tb, Config{Table: "shipments"})
	if got := captureFunctions(t, tb); got != 1 {
		t.Errorf("%d generated capture functions after the dropped table's watch, want 1", got)
	}
}

// TestGeneratedCaptureOddNames: names reach the generated function only as
// quoted literals, so a column named with the generator's own markers
// ($v, $body$) is excluded or formatted like any other, and the timestamp
// check reads the same in a session with standard_conforming_strings off.
func TestGeneratedCaptureOddNames(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE s (id int, "secret$v" text, "at$v" timestamptz, "a$body$b" timestamptz, "q'\" text)`)
	mustWatch(t, tb, Config{Table: "s", Exclude: []string{"secret$v"}})
	conn := connect(t, tb)
	mustExec(t, tb.ctx, conn, `SET standard_conforming_strings = off`)
	mustExec(t, tb.ctx, conn, `INSERT INTO s VALUES (1, 'hunter2', '2026-01-01 10:00:00.5+00', '2026-01-01 11:00:00+00', 'x')`)
	got := wantEvents(t, tb, "s_changes s:created")
	if _, ok := got[0].data["secret$v"]; ok {
		t.Errorf("excluded column secret$v sent: %s", got[0].EventRow.Data)
	}
	for col, want := range map[string]string{"at$v": "2026-01-01T10:00:00.500Z", "a$body$b": "2026-01-01T11:00:00.000Z", `q'\`: "x"} {
		if v := got[0].data[col]; v != want {
			t.Errorf("%s = %v, want %q", col, v, want)
		}
	}
}

// TestGeneratedCaptureNameInUse: a function name that another table's
// trigger already calls (a table OID reused after a dump and restore) is
// left to that table; the new table's function gets another name.
func TestGeneratedCaptureNameInUse(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE a (id int)`, `CREATE TABLE b (id int)`)
	mustWatch(t, tb, Config{Table: "a"})
	// a's trigger now calls the name b's function would get.
	mustExec(t, tb.ctx, tb.pool, `DO $$ BEGIN
		EXECUTE format('ALTER FUNCTION pgpush.%I() RENAME TO %I', 'capture_' || 'a'::regclass::oid, 'capture_' || 'b'::regclass::oid);
	END $$`)
	mustWatch(t, tb, Config{Table: "b"})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO a VALUES (1)`)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO b VALUES (2)`)
	wantEvents(t, tb, "a_changes a:created", "b_changes b:created")
	if got := captureFunctions(t, tb); got != 2 {
		t.Errorf("%d generated capture functions, want 2", got)
	}
}

func TestUnwatch(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})
	if err := Unwatch(tb.ctx, tb.pool, "orders"); err != nil {
		t.Fatalf("Unwatch: %v", err)
	}
	if got := triggerCount(t, tb, "orders"); got != 0 {
		t.Errorf("%d pgpush triggers left on orders, want 0", got)
	}
	if got := captureFunctions(t, tb); got != 0 {
		t.Errorf("%d generated capture functions left after Unwatch, want 0", got)
	}
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (total) VALUES (1)`)
	wantEvents(t, tb)
	if list, err := List(tb.ctx, tb.pool); err != nil || len(list) != 0 {
		t.Errorf("List() after Unwatch = %+v, %v, want nothing", list, err)
	}

	err := Unwatch(tb.ctx, tb.pool, "orders")
	if !errors.Is(err, ErrNotWatched) {
		t.Errorf("second Unwatch error = %v, want ErrNotWatched", err)
	}
	if err := Unwatch(tb.ctx, tb.pool, "nope"); err == nil || errors.Is(err, ErrNotWatched) {
		t.Errorf("Unwatch(nope) error = %v, want table does not exist", err)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL,
		`CREATE TABLE products (id int PRIMARY KEY, name text, cost numeric)`,
		`CREATE SCHEMA shop`, `CREATE TABLE shop.customers (id int PRIMARY KEY, email text, password text)`,
		`CREATE TABLE gone (id int PRIMARY KEY)`)
	mustWatch(t, tb, Config{Table: "products", Only: []string{"id", "name"}, Broadcast: "new_product"})
	mustWatch(t, tb, Config{Table: "orders", Exclude: []string{"card_token"}})
	mustWatch(t, tb, Config{Table: "shop.customers", Entity: "client", Exclude: []string{"password"}})
	mustWatch(t, tb, Config{Table: "gone"})
	mustExec(t, tb.ctx, tb.pool, `DROP TABLE gone`)

	list, err := List(tb.ctx, tb.pool)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var got []string
	for _, w := range list {
		got = append(got, fmt.Sprintf("%s %s %s %s %s %s", w.Table, w.Entity, w.Channel,
			strings.Join(w.Columns, ","), w.Broadcast, strings.Join(w.BroadcastOn, ",")))
	}
	want := []string{
		`orders order order_changes id,status,total,customer_id  `,
		`products product product_changes id,name new_product insert`,
		`shop.customers client client_changes id,email  `,
	}
	if !slices.Equal(got, want) {
		t.Errorf("List() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWatchRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		table  string
		wantIn string
	}{
		{"view", "order_view", "not a table"},
		{"materialized view", "order_totals", "not a table"},
		{"sequence", "orders_id_seq", "not a table"},
		{"missing", "nope", "does not exist"},
		{"missing in schema", "nope.orders", "does not exist"},
		{"pgpush table", "pgpush.events", "pgpush itself"},
		{"pgpush table by search path", "watched", "does not exist"},
		{"empty", "", `""`},
	}
	tb := setup(t, ordersDDL,
		`CREATE VIEW order_view AS SELECT * FROM orders`,
		`CREATE MATERIALIZED VIEW order_totals AS SELECT sum(total) FROM orders`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Subtests share tb: each is one failing transaction.
			_, err := Watch(tb.ctx, tb.pool, Config{Table: tt.table})
			if err == nil || !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("Watch(%q) error = %v, want one saying %q", tt.table, err, tt.wantIn)
			}
		})
	}
	var n int
	if err := tb.pool.QueryRow(tb.ctx, `SELECT count(*) FROM pg_trigger WHERE tgname LIKE $1 || '%'`, TriggerName).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d pgpush triggers after failed Watch calls, want 0", n)
	}
}

func TestWatchBadConfigLeavesNothing(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	if _, err := Watch(tb.ctx, tb.pool, Config{Table: "orders", Exclude: []string{"nope"}}); err == nil {
		t.Fatal("Watch with --exclude nope: no error")
	}
	if got := triggerCount(t, tb, "orders"); got != 0 {
		t.Errorf("%d pgpush triggers after a rejected Watch, want 0", got)
	}
}

// listenForDoorbells is a connection listening for writers' doorbells.
func listenForDoorbells(t *testing.T, tb testBundle) *pgx.Conn {
	t.Helper()
	listener := connect(t, tb)
	mustExec(t, tb.ctx, listener, "LISTEN "+db.EventsChannel)
	return listener
}

func waitNotification(t *testing.T, conn *pgx.Conn) *pgconn.Notification {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("wait for notification: %v", err)
	}
	return n
}

func TestWatchAnnouncesReload(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	conn := connect(t, tb)
	mustExec(t, tb.ctx, conn, "LISTEN "+db.ControlChannel)

	mustWatch(t, tb, Config{Table: "orders"})
	n := waitNotification(t, conn)
	if n.Channel != db.ControlChannel || n.Payload != db.ReloadPayload {
		t.Errorf("after Watch got notification %s %q, want %s %q", n.Channel, n.Payload, db.ControlChannel, db.ReloadPayload)
	}

	if err := Unwatch(tb.ctx, tb.pool, "orders"); err != nil {
		t.Fatalf("Unwatch: %v", err)
	}
	n = waitNotification(t, conn)
	if n.Channel != db.ControlChannel || n.Payload != db.ReloadPayload {
		t.Errorf("after Unwatch got notification %s %q, want %s %q", n.Channel, n.Payload, db.ControlChannel, db.ReloadPayload)
	}
}

func TestEventValues(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE things (
		id      bigint PRIMARY KEY,
		n       integer,
		price   numeric(10,2),
		ratio   double precision,
		ok      boolean,
		doc     jsonb,
		tags    text[],
		note    text,
		day     date,
		at      timestamptz,
		naive   timestamp
	)`)
	mustWatch(t, tb, Config{Table: "things"})
	conn := connect(t, tb)
	// The writer's own TimeZone must not leak into the event.
	mustExec(t, tb.ctx, conn, `SET TimeZone = 'Asia/Kolkata'`)
	mustExec(t, tb.ctx, conn, `INSERT INTO things VALUES
		(9007199254740993, -7, 99.99, 0.5, true, '{"a":{"b":[1,2.5,null]}}', '{x,y}', NULL,
		 '2026-01-25', '2026-01-25 16:00:00+05:30', '2026-01-25 10:30:00')`)
	mustExec(t, tb.ctx, conn, `INSERT INTO things (id, at, naive) VALUES (2, '2026-01-25 10:30:00.1239Z', '2026-01-25 23:59:59.999')`)

	got := wantEvents(t, tb, "thing_changes thing:created", "thing_changes thing:created")
	// jsonb orders keys by length, then bytes.
	want := `{"n": -7, "at": "2026-01-25T10:30:00.000Z", "id": 9007199254740993, "ok": true, "day": "2026-01-25", ` +
		`"doc": {"a": {"b": [1, 2.5, null]}}, "note": null, "tags": ["x", "y"], "naive": "2026-01-25T10:30:00.000Z", ` +
		`"price": 99.99, "ratio": 0.5}`
	if s := string(got[0].EventRow.Data); s != want {
		t.Errorf("created data =\n%s\nwant\n%s", s, want)
	}
	if v, want := got[1].data["at"], "2026-01-25T10:30:00.123Z"; v != want {
		t.Errorf("at with microseconds = %v, want %s", v, want)
	}
	if v, want := got[1].data["naive"], "2026-01-25T23:59:59.999Z"; v != want {
		t.Errorf("naive = %v, want %s", v, want)
	}
}

func TestEventTimestampsInUpdate(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE t (id int PRIMARY KEY, at timestamptz, naive timestamp)`)
	mustWatch(t, tb, Config{Table: "t"})
	conn := connect(t, tb)
	mustExec(t, tb.ctx, conn, `SET TimeZone = 'America/St_Johns'`) // -03:30
	mustExec(t, tb.ctx, conn, `INSERT INTO t VALUES (1, '2026-01-25 10:30:00Z', '2026-01-25 10:30:00')`)
	mustExec(t, tb.ctx, conn, `SET TimeZone = 'Asia/Kolkata'`)
	// Same instant, new TimeZone: not a change.
	mustExec(t, tb.ctx, conn, `UPDATE t SET at = '2026-01-25 16:00:00+05:30'`)
	mustExec(t, tb.ctx, conn, `UPDATE t SET at = at + interval '1 hour'`)
	got := wantEvents(t, tb, "t_changes t:created", "t_changes t:updated")
	if v, want := got[1].data["changed_fields"], map[string]any{"at": "2026-01-25T11:30:00.000Z"}; fmt.Sprint(v) != fmt.Sprint(want) {
		t.Errorf("changed_fields = %v, want %v", v, want)
	}
}

func TestEventUpdateAndDelete(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders", Exclude: []string{"card_token"}})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (total, customer_id, card_token) VALUES (10, 45, 'tok')`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET status = 'paid', total = 99.99`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET status = status`)     // no-op
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET card_token = 'tok2'`) // excluded only
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET total = 99.990`)      // same numeric value
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET customer_id = NULL`)  // to NULL
	mustExec(t, tb.ctx, tb.pool, `DELETE FROM orders`)
	got := wantEvents(t, tb,
		"order_changes order:created",
		"order_changes order:updated",
		"order_changes order:updated",
		"order_changes order:deleted")
	for _, e := range got {
		if _, ok := e.data["card_token"]; ok {
			t.Errorf("%s: excluded card_token sent", e)
		}
	}
	tests := []struct {
		i    int
		want string
	}{
		{0, `{"id": 1, "total": 10.00, "status": "new", "customer_id": 45}`},
		{1, `{"id": 1, "total": 99.99, "status": "paid", "customer_id": 45, "changed_fields": {"total": 99.99, "status": "paid"}}`},
		{2, `{"id": 1, "total": 99.99, "status": "paid", "customer_id": null, "changed_fields": {"customer_id": null}}`},
		{3, `{"id": 1, "total": 99.99, "status": "paid", "customer_id": null}`},
	}
	for _, tt := range tests {
		if s := string(got[tt.i].EventRow.Data); s != tt.want {
			t.Errorf("%s data =\n%s\nwant\n%s", got[tt.i].Event, s, tt.want)
		}
	}
}

func TestEventOnlyColumns(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders", Only: []string{"id", "status"}})
	mustExec(t, tb.ctx, tb.pool, `ALTER TABLE orders ADD COLUMN secret text`)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (total, secret) VALUES (5, 's1')`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET total = 6, secret = 's2'`) // nothing visible
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET status = 'paid', secret = 's3'`)
	mustExec(t, tb.ctx, tb.pool, `DELETE FROM orders`)
	got := wantEvents(t, tb,
		"order_changes order:created", "order_changes order:updated", "order_changes order:deleted")
	wantKeys := [][]string{{"id", "status"}, {"changed_fields", "id", "status"}, {"id", "status"}}
	for i, e := range got {
		if k := keys(e.data); !slices.Equal(k, wantKeys[i]) {
			t.Errorf("%s keys = %q, want %q", e, k, wantKeys[i])
		}
	}
	if v := fmt.Sprint(got[1].data["changed_fields"]); v != "map[status:paid]" {
		t.Errorf("changed_fields = %s, want map[status:paid]", v)
	}
}

func TestEventOnlyAndExclude(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders", Only: []string{"id", "status", "card_token"}, Exclude: []string{"card_token"}})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (card_token) VALUES ('tok')`)
	got := wantEvents(t, tb, "order_changes order:created")
	if k := keys(got[0].data); !slices.Equal(k, []string{"id", "status"}) {
		t.Errorf("keys = %q, want [id status]", k)
	}
}

func TestTransactionRolledBack(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})
	conn := connect(t, tb)
	tx := begin(t, tb.ctx, conn)
	mustExec(t, tb.ctx, tx, `INSERT INTO orders (total) VALUES (1), (2)`)
	if err := tx.Rollback(tb.ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	wantEvents(t, tb)
	var n int
	if err := tb.pool.QueryRow(tb.ctx, `SELECT count(*) FROM pgpush.commits`).Scan(&n); err != nil || n != 0 {
		t.Errorf("pgpush.commits has %d rows (err %v), want 0", n, err)
	}
}

func TestTransactionManyRowsOneSeq(t *testing.T) {
	t.Parallel()
	const rows = 200
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})
	conn := connect(t, tb)
	tx := begin(t, tb.ctx, conn)
	for i := range rows {
		mustExec(t, tb.ctx, tx, `INSERT INTO orders (customer_id) VALUES ($1)`, i)
	}
	commit(t, tb.ctx, tx)
	got := events(t, tb)
	if len(got) != rows {
		t.Fatalf("%d events, want %d", len(got), rows)
	}
	for i, e := range got {
		if e.Seq != got[0].Seq {
			t.Fatalf("event %d has seq %d, want %d like the first: one transaction, one seq", i, e.Seq, got[0].Seq)
		}
		if v := e.data["customer_id"]; v != json.Number(fmt.Sprint(i)) {
			t.Fatalf("event %d has customer_id %v, want %d: insert order", i, v, i)
		}
	}
	var commits int
	if err := tb.pool.QueryRow(tb.ctx, `SELECT count(*) FROM pgpush.commits`).Scan(&commits); err != nil || commits != 1 {
		t.Errorf("pgpush.commits has %d rows (err %v), want 1", commits, err)
	}
}

// TestTransactionsCommitOrder: a transaction that writes first but commits
// last is delivered last, although its event ids are lower, when the
// sequencer looked in between.
func TestTransactionsCommitOrder(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})

	early := begin(t, tb.ctx, connect(t, tb))
	late := begin(t, tb.ctx, connect(t, tb))
	mustExec(t, tb.ctx, early, `INSERT INTO orders (customer_id) VALUES (1)`)
	mustExec(t, tb.ctx, late, `INSERT INTO orders (customer_id) VALUES (2)`)
	commit(t, tb.ctx, late)
	if n := sequence(t, tb); n != 1 {
		t.Fatalf("first batch numbered %d transactions, want 1 (early is still open)", n)
	}
	commit(t, tb.ctx, early)

	got := events(t, tb)
	if len(got) != 2 {
		t.Fatalf("%d events, want 2: %v", len(got), got)
	}
	if got[0].data["customer_id"] != json.Number("2") || got[1].data["customer_id"] != json.Number("1") {
		t.Errorf("delivery order %v, want the first committed (customer 2) first", got)
	}
	if !(got[0].Seq < got[1].Seq) || !(got[0].ID > got[1].ID) {
		t.Errorf("seqs %d, %d and ids %d, %d: want rising seqs in commit order, ids in write order",
			got[0].Seq, got[1].Seq, got[0].ID, got[1].ID)
	}
}

// TestBatchOrderPerRow: two transactions that commit between the same two
// looks of the sequencer form one batch. One that waited for the other's
// row lock comes after it, although it wrote its first event earlier.
func TestBatchOrderPerRow(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (status) VALUES ('new')`)
	sequence(t, tb)

	waiter := begin(t, tb.ctx, connect(t, tb))
	holder := begin(t, tb.ctx, connect(t, tb))
	mustExec(t, tb.ctx, waiter, `INSERT INTO orders (status) VALUES ('other')`) // the lowest new id
	mustExec(t, tb.ctx, holder, `UPDATE orders SET status = 'paid' WHERE id = 1`)
	blocked := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(tb.ctx, `UPDATE orders SET status = 'shipped' WHERE id = 1`)
		blocked <- err
	}()
	waitForLockWait(t, tb)
	commit(t, tb.ctx, holder)
	if err := <-blocked; err != nil {
		t.Fatalf("waiting update: %v", err)
	}
	commit(t, tb.ctx, waiter)

	got := events(t, tb)
	var statuses []string
	for _, e := range got[1:] {
		statuses = append(statuses, fmt.Sprint(e.data["status"]))
	}
	if want := []string{"paid", "other", "shipped"}; !slices.Equal(statuses, want) {
		t.Fatalf("delivery order %q, want %q: per row in commit order, the waiter's events together", statuses, want)
	}
	if got[1].Seq != got[0].Seq+1 || got[2].Seq != got[3].Seq || got[2].Seq != got[1].Seq+1 {
		t.Errorf("seqs %d %d %d %d, want one rising seq per transaction", got[0].Seq, got[1].Seq, got[2].Seq, got[3].Seq)
	}
}

// waitForLockWait returns once some session of the test's database waits
// for a row lock.
func waitForLockWait(t *testing.T, tb testBundle) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		var waiting bool
		err := tb.pool.QueryRow(tb.ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no session started waiting for the row lock")
		}
		time.Sleep(10 * time.Millisecond) // polling pg_stat_activity, not synchronising
	}
}

// TestDoorbellOncePerTransaction: with the sequencer asleep, a committed
// transaction rings the doorbell once, whatever its number of rows; a
// rolled-back one never does.
func TestDoorbellOncePerTransaction(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})
	listener := listenForDoorbells(t, tb)

	tx := begin(t, tb.ctx, connect(t, tb))
	mustExec(t, tb.ctx, tx, `INSERT INTO orders (customer_id) SELECT g FROM generate_series(1, 50) g`)
	mustExec(t, tb.ctx, tx, `INSERT INTO orders (customer_id) VALUES (51)`)
	commit(t, tb.ctx, tx)
	rolledBack := begin(t, tb.ctx, connect(t, tb))
	mustExec(t, tb.ctx, rolledBack, `INSERT INTO orders (customer_id) VALUES (99)`)
	if err := rolledBack.Rollback(tb.ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (customer_id) VALUES (52)`) // the marker

	for i := range 2 {
		if n := waitNotification(t, listener); n.Channel != db.EventsChannel {
			t.Fatalf("notification %d on %q, want %q", i, n.Channel, db.EventsChannel)
		}
	}
	// Nothing else comes: the sequencer would take a third ring for a
	// third commit. A short, bounded wait is the only way to see silence.
	ctx, cancel := context.WithTimeout(tb.ctx, 300*time.Millisecond)
	defer cancel()
	if n, err := listener.WaitForNotification(ctx); err == nil {
		t.Fatalf("a third doorbell %+v, want one per committed transaction", n)
	}
}

// TestDoorbellSeenUpHoldsTheSequencer: a writer whose first event finds
// the sequencer awake rings nothing, and from then on keeps it from
// sleeping until its transaction ends, however long that is open; a
// writer that finds it asleep rings.
func TestDoorbellSeenUpHoldsTheSequencer(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})
	listener := listenForDoorbells(t, tb)
	sequencer := connect(t, tb)
	if _, err := db.SequenceEvents(tb.ctx, sequencer, true, 10); err != nil { // raises the flag
		t.Fatalf("SequenceEvents: %v", err)
	}

	open := begin(t, tb.ctx, connect(t, tb))
	mustExec(t, tb.ctx, open, `INSERT INTO orders (customer_id) VALUES (1)`)
	if _, idle, err := db.SequencerRest(tb.ctx, sequencer); err != nil || idle {
		t.Fatalf("SequencerRest with a writer that saw the flag still open = idle %v, %v; want not idle", idle, err)
	}
	mustExec(t, tb.ctx, open, `INSERT INTO orders (customer_id) VALUES (2)`)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (customer_id) VALUES (3)`) // the flag is down: rings
	if n := waitNotification(t, listener); n.Channel != db.EventsChannel {
		t.Fatalf("notification on %q, want the doorbell on %q", n.Channel, db.EventsChannel)
	}
	commit(t, tb.ctx, open)

	rows, err := db.SequenceEvents(tb.ctx, sequencer, true, 10)
	if err != nil {
		t.Fatalf("SequenceEvents: %v", err)
	}
	if len(rows) != 3 {
		t.Fatalf("the round after the commit numbered %d events, want 3", len(rows))
	}
	if _, idle, err := db.SequencerRest(tb.ctx, sequencer); err != nil || !idle {
		t.Fatalf("SequencerRest once the writer ended = idle %v, %v; want idle", idle, err)
	}
	// The writer that saw the flag up rang nothing at its commit. A
	// short, bounded wait is the only way to see silence.
	ctx, cancel := context.WithTimeout(tb.ctx, 300*time.Millisecond)
	defer cancel()
	if n, err := listener.WaitForNotification(ctx); err == nil {
		t.Fatalf("a second doorbell %+v, want none from the writer that saw the flag up", n)
	}
}

func TestTransactionSavepoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		stmts []string
		want  []string // customer_id of each delivered event, in order
	}{
		{
			name: "first event in rolled-back savepoint",
			stmts: []string{
				`SAVEPOINT s`,
				`INSERT INTO orders (customer_id) VALUES (1)`,
				`ROLLBACK TO SAVEPOINT s`,
				`INSERT INTO orders (customer_id) VALUES (2)`,
				`INSERT INTO orders (customer_id) VALUES (3)`,
			},
			want: []string{"2", "3"},
		},
		{
			name: "first event before, rolled-back savepoint between",
			stmts: []string{
				`INSERT INTO orders (customer_id) VALUES (1)`,
				`SAVEPOINT s`,
				`INSERT INTO orders (customer_id) VALUES (2)`,
				`ROLLBACK TO SAVEPOINT s`,
				`INSERT INTO orders (customer_id) VALUES (3)`,
			},
			want: []string{"1", "3"},
		},
		{
			name: "only events in rolled-back savepoint",
			stmts: []string{
				`SAVEPOINT s`,
				`INSERT INTO orders (customer_id) VALUES (1)`,
				`ROLLBACK TO SAVEPOINT s`,
			},
			want: nil,
		},
		{
			name: "released savepoint",
			stmts: []string{
				`SAVEPOINT s`,
				`INSERT INTO orders (customer_id) VALUES (1)`,
				`RELEASE SAVEPOINT s`,
				`INSERT INTO orders (customer_id) VALUES (2)`,
			},
			want: []string{"1", "2"},
		},
		{
			name: "nested: released inner, rolled-back outer",
			stmts: []string{
				`SAVEPOINT outer_sp`,
				`SAVEPOINT inner_sp`,
				`INSERT INTO orders (customer_id) VALUES (1)`,
				`RELEASE SAVEPOINT inner_sp`,
				`ROLLBACK TO SAVEPOINT outer_sp`,
				`INSERT INTO orders (customer_id) VALUES (2)`,
			},
			want: []string{"2"},
		},
		{
			name: "plpgsql exception block",
			stmts: []string{
				`DO $$ BEGIN
					INSERT INTO orders (customer_id) VALUES (1);
					RAISE EXCEPTION 'boom';
				EXCEPTION WHEN raise_exception THEN NULL;
				END $$`,
				`INSERT INTO orders (customer_id) VALUES (2)`,
			},
			want: []string{"2"},
		},
		{
			name: "publish in rolled-back savepoint, change after",
			stmts: []string{
				`SAVEPOINT s`,
				`SELECT pgpush.publish('alerts', 'x', '{}')`,
				`ROLLBACK TO SAVEPOINT s`,
				`INSERT INTO orders (customer_id) VALUES (2)`,
			},
			want: []string{"2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t, ordersDDL)
			mustWatch(t, tb, Config{Table: "orders"})
			tx := begin(t, tb.ctx, connect(t, tb))
			for _, s := range tt.stmts {
				mustExec(t, tb.ctx, tx, s)
			}
			commit(t, tb.ctx, tx)

			got := events(t, tb)
			var ids []string
			for _, e := range got {
				ids = append(ids, fmt.Sprint(e.data["customer_id"]))
				if e.Seq != got[0].Seq {
					t.Errorf("%s: seq differs from %d in one transaction", e, got[0].Seq)
				}
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("delivered customer_ids %q, want %q (raw rows: %d)", ids, tt.want, len(got))
			}
			// Every event row written by a committed transaction must be
			// reachable; one without a commit row is lost for good.
			var orphans int
			err := tb.pool.QueryRow(tb.ctx, `SELECT count(*) FROM pgpush.events e
				WHERE NOT EXISTS (SELECT 1 FROM pgpush.commits c WHERE c.xid = e.xid)`).Scan(&orphans)
			if err != nil {
				t.Fatal(err)
			}
			if orphans != 0 {
				t.Errorf("%d committed events have no commit seq and are never delivered", orphans)
			}
		})
	}
}

// TestTransactionSequencedFlagNotLeaked: the per-transaction flag must not
// survive into the session's next transaction, or that one would never
// ring the doorbell.
func TestTransactionSequencedFlagNotLeaked(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders"})
	listener := listenForDoorbells(t, tb)
	conn := connect(t, tb)
	for i := range 3 {
		mustExec(t, tb.ctx, conn, `INSERT INTO orders (customer_id) VALUES ($1)`, i)
		waitNotification(t, listener)
		if n := sequence(t, tb); n != 1 {
			t.Fatalf("transaction %d: %d numbered, want 1", i, n)
		}
	}
	tx := begin(t, tb.ctx, conn)
	mustExec(t, tb.ctx, tx, `INSERT INTO orders (customer_id) VALUES (3)`)
	commit(t, tb.ctx, tx)
	waitNotification(t, listener)
	got := events(t, tb)
	if len(got) != 4 {
		t.Fatalf("%d events delivered, want 4: %v", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Errorf("seqs %d then %d: want one rising seq per transaction", got[i-1].Seq, got[i].Seq)
		}
	}
}

func TestEventLargeRow(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	mustWatch(t, tb, Config{Table: "docs"})
	listener := listenForDoorbells(t, tb)
	const size = 1 << 20
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO docs VALUES (1, repeat('x', $1))`, size)
	if n := waitNotification(t, listener); len(n.Payload) > 0 {
		t.Errorf("doorbell payload of %d bytes, want none: the table is the truth", len(n.Payload))
	}
	got := wantEvents(t, tb, "doc_changes doc:created")
	body, _ := got[0].data["body"].(string)
	if len(body) != size || strings.Trim(body, "x") != "" {
		t.Errorf("body of %d bytes, want %d x's", len(body), size)
	}
}

func TestPublish(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	mustExec(t, tb.ctx, tb.pool, `SELECT pgpush.publish('alerts', 'stock:low', '{"sku":"A1"}')`)
	mustExec(t, tb.ctx, tb.pool, `SELECT pgpush.publish('alerts', 'ping')`)
	got := wantEvents(t, tb, "alerts stock:low", "alerts ping")
	if s := string(got[0].EventRow.Data); s != `{"sku": "A1"}` {
		t.Errorf("data = %s, want {\"sku\": \"A1\"}", s)
	}
	if s := string(got[1].EventRow.Data); s != `{}` {
		t.Errorf("data without argument = %s, want {}", s)
	}

	for _, q := range []string{
		`SELECT pgpush.publish('', 'x', '{}')`,
		`SELECT pgpush.publish(NULL, 'x', '{}')`,
		`SELECT pgpush.publish('alerts', '', '{}')`,
	} {
		_, err := tb.pool.Exec(tb.ctx, q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "P0001" {
			t.Errorf("%s: error %v, want raise_exception (P0001)", q, err)
		}
	}
	wantEvents(t, tb, "alerts stock:low", "alerts ping")
}

func TestBroadcast(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2), cost numeric)`)
	mustWatch(t, tb, Config{Table: "products", Exclude: []string{"cost"}, Broadcast: "new_product", BroadcastOn: []string{"insert"}})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO products VALUES (1, 'Tea', 3.50, 1)`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE products SET name = 'Green tea'`)
	mustExec(t, tb.ctx, tb.pool, `DELETE FROM products`)
	got := wantEvents(t, tb,
		"product_changes product:created",
		db.BroadcastChannel+" new_product",
		"product_changes product:updated",
		"product_changes product:deleted")
	if got[0].Seq != got[1].Seq {
		t.Errorf("broadcast seq %d, want the change's %d", got[1].Seq, got[0].Seq)
	}
	if s, want := string(got[1].EventRow.Data), `{"id": 1, "name": "Tea", "price": 3.50}`; s != want {
		t.Errorf("broadcast data = %s, want %s", s, want)
	}
}

func TestBroadcastOnUpdateDelete(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE products (id int PRIMARY KEY, name text)`)
	mustWatch(t, tb, Config{Table: "products", Broadcast: "product_feed", BroadcastOn: []string{"update", "delete"}})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO products VALUES (1, 'Tea')`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE products SET name = name`) // no change, no broadcast
	mustExec(t, tb.ctx, tb.pool, `UPDATE products SET name = 'Green tea'`)
	mustExec(t, tb.ctx, tb.pool, `DELETE FROM products`)
	got := wantEvents(t, tb,
		"product_changes product:created",
		"product_changes product:updated",
		db.BroadcastChannel+" product_feed",
		"product_changes product:deleted",
		db.BroadcastChannel+" product_feed")
	if s, want := string(got[2].EventRow.Data), `{"id": 1, "name": "Green tea"}`; s != want {
		t.Errorf("update broadcast data = %s, want %s (the new row, no changed_fields)", s, want)
	}
	if s, want := string(got[4].EventRow.Data), `{"id": 1, "name": "Green tea"}`; s != want {
		t.Errorf("delete broadcast data = %s, want %s (the old row)", s, want)
	}
}

// TestEventInfiniteTimestampBug: to_char() of an infinite timestamp is NULL,
// and jsonb_set(..., NULL) nulls the whole row in pgpush.iso_times, so
// pgpush.emit inserts NULL data and the application's own INSERT or DELETE
// fails on pgpush.events' NOT NULL (an UPDATE is silently dropped). Rows with
// valid_until = 'infinity' are common; watching must never break a write.
func TestEventInfiniteTimestampBug(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE plans (id int PRIMARY KEY, valid_until timestamptz, starts timestamp)`)
	mustWatch(t, tb, Config{Table: "plans"})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO plans VALUES (1, 'infinity', '-infinity')`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE plans SET valid_until = '2026-01-25 10:30:00Z'`)
	mustExec(t, tb.ctx, tb.pool, `DELETE FROM plans`)
	got := wantEvents(t, tb, "plan_changes plan:created", "plan_changes plan:updated", "plan_changes plan:deleted")
	if v, want := got[0].data["valid_until"], "infinity"; v != want {
		t.Errorf("valid_until = %v, want %s", v, want)
	}
	if v, want := got[0].data["starts"], "-infinity"; v != want {
		t.Errorf("starts = %v, want %s", v, want)
	}
}

// TestWatchPartitionedTable: rows routed to a partition fire the trigger
// installed on the partitioned parent.
func TestWatchPartitionedTable(t *testing.T) {
	t.Parallel()
	tb := setup(t,
		`CREATE TABLE measurements (id int, region text) PARTITION BY LIST (region)`,
		`CREATE TABLE measurements_eu PARTITION OF measurements FOR VALUES IN ('eu')`)
	mustWatch(t, tb, Config{Table: "measurements"})
	if got := triggerCount(t, tb, "measurements"); got != 4 {
		t.Errorf("%d pgpush triggers on a partitioned table, want the three statement triggers and truncate", got)
	}
	mustExec(t, tb.ctx, tb.pool, `CREATE TABLE measurements_us PARTITION OF measurements FOR VALUES IN ('us')`)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO measurements VALUES (1, 'eu'), (2, 'us')`)
	wantEvents(t, tb, "measurement_changes measurement:created", "measurement_changes measurement:created")
	if err := Unwatch(tb.ctx, tb.pool, "measurements"); err != nil {
		t.Fatalf("Unwatch: %v", err)
	}
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO measurements VALUES (3, 'us')`)
	wantEvents(t, tb, "measurement_changes measurement:created", "measurement_changes measurement:created")
}

// TestWatchPartitionAndChild: a watched partition or inheritance child
// gets a row trigger, so rows changed through its parent are captured.
func TestWatchPartitionAndChild(t *testing.T) {
	t.Parallel()
	tb := setup(t,
		`CREATE TABLE measurements (id int, region text) PARTITION BY LIST (region)`,
		`CREATE TABLE measurements_eu PARTITION OF measurements FOR VALUES IN ('eu')`,
		`CREATE TABLE animals (id int, name text)`,
		`CREATE TABLE cats () INHERITS (animals)`)
	mustWatch(t, tb, Config{Table: "measurements_eu", Entity: "m"})
	mustWatch(t, tb, Config{Table: "cats"})
	for _, table := range []string{"measurements_eu", "cats"} {
		if got := triggerCount(t, tb, table); got != 2 {
			t.Errorf("%d pgpush triggers on %s, want the row trigger and the truncate trigger", got, table)
		}
	}
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO measurements VALUES (1, 'eu')`)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO cats VALUES (1, 'Tom')`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE animals SET name = 'Tommy'`)
	mustExec(t, tb.ctx, tb.pool, `DELETE FROM measurements`)
	got := wantEvents(t, tb, "m_changes m:created", "cat_changes cat:created", "cat_changes cat:updated", "m_changes m:deleted")
	if v := fmt.Sprint(got[2].data["changed_fields"]); v != "map[name:Tommy]" {
		t.Errorf("changed_fields = %s, want map[name:Tommy]", v)
	}
}

// TestWatchInheritanceParent: a table with inheritance children keeps the
// statement triggers, whose transition tables hold the children's rows
// that a statement on the parent changes.
func TestWatchInheritanceParent(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE animals (id int, name text)`, `CREATE TABLE cats () INHERITS (animals)`)
	mustWatch(t, tb, Config{Table: "animals"})
	if got := triggerCount(t, tb, "animals"); got != 4 {
		t.Errorf("%d pgpush triggers on an inheritance parent, want the three statement triggers and truncate", got)
	}
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO cats VALUES (1, 'Tom')`) // the child's own statement: not the parent's
	mustExec(t, tb.ctx, tb.pool, `UPDATE animals SET name = 'Tommy'`)
	mustExec(t, tb.ctx, tb.pool, `DELETE FROM animals`)
	wantEvents(t, tb, "animal_changes animal:updated", "animal_changes animal:deleted")
}

// TestUpdateManyRows: one UPDATE of many rows gives one event per row
// whose visible columns changed, in the order of the update, each with
// its own changed_fields, and rings the doorbell although its first row
// changed nothing.
func TestUpdateManyRows(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (customer_id) SELECT g FROM generate_series(1, 100) g`)
	mustWatch(t, tb, Config{Table: "orders", Exclude: []string{"card_token"}})
	listener := listenForDoorbells(t, tb)
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET
		status = CASE WHEN customer_id % 2 = 0 THEN 'paid' ELSE status END,
		card_token = 'tok'`)
	waitNotification(t, listener)
	got := events(t, tb)
	if len(got) != 50 {
		t.Fatalf("%d events, want 50: one per row whose visible columns changed", len(got))
	}
	prev := 0
	for _, e := range got {
		id, _ := strconv.Atoi(fmt.Sprint(e.data["customer_id"]))
		if e.Event != "order:updated" || id%2 != 0 || id <= prev {
			t.Fatalf("event %s: want order:updated of rising even customers", e)
		}
		prev = id
		if v := fmt.Sprint(e.data["changed_fields"]); v != "map[status:paid]" {
			t.Fatalf("changed_fields = %s, want map[status:paid] (card_token is excluded)", v)
		}
	}
}

// TestTruncateAndOldValues: TRUNCATE of a watched table is one
// <entity>:truncated event with empty data, and an update's event keeps
// the old values of exactly the fields it changed (never sent, so private
// columns stay out of it too).
func TestTruncateAndOldValues(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders", Exclude: []string{"card_token"}})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (status, customer_id, card_token) VALUES ('new', 45, 'a'), ('new', 46, 'b')`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET customer_id = 47, card_token = 'c' WHERE customer_id = 45`)
	mustExec(t, tb.ctx, tb.pool, `UPDATE orders SET status = 'paid', customer_id = customer_id + 1`)
	mustExec(t, tb.ctx, tb.pool, `TRUNCATE orders`)
	got := wantEvents(t, tb, "order_changes order:created", "order_changes order:created",
		"order_changes order:updated", "order_changes order:updated", "order_changes order:updated",
		"order_changes order:truncated")
	var olds []string
	for _, ev := range got {
		var old string
		if err := tb.pool.QueryRow(tb.ctx, `SELECT coalesce(old_data::text, '') FROM pgpush.events WHERE id = $1`, ev.ID).Scan(&old); err != nil {
			t.Fatal(err)
		}
		olds = append(olds, old)
	}
	slices.Sort(olds[3:5]) // one statement updated two rows, in the table's order
	want := []string{"", "", `{"customer_id": 45}`, `{"status": "new", "customer_id": 46}`, `{"status": "new", "customer_id": 47}`, ""}
	if !slices.Equal(olds, want) {
		t.Errorf("old_data = %q, want %q", olds, want)
	}
	if d := string(got[5].EventRow.Data); d != "{}" {
		t.Errorf("truncated data = %s, want {}", d)
	}
	// Unwatch removes the truncate trigger too.
	if err := Unwatch(tb.ctx, tb.pool, "orders"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, tb.ctx, tb.pool, `TRUNCATE orders`)
	if n := triggerCount(t, tb, "orders"); n != 0 {
		t.Errorf("%d pgpush triggers left after unwatch", n)
	}
}
