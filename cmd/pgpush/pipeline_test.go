package main

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

var isoMillisZ = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// TestOrderLifecycle is the shop backend's own example: log in, open /ws,
// subscribe to order_changes, write with SQL, branch on message.event.
func TestOrderLifecycle(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	cookie := srv.admin(t, password)

	c, _, err := srv.dial(t, "/ws", cookie, nil)
	if err != nil {
		t.Fatal(err)
	}
	connected := c.expectType("connected")
	if connected["message"] != "WebSocket connection established" || connected["userId"] != float64(1) {
		t.Fatalf("connected frame = %v", connected)
	}
	c.subscribe("order_changes")

	exec(t, pool, `INSERT INTO orders (order_number, customer_id, total, currency) VALUES ('ORD-1234567890', 1, 99.99, 'USD')`)
	created := c.expectEvent("order:created")
	if created["channel"] != "order_changes" {
		t.Errorf("channel = %v, want order_changes", created["channel"])
	}
	if id, ok := created["id"].(string); !ok || id == "" {
		t.Errorf("id = %#v, want a non-empty string", created["id"])
	}
	if ts, _ := created["timestamp"].(string); !isoMillisZ.MatchString(ts) {
		t.Errorf("timestamp = %q, want ISO-8601 UTC with ms and Z", ts)
	}
	data := created["data"].(map[string]any)
	for field, want := range map[string]any{
		"order_number": "ORD-1234567890", "status": "pending", "payment_status": "unpaid",
		"total": 99.99, "customer_id": float64(1), "currency": "USD",
	} {
		if data[field] != want {
			t.Errorf("created data[%s] = %#v, want %#v", field, data[field], want)
		}
	}
	if ts, _ := data["created_at"].(string); !isoMillisZ.MatchString(ts) {
		t.Errorf("data.created_at = %q, want ISO-8601 UTC with ms and Z", ts)
	}
	if _, ok := data["changed_fields"]; ok {
		t.Error("created event carries changed_fields")
	}
	orderID := data["id"]

	exec(t, pool, `UPDATE orders SET status = 'processing', payment_status = 'paid' WHERE order_number = 'ORD-1234567890'`)
	updated := c.expectEvent("order:updated")
	udata := updated["data"].(map[string]any)
	if got, want := udata["changed_fields"], map[string]any{"status": "processing", "payment_status": "paid"}; !reflect.DeepEqual(got, want) {
		t.Errorf("changed_fields = %v, want %v", got, want)
	}
	if udata["status"] != "processing" || udata["total"] != 99.99 || udata["id"] != orderID {
		t.Errorf("updated data = %v, want the whole new row", udata)
	}

	exec(t, pool, `DELETE FROM orders WHERE order_number = 'ORD-1234567890'`)
	deleted := c.expectEvent("order:deleted")
	ddata := deleted["data"].(map[string]any)
	if ddata["id"] != orderID || ddata["status"] != "processing" || ddata["order_number"] != "ORD-1234567890" {
		t.Errorf("deleted data = %v, want the whole old row", ddata)
	}
}

// TestEveryShopTable checks created/updated/deleted on the other tables.
func TestEveryShopTable(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	c := srv.connect(t, srv.admin(t, password))
	exec(t, pool, `INSERT INTO orders (id, order_number) VALUES (500, 'ORD-500')`)

	tests := []struct {
		table, entity, insert, update, changed string
	}{
		{"products", "product", `INSERT INTO products (id, sku, name, price) VALUES (900, 'SKU-9', 'Mug', 12.5)`, `UPDATE products SET stock = 7 WHERE id = 900`, "stock"},
		{"customers", "customer", `INSERT INTO customers (id, name, email) VALUES (900, 'Grace', 'grace@example.com')`, `UPDATE customers SET phone = '555' WHERE id = 900`, "phone"},
		{"shipments", "shipment", `INSERT INTO shipments (id, order_id, carrier) VALUES (900, 500, 'DHL')`, `UPDATE shipments SET status = 'in_transit' WHERE id = 900`, "status"},
		{"transactions", "transaction", `INSERT INTO transactions (id, order_id, amount) VALUES (900, 500, 42.00)`, `UPDATE transactions SET status = 'settled' WHERE id = 900`, "status"},
	}
	for _, tt := range tests {
		channel := tt.entity + "_changes"
		c.subscribe(channel)
		exec(t, pool, tt.insert)
		if tt.table == "products" {
			// products also has the new_product broadcast feed.
			first := c.read()
			second := c.read()
			if first["type"] == "new_product" {
				first, second = second, first
			}
			if first["event"] != "product:created" || second["type"] != "new_product" {
				t.Fatalf("products insert gave %v and %v", first, second)
			}
		} else {
			c.expectEvent(tt.entity + ":created")
		}
		exec(t, pool, tt.update)
		up := c.expectEvent(tt.entity + ":updated")
		changed := up["data"].(map[string]any)["changed_fields"].(map[string]any)
		if _, ok := changed[tt.changed]; !ok || len(changed) != 1 {
			t.Errorf("%s: changed_fields = %v, want only %s", tt.table, changed, tt.changed)
		}
		exec(t, pool, "DELETE FROM "+tt.table+" WHERE id = 900")
		del := c.expectEvent(tt.entity + ":deleted")
		if del["data"].(map[string]any)["id"] != float64(900) {
			t.Errorf("%s: deleted data = %v", tt.table, del["data"])
		}
	}
}

