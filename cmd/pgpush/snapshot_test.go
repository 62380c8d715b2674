package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db/dbtest"
	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/triggers"
)

// snapshotRows subscribes with snapshot and returns the rows by id, and
// the subscribed frame. It fails on an error frame.
func (c *wsClient) snapshotRows(sub map[string]any) (map[string]map[string]any, map[string]any) {
	c.t.Helper()
	sub["type"], sub["snapshot"] = "subscribe", true
	c.send(sub)
	rows := map[string]map[string]any{}
	for {
		m := c.read()
		switch m["type"] {
		case "snapshot":
			for _, r := range m["rows"].([]any) {
				row := r.(map[string]any)
				rows[fmt.Sprint(row["id"])] = row
			}
		case "subscribed":
			return rows, m
		case "error":
			c.t.Fatalf("snapshot refused: %v", m["message"])
		}
	}
}

// TestSnapshotThenChangesUnderLoad: with writers inserting, updating and
// deleting the whole time, snapshot rows plus the events after them give
// exactly the table's final state, and no row of the snapshot comes again
// as "created".
func TestSnapshotThenChangesUnderLoad(t *testing.T) {
	t.Parallel()
	pool, dbURL, password := newShop(t)
	srv := startServer(t, dbURL, nil)
	cookie := srv.admin(t, password)
	for i := range 200 {
		exec(t, pool, `INSERT INTO orders (order_number, total) VALUES ($1, $2)`, fmt.Sprintf("ORD-%d", i), i)
	}

	ctx, stop := context.WithCancel(context.Background())
	var writers sync.WaitGroup
	for w := range 3 {
		writers.Go(func() { churn(ctx, t, pool, w) })
	}
	c := srv.connect(t, cookie)
	state, _ := c.snapshotRows(map[string]any{"channel": "order_changes"})
	snapshotIDs := map[string]bool{}
	for id := range state {
		snapshotIDs[id] = true
	}
	// Let the writers run on after the snapshot, then stop them and mark
	// the end of the stream.
	for range 50 {
		ev := c.read()
		apply(t, state, ev, snapshotIDs)
	}
	stop()
	writers.Wait()
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-end')`)
	for {
		ev := c.read()
		apply(t, state, ev, snapshotIDs)
		if ev["event"] == "order:created" && ev["data"].(map[string]any)["order_number"] == "ORD-end" {
			break
		}
	}
	// The truth: a fresh snapshot, read after everything committed.
	truth, _ := srv.connect(t, cookie).snapshotRows(map[string]any{"channel": "order_changes"})
	if len(truth) != len(state) {
		t.Fatalf("snapshot+events hold %d rows, the table %d", len(state), len(truth))
	}
	for id, want := range truth {
		delete(want, "changed_fields")
		got := state[id]
		delete(got, "changed_fields")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("row %s: snapshot+events give %v, the table %v", id, got, want)
		}
	}
}

// churn inserts, updates and deletes orders until ctx ends. Its
// statements run to completion: a statement cancelled by ctx could still
// commit after churn returned, which the caller's "writers stopped" would
// not know of.
func churn(ctx context.Context, t *testing.T, pool *pgxpool.Pool, writer int) {
	rng := rand.New(rand.NewPCG(uint64(writer), 16))
	stopped := ctx
	ctx = context.WithoutCancel(ctx)
	for n := 0; stopped.Err() == nil; n++ {
		var err error
		switch rng.IntN(4) {
		case 0:
			_, err = pool.Exec(ctx, `INSERT INTO orders (order_number, total) VALUES ($1, 1)`, fmt.Sprintf("ORD-w%d-%d", writer, n))
		case 1:
			_, err = pool.Exec(ctx, `DELETE FROM orders WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1) AND order_number <> 'ORD-end'`)
		default:
			_, err = pool.Exec(ctx, `UPDATE orders SET total = total + 1, status = $1 WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1)`,
				[]string{"pending", "paid", "shipped"}[rng.IntN(3)])
		}
		if err != nil && !strings.Contains(err.Error(), "deadlock") {
			t.Errorf("writer %d: %v", writer, err)
			return
		}
	}
}

// apply folds one event into the rows, as liveRows does.
func apply(t *testing.T, state map[string]map[string]any, ev map[string]any, snapshotIDs map[string]bool) {
	t.Helper()
	data := ev["data"].(map[string]any)
	id := fmt.Sprint(data["id"])
	switch ev["event"] {
	case "order:created":
		if snapshotIDs[id] {
			t.Fatalf("created event for row %s, which the snapshot already had", id)
		}
		state[id] = data
	case "order:updated":
		// Every update changes total, so an update whose row is already
		// the state is one the snapshot reflected: a duplicate.
		if old, ok := state[id]; ok && sameRow(old, data) {
			t.Fatalf("updated event for row %s repeats what the rows already hold", id)
		}
		state[id] = data
	case "order:deleted":
		if _, ok := state[id]; !ok {
			t.Fatalf("deleted event for row %s, which the rows do not hold", id)
		}
		delete(state, id)
	default:
		t.Fatalf("unexpected event %v", ev["event"])
	}
}

