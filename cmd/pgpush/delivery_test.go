package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgpush/pgpush/db"
)

// TestResumeWithSince: a client drops mid-stream, changes keep committing,
// and a subscribe with "since" replays exactly what it missed, then goes live.
func TestResumeWithSince(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	cookie := srv.admin(t, password)

	c := srv.connect(t, cookie)
	c.subscribe("order_changes")
	var lastID string
	for i := range 5 {
		exec(t, pool, `INSERT INTO orders (order_number) VALUES ($1)`, fmt.Sprintf("ORD-A%d", i))
		lastID = c.expectEvent("order:created")["id"].(string)
	}
	c.conn.Close()
	for i := range 5 {
		exec(t, pool, `INSERT INTO orders (order_number) VALUES ($1)`, fmt.Sprintf("ORD-B%d", i))
	}

	r := srv.connect(t, cookie)
	r.send(map[string]any{"type": "subscribe", "channel": "order_changes", "since": lastID})
	r.expectType("subscribed")
	for i := range 5 {
		ev := r.expectEvent("order:created")
		if got, want := ev["data"].(map[string]any)["order_number"], fmt.Sprintf("ORD-B%d", i); got != want {
			t.Fatalf("replayed %v, want %s", got, want)
		}
	}
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-live')`)
	if got := r.expectEvent("order:created")["data"].(map[string]any)["order_number"]; got != "ORD-live" {
		t.Fatalf("after the replay got %v, want the live ORD-live (no duplicate, no gap)", got)
	}
}

// TestResumeAcrossOutOfOrderCommit: the client's last event came from a
// transaction that committed before an earlier-started one; resuming from
// it must still deliver the late committer.
func TestResumeAcrossOutOfOrderCommit(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	cookie := srv.admin(t, password)
	ctx := context.Background()

	c := srv.connect(t, cookie)
	c.subscribe("order_changes")
	t1, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Rollback(ctx)
	if _, err := t1.Exec(ctx, `INSERT INTO orders (order_number) VALUES ('ORD-T1')`); err != nil {
		t.Fatal(err)
	}
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-T2')`)
	t2 := c.expectEvent("order:created")
	c.conn.Close()
	if err := t1.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	r := srv.connect(t, cookie)
	r.send(map[string]any{"type": "subscribe", "channel": "order_changes", "since": t2["id"]})
	r.expectType("subscribed")
	got := r.expectEvent("order:created")
	if got["data"].(map[string]any)["order_number"] != "ORD-T1" {
		t.Fatalf("resume gave %v, want ORD-T1", got)
	}
	var t1ID, t2ID int64
	fmt.Sscan(got["id"].(string), &t1ID)
	fmt.Sscan(t2["id"].(string), &t2ID)
	if t1ID >= t2ID {
		t.Fatalf("hazard not reproduced: T1 id %d, T2 id %d", t1ID, t2ID)
	}
}

// TestResyncRequired: a resume point that is no longer kept says so.
func TestResyncRequired(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	c := srv.connect(t, srv.admin(t, password))
	c.subscribe("order_changes")
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-old')`)
	old := c.expectEvent("order:created")["id"]
	// Retention drops whole hourly partitions: age the event past any
	// retention (it moves to the default partition), then prune.
	exec(t, pool, `UPDATE pgpush.events SET created_at = created_at - interval '2 days'`)
	if _, err := db.PruneEvents(context.Background(), pool, time.Hour, 100); err != nil {
		t.Fatal(err)
	}
	r := srv.connect(t, srv.admin(t, password))
	r.send(map[string]any{"type": "subscribe", "channel": "order_changes", "since": old})
	r.expectType("subscribed")
	if got := r.expectType("resync_required"); got["channel"] != "order_changes" {
		t.Fatalf("resync_required for %v", got["channel"])
	}
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-new')`)
	r.expectEvent("order:created")
}

