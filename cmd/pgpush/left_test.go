package main

import (
	"testing"

	"github.com/pgpush/pgpush/session"
)

// TestRowLeavesView: an order that moves from customer 101 to 102 is
// "left" for 101 (with the row as it was) and "updated" for 102; a filter
// works the same way; live and on replay; and TRUNCATE reaches everyone.
func TestRowLeavesView(t *testing.T) {
	t.Parallel()
	pool, dbURL, _ := newShop(t)
	exec(t, pool, `INSERT INTO customers (id, name, email) VALUES (101, 'Ada', 'ada@shop.example.com'), (102, 'Alan', 'alan@shop.example.com')`)
	exec(t, pool, `INSERT INTO orders (order_number, customer_id, status) VALUES ('ORD-moving', 101, 'paid')`)
	store := secStore(t, pool)
	secAddUser(t, store, "ada@shop.example.com", "customer", map[string]string{"customer_id": "101"})
	secAddUser(t, store, "alan@shop.example.com", "customer", map[string]string{"customer_id": "102"})
	secGrant(t, pool, session.Grant{Channel: "order_changes", Role: "customer", Match: map[string]string{"customer_id": "customer_id"}})
	srv := startServer(t, dbURL, nil)
	ada := srv.connect(t, srv.login(t, "ada@shop.example.com", secPassword))
	alan := srv.connect(t, srv.login(t, "alan@shop.example.com", secPassword))
	ada.subscribe("order_changes")
	alan.send(map[string]any{"type": "subscribe", "channel": "order_changes", "filter": map[string]any{"status": map[string]any{"ne": "cancelled"}}})
	alan.expectType("subscribed")

	exec(t, pool, `UPDATE orders SET customer_id = 102, total = 5 WHERE order_number = 'ORD-moving'`)
	left := ada.expectEvent("order:left")
	data := left["data"].(map[string]any)
	if data["customer_id"] != 101.0 || data["total"] != 0.0 || data["changed_fields"] != nil {
		t.Errorf("left data = %v, want the row before the update (customer 101, total 0), no changed_fields", data)
	}
	moved := alan.expectEvent("order:updated")["data"].(map[string]any)
	if moved["order_number"] != "ORD-moving" || moved["customer_id"] != 102.0 {
		t.Errorf("alan got %v, want the whole new row", moved)
	}

	// Out of a filter's view: alan does not follow cancelled orders.
	exec(t, pool, `UPDATE orders SET status = 'cancelled' WHERE order_number = 'ORD-moving'`)
	if got := alan.expectEvent("order:left")["data"].(map[string]any); got["status"] != "paid" {
		t.Errorf("left data = %v, want status paid (as it was)", got)
	}
	leftID := left["id"].(string)

	// On replay: ada reconnects from before the move.
	exec(t, pool, `TRUNCATE orders CASCADE`)
	if got := alan.expectEvent("order:truncated")["data"].(map[string]any); len(got) != 0 {
		t.Errorf("truncated data = %v, want {}", got)
	}
	ada.expectEvent("order:truncated")

	again := srv.connect(t, srv.login(t, "ada@shop.example.com", secPassword))
	firstID := eventIDs(t, pool, "order_changes")
	var before string
	for i, id := range firstID {
		if id == leftID && i > 0 {
			before = firstID[i-1]
		}
	}
	if before == "" {
		t.Fatalf("no event before the move in %v", firstID)
	}
	again.send(map[string]any{"type": "subscribe", "channel": "order_changes", "since": before})
	again.expectType("subscribed")
	if got := again.expectEvent("order:left"); got["id"] != leftID {
		t.Errorf("replayed %v, want the left event %s", got, leftID)
	}
	again.expectEvent("order:truncated")
}