// sameRow compares two rows without their changed_fields.
func sameRow(a, b map[string]any) bool {
	strip := func(m map[string]any) map[string]any {
		out := make(map[string]any, len(m))
		for k, v := range m {
			if k != "changed_fields" {
				out[k] = v
			}
		}
		return out
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// TestSnapshotRules: the rows of a snapshot have the shape of event data,
// and the grant's --match, the filter, --exclude and --only apply.
func TestSnapshotRules(t *testing.T) {
	t.Parallel()
	pool, dbURL, password := newShop(t)
	ctx := context.Background()
	exec(t, pool, `INSERT INTO customers (id, name, email, phone) VALUES (101, 'Ada', 'ada@shop.example.com', '555-1'), (102, 'Alan', 'alan@shop.example.com', '555-2')`)
	exec(t, pool, `INSERT INTO orders (order_number, customer_id, status, total) VALUES
		('ORD-1', 101, 'paid', 10), ('ORD-2', 101, 'pending', 20), ('ORD-3', 102, 'paid', 30)`)
	// customers: phone stays inside the database.
	if _, err := triggers.Watch(ctx, pool, triggers.Config{Table: "customers", Exclude: []string{"phone"}}); err != nil {
		t.Fatal(err)
	}
	// products: only sku and price leave it.
	exec(t, pool, `DELETE FROM products`)
	exec(t, pool, `INSERT INTO products (sku, name, price, stock) VALUES ('A1', 'Tea', 3.50, 7)`)
	if _, err := triggers.Watch(ctx, pool, triggers.Config{Table: "products", Only: []string{"id", "sku", "price"}}); err != nil {
		t.Fatal(err)
	}
	store := secStore(t, pool)
	secAddUser(t, store, "ada@shop.example.com", "customer", map[string]string{"customer_id": "101"})
	secGrant(t, pool, session.Grant{Channel: "order_changes", Role: "customer", Match: map[string]string{"customer_id": "customer_id"}})
	srv := startServer(t, dbURL, nil)
	admin := srv.connect(t, srv.admin(t, password))

	ada := srv.connect(t, srv.login(t, "ada@shop.example.com", secPassword))
	rows, _ := ada.snapshotRows(map[string]any{"channel": "order_changes"})
	if got := orderNumbers(rows); got != "ORD-1 ORD-2" { // the demo's own orders belong to other customers
		t.Errorf("customer 1's snapshot: %s, want ORD-1 ORD-2 (--match)", got)
	}
	rows, _ = ada.snapshotRows(map[string]any{"channel": "order_changes", "filter": map[string]any{"status": "paid"}})
	if got := orderNumbers(rows); got != "ORD-1" {
		t.Errorf("customer 1's snapshot with a filter: %s, want ORD-1", got)
	}

	// The same shape as an event's data: compare with the event of an
	// update that changes nothing visible but the status.
	admin.subscribe("order_changes")
	exec(t, pool, `UPDATE orders SET status = 'shipped' WHERE order_number = 'ORD-3'`)
	ev := admin.expectEvent("order:updated")["data"].(map[string]any)
	delete(ev, "changed_fields")
	rows, _ = admin.snapshotRows(map[string]any{"channel": "order_changes", "filter": map[string]any{"order_number": "ORD-3"}})
	if len(rows) != 1 || !reflect.DeepEqual(rows[fmt.Sprint(ev["id"])], ev) {
		t.Errorf("snapshot row %v, want the event's data %v", rows, ev)
	}

	rows, _ = admin.snapshotRows(map[string]any{"channel": "customer_changes"})
	for _, r := range rows {
		if _, leaked := r["phone"]; leaked || r["name"] == nil {
			t.Errorf("customer row %v: want name and never the excluded phone", r)
		}
	}
	rows, _ = admin.snapshotRows(map[string]any{"channel": "product_changes"})
	for _, r := range rows {
		if len(r) != 3 || r["sku"] != "A1" || r["price"] != 3.5 {
			t.Errorf("product row %v, want only id, sku and price (--only), price a number", r)
		}
	}
}

func orderNumbers(rows map[string]map[string]any) string {
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprint(r["order_number"]))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// TestSnapshotRefusals: too many rows, a channel with no table and a bad
// filter each get an error frame, and no subscription is made.
func TestSnapshotRefusals(t *testing.T) {
	t.Parallel()
	pool, dbURL, password := newShop(t)
	for i := range 30 {
		exec(t, pool, `INSERT INTO orders (order_number) VALUES ($1)`, fmt.Sprintf("ORD-%d", i))
	}
	srv := startServer(t, dbURL, func(c *serverConfig) { c.Hub.SnapshotMaxRows = 25 })
	cookie := srv.admin(t, password)
	c := srv.connect(t, cookie)
	exec(t, pool, `SELECT pgpush.publish('alerts', 'x:y', '{}')`) // a channel with no table
	// A published channel is known once the sequencer has numbered it.
	dbtest.Eventually(t, waitTimeout, func() bool {
		return countRows(t, pool, `SELECT count(*) FROM pgpush.channels WHERE channel = 'alerts'`) == 1
	})

	for _, tt := range []struct {
		sub  map[string]any
		want string
	}{
		{map[string]any{"channel": "order_changes"}, "narrow it with a filter"},
		{map[string]any{"channel": "alerts"}, "no table behind it"},
		{map[string]any{"channel": "order_changes", "filter": map[string]any{"id": map[string]any{"like": 1}}}, "filter"},
	} {
		tt.sub["type"], tt.sub["snapshot"] = "subscribe", true
		c.send(tt.sub)
		m := c.expectType("error")
		if msg := fmt.Sprint(m["message"]); !strings.Contains(msg, tt.want) {
			t.Errorf("%v: error %q, want it to say %q", tt.sub, msg, tt.want)
		}
	}
	// Nothing is subscribed: a change reaches nobody, and a narrower
	// snapshot works.
	rows, sub := c.snapshotRows(map[string]any{"channel": "order_changes", "filter": map[string]any{"order_number": map[string]any{"in": []string{"ORD-1", "ORD-2"}}}})
	if len(rows) != 2 || sub["channel"] != "order_changes" {
		t.Errorf("narrow snapshot: %d rows, %v", len(rows), sub)
	}
	b, _ := json.Marshal(rows)
	if strings.Contains(string(b), "ORD-3") {
		t.Errorf("narrow snapshot leaked ORD-3: %s", b)
	}
}