// TestTransactionOrderAndLargeRows: 200 rows of one transaction arrive in
// its order, and a 1 MB row arrives whole (far past NOTIFY's 8000 bytes).
func TestTransactionOrderAndLargeRows(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	exec(t, pool, `ALTER TABLE products ADD COLUMN description text`)
	srv := startServer(t, url, nil)
	c := srv.connect(t, srv.admin(t, password))
	c.subscribe("order_changes")
	c.subscribe("product_changes")

	exec(t, pool, `INSERT INTO orders (order_number) SELECT 'ORD-' || lpad(g::text, 4, '0') FROM generate_series(1, 200) g`)
	for i := 1; i <= 200; i++ {
		ev := c.expectEvent("order:created")
		if got, want := ev["data"].(map[string]any)["order_number"], fmt.Sprintf("ORD-%04d", i); got != want {
			t.Fatalf("event %d is %v, want %s", i, got, want)
		}
	}
	for _, size := range []int{20 << 10, 1 << 20} {
		big := strings.Repeat("x", size)
		exec(t, pool, `INSERT INTO products (sku, name, price, description) VALUES ($1, 'Big', 1, $2)`, fmt.Sprintf("BIG-%d", size), big)
		var ev map[string]any
		for ev == nil || ev["type"] == "new_product" { // the broadcast feed also announces it
			ev = c.read()
		}
		if ev["event"] != "product:created" || ev["data"].(map[string]any)["description"] != big {
			t.Fatalf("%d-byte row did not arrive whole", size)
		}
	}
}

// TestSlowClientDoesNotStallOthers: a socket that stops reading is closed
// with 1013 once its queue is full, while 100 healthy sockets keep getting
// every event.
func TestSlowClientDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	exec(t, pool, `ALTER TABLE customers ADD COLUMN notes text`)
	srv := startServer(t, url, func(c *serverConfig) {
		// The stalled client's blocked write must outlast the test, so
		// that its close frame is what it finds when it reads again.
		c.Hub.WriteWait = time.Minute
	})
	cookie := srv.admin(t, password)

	stalled := srv.dialStalled(t, cookie)
	stalled.subscribe("customer_changes")
	stalled.subscribe("order_changes")

	const healthy, events = 100, 300
	clients := make([]*wsClient, healthy)
	for i := range clients {
		clients[i] = srv.connect(t, cookie)
		clients[i].subscribe("order_changes")
	}
	// 16 rows of 600 KB are more than the stalled socket's 1 MiB queue plus
	// the kernel's 4 MiB send buffer.
	exec(t, pool, `INSERT INTO customers (name, email, notes) SELECT 'Big', 'big' || g || '@example.com', repeat('d', 600000) FROM generate_series(1, 16) g`)
	for i := range events {
		exec(t, pool, `INSERT INTO orders (order_number) VALUES ($1)`, fmt.Sprintf("ORD-%d", i))
	}

	var wg sync.WaitGroup
	errs := make(chan error, healthy)
	for _, c := range clients {
		wg.Go(func() {
			for i := range events {
				m, err := c.readWithin(waitTimeout)
				if err != nil {
					errs <- fmt.Errorf("healthy client at event %d: %v", i, err)
					return
				}
				if want := fmt.Sprintf("ORD-%d", i); m["data"].(map[string]any)["order_number"] != want {
					errs <- fmt.Errorf("healthy client got %v/%v, want %s", m["type"], m["event"], want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Only now does the stalled client read: it finds its backlog cut off
	// by a 1013.
	stalled.expectClose(1013)
}

// TestTwoInstances: two servers on one database both deliver every change,
// a publish through one reaches the other, and a logout on one closes the
// session's socket on the other.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	a := startServer(t, url, nil)
	b := startServer(t, url, nil)
	cookie := a.admin(t, password)

	ca := a.connect(t, cookie)
	cb := b.connect(t, cookie) // same session, other instance: no sticky sessions
	ca.subscribe("order_changes")
	cb.subscribe("order_changes")
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-both')`)
	ca.expectEvent("order:created")
	cb.expectEvent("order:created")

	ca.send(map[string]any{"type": "publish", "channel": "order_changes", "event": "order:note", "data": map[string]any{"text": "hi"}})
	if got := cb.expectEvent("order:note"); got["data"].(map[string]any)["text"] != "hi" {
		t.Fatalf("publish on A reached B as %v", got)
	}
	// The publisher's own copy may overtake its "published" answer.
	first, second := ca.read(), ca.read()
	if first["type"] != "published" {
		first, second = second, first
	}
	if first["type"] != "published" || second["event"] != "order:note" {
		t.Fatalf("publisher got %v and %v, want published and its event", first, second)
	}

	start := time.Now()
	resp, _ := a.request(t, http.MethodPost, "/api/v1/auth/logout", cookie, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout status %d", resp.StatusCode)
	}
	cb.expectClose(websocket.ClosePolicyViolation)
	t.Logf("socket on the other instance closed %v after logout", time.Since(start))
}