// TestNothingSentFor checks the changes that must send no event: a no-op
// UPDATE, a rolled-back INSERT and an UPDATE of an excluded column.
func TestNothingSentFor(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	exec(t, pool, `ALTER TABLE customers ADD COLUMN password_hash text`)
	if err := run(context.Background(), []string{"watch", "customers", "--exclude", "password_hash", "--database-url", url},
		strings.NewReader(""), new(strings.Builder), new(strings.Builder), func(string) string { return "" }); err != nil {
		t.Fatalf("watch --exclude: %v", err)
	}
	srv := startServer(t, url, nil)
	c := srv.connect(t, srv.admin(t, password))
	c.subscribe("customer_changes")

	exec(t, pool, `INSERT INTO customers (id, name, email, password_hash) VALUES (77, 'Eve', 'eve@example.com', 'secret-hash')`)
	created := c.expectEvent("customer:created")
	if _, leaked := created["data"].(map[string]any)["password_hash"]; leaked {
		t.Fatalf("excluded column left the database: %v", created["data"])
	}

	exec(t, pool, `UPDATE customers SET name = name WHERE id = 77`)                  // no-op
	exec(t, pool, `UPDATE customers SET password_hash = 'other-hash' WHERE id = 77`) // excluded only
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `INSERT INTO customers (name, email) VALUES ('Ghost', 'ghost@example.com')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The marker: the next event must be this one.
	exec(t, pool, `UPDATE customers SET phone = 'marker' WHERE id = 77`)
	got := c.expectEvent("customer:updated")
	if changed := got["data"].(map[string]any)["changed_fields"]; !reflect.DeepEqual(changed, map[string]any{"phone": "marker"}) {
		t.Fatalf("first event after the silent changes = %v, want the marker", got)
	}
}

// TestNoSessionClosesWith1008 and the origin check: SPEC §3 connection rules.
func TestSocketAuthentication(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	// With the demo's anonymous grants a cookieless socket stays open;
	// without any anonymous grant it must be closed.
	exec(t, pool, `DELETE FROM pgpush.grants WHERE role = 'anonymous'`)
	srv := startServer(t, url, func(c *serverConfig) { c.AllowedOrigins = []string{"https://shop.example.com"} })

	t.Run("no cookie closes 1008", func(t *testing.T) {
		c, _, err := srv.dial(t, "/ws", nil, nil)
		if err != nil {
			t.Fatalf("upgrade refused: %v", err)
		}
		c.expectClose(websocket.ClosePolicyViolation)
	})
	t.Run("garbage cookie closes 1008", func(t *testing.T) {
		c, _, err := srv.dial(t, "/ws", &http.Cookie{Name: "pgpush_session", Value: "garbage"}, nil)
		if err != nil {
			t.Fatalf("upgrade refused: %v", err)
		}
		c.expectClose(websocket.ClosePolicyViolation)
	})
	cookie := srv.admin(t, password)
	t.Run("foreign origin gets 403 before upgrade", func(t *testing.T) {
		_, resp, err := srv.dial(t, "/ws", cookie, http.Header{"Origin": {"https://evil.example.com"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("got err %v resp %v, want HTTP 403", err, resp)
		}
	})
	t.Run("allowed origin connects", func(t *testing.T) {
		c, _, err := srv.dial(t, "/ws", cookie, http.Header{"Origin": {"https://shop.example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		c.expectType("connected")
	})
	t.Run("bare host upgrade behaves like /ws", func(t *testing.T) {
		c, _, err := srv.dial(t, "/", cookie, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.expectType("connected")
		c.subscribe("order_changes")
	})
	t.Run("logout closes the socket with 1008", func(t *testing.T) {
		own := srv.admin(t, password)
		c := srv.connect(t, own)
		resp, body := srv.request(t, http.MethodPost, "/api/v1/auth/logout", own, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("logout: %d %s", resp.StatusCode, body)
		}
		c.expectClose(websocket.ClosePolicyViolation)
		if resp, _ := srv.request(t, http.MethodGet, "/api/v1/auth/me", own, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("me after logout: %d, want 401", resp.StatusCode)
		}
	})
}

// TestBadInputKeepsSocketOpen: every bad message gets an error frame and
// the socket goes on serving.
func TestBadInputKeepsSocketOpen(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	c := srv.connect(t, srv.admin(t, password))

	bad := []struct {
		name, frame, wantIn string
	}{
		{"malformed JSON", `{"type":`, "malformed"},
		{"not an object", `[1,2,3]`, "malformed"},
		{"missing type", `{"channel":"order_changes"}`, "type"},
		{"unknown type", `{"type":"explode"}`, "unknown message type"},
		{"missing channel", `{"type":"subscribe"}`, "channel"},
		{"unknown channel", `{"type":"subscribe","channel":"no_such_changes"}`, "unknown channel"},
		{"wrong field type", `{"type":"subscribe","channel":42}`, "wrong type"},
		{"bad since", `{"type":"subscribe","channel":"order_changes","since":"abc"}`, "since"},
		{"deep JSON", `{"type":"ping","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, "malformed"},
	}
	for _, tt := range bad {
		c.sendRaw(websocket.TextMessage, []byte(tt.frame))
		got := c.expectType("error")
		if msg, _ := got["message"].(string); !strings.Contains(msg, tt.wantIn) {
			t.Errorf("%s: error %q, want it to mention %q", tt.name, msg, tt.wantIn)
		}
	}
	c.sendRaw(websocket.BinaryMessage, []byte{0xff, 0x00})
	c.expectType("error")
	c.send(map[string]string{"type": "ping"})
	c.expectType("pong")
	c.subscribe("order_changes")
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-after-garbage')`)
	c.expectEvent("order:created")
}

// TestFanOutAndUnsubscribe: every subscriber gets each event; after
// unsubscribe nothing more arrives.
func TestFanOutAndUnsubscribe(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	cookie := srv.admin(t, password)
	a, b := srv.connect(t, cookie), srv.connect(t, cookie)
	a.subscribe("order_changes")
	b.subscribe("order_changes")
	b.subscribe("customer_changes")
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-fan')`)
	for _, c := range []*wsClient{a, b} {
		c.expectEvent("order:created")
	}
	b.send(map[string]string{"type": "unsubscribe", "channel": "order_changes"})
	b.expectType("unsubscribed")
	exec(t, pool, `UPDATE orders SET status = 'paid' WHERE order_number = 'ORD-fan'`)
	a.expectEvent("order:updated")
	// Marker on a channel b still has: it must be b's next frame.
	exec(t, pool, `INSERT INTO customers (name, email) VALUES ('Marker', 'marker@example.com')`)
	b.expectEvent("customer:created")
}

// TestHTTPBasics covers health, readiness, JSON errors and /api/v1/auth/me.
func TestHTTPBasics(t *testing.T) {
	t.Parallel()
	_, url, password := newShop(t)
	srv := startServer(t, url, nil)
	cookie := srv.admin(t, password)
	tests := []struct {
		method, path string
		cookie       *http.Cookie
		body         any
		want         int
	}{
		{"GET", "/healthz", nil, nil, 200},
		{"GET", "/readyz", nil, nil, 200},
		{"GET", "/nope", nil, nil, 404},
		{"DELETE", "/healthz", nil, nil, 405},
		{"GET", "/api/v1/auth/me", nil, nil, 401},
		{"GET", "/api/v1/auth/me", cookie, nil, 200},
		{"POST", "/api/v1/auth/login", nil, map[string]string{"email": demoAdminEmail, "password": "wrong"}, 401},
		{"POST", "/api/v1/auth/login", nil, map[string]string{"email": "nobody@example.com", "password": "whatever1"}, 401},
		{"POST", "/api/v1/auth/login", nil, "not an object", 400},
		{"POST", "/api/v1/auth/logout", nil, nil, 401},
		{"GET", "/api/v1/stats", nil, nil, 200},
	}
	for _, tt := range tests {
		resp, body := srv.request(t, tt.method, tt.path, tt.cookie, tt.body)
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: status %d, want %d (%s)", tt.method, tt.path, resp.StatusCode, tt.want, body)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: Content-Type %q, want JSON", tt.method, tt.path, ct)
		}
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Errorf("%s %s: body %q is not JSON", tt.method, tt.path, body)
		}
		if tt.want >= 400 && v["error"] == nil {
			t.Errorf("%s %s: body %s has no error", tt.method, tt.path, body)
		}
	}
	resp, body := srv.request(t, "POST", "/api/v1/auth/login", nil, map[string]string{"email": demoAdminEmail, "password": password})
	var login struct {
		User struct {
			ID    int64  `json:"id"`
			Email string `json:"email"`
			Role  string `json:"role"`
		} `json:"user"`
	}
	if err := json.Unmarshal(body, &login); err != nil || login.User.Email != demoAdminEmail || login.User.Role != "admin" {
		t.Fatalf("login body %s", body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "pgpush_session" && (!c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure) {
			t.Errorf("session cookie %v: want HttpOnly, SameSite=Lax, not Secure over plain HTTP", c)
		}
	}
}
