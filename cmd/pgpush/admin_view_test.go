package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/pgpush/pgpush/db/dbtest"
)

// overview is GET /api/v1/admin/overview as a client reads it.
type overview struct {
	ConnectedSockets int `json:"connected_sockets"`
	Listener         struct {
		Ready bool `json:"ready"`
	} `json:"listener"`
	Channels []struct {
		Channel string `json:"channel"`
		Sockets int    `json:"sockets"`
	} `json:"channels"`
	Watched []struct {
		Table   string   `json:"table"`
		Entity  string   `json:"entity"`
		Channel string   `json:"channel"`
		Columns []string `json:"columns"`
	} `json:"watched"`
	Grants []struct {
		Channel string            `json:"channel"`
		Role    string            `json:"role"`
		Publish bool              `json:"publish"`
		Match   map[string]string `json:"match"`
	} `json:"grants"`
	History struct {
		IntervalSeconds    float64    `json:"interval_seconds"`
		Time               []int64    `json:"time"`
		ReceivedPerSecond  []float64  `json:"received_per_second"`
		DeliveredPerSecond []float64  `json:"delivered_per_second"`
		LatencyP50Millis   []*float64 `json:"latency_p50_ms"`
		LatencyP99Millis   []*float64 `json:"latency_p99_ms"`
		ListenerLagMillis  []int64    `json:"listener_lag_ms"`
	} `json:"history"`
}

func getOverview(t *testing.T, srv *testServer, cookie *http.Cookie) overview {
	t.Helper()
	resp, body := srv.request(t, http.MethodGet, "/api/v1/admin/overview", cookie, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/admin/overview: status %d, body %s", resp.StatusCode, body)
	}
	var o overview
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatalf("overview is not the expected JSON: %v\n%s", err, body)
	}
	h := o.History
	n := len(h.Time)
	for name, l := range map[string]int{
		"received_per_second": len(h.ReceivedPerSecond), "delivered_per_second": len(h.DeliveredPerSecond),
		"latency_p50_ms": len(h.LatencyP50Millis), "latency_p99_ms": len(h.LatencyP99Millis), "listener_lag_ms": len(h.ListenerLagMillis),
	} {
		if l != n {
			t.Fatalf("history column %s holds %d samples, time holds %d", name, l, n)
		}
	}
	return o
}

func (o overview) sockets(channel string) (int, bool) {
	for _, c := range o.Channels {
		if c.Channel == channel {
			return c.Sockets, true
		}
	}
	return 0, false
}

func TestAdminOverview(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	admin := srv.admin(t, password)

	o := getOverview(t, srv, admin)
	var tables []string
	for _, w := range o.Watched {
		tables = append(tables, w.Table)
		if w.Table == "orders" {
			if w.Entity != "order" || w.Channel != "order_changes" || !slices.Contains(w.Columns, "order_number") {
				t.Errorf("watched orders = %+v, want entity order, channel order_changes, columns with order_number", w)
			}
		}
	}
	if want := []string{"customers", "orders", "products", "shipments", "transactions"}; !slices.Equal(tables, want) {
		t.Errorf("watched tables %q, want %q", tables, want)
	}
	var grants []string
	for _, g := range o.Grants {
		if g.Role == "anonymous" && g.Publish && g.Match != nil {
			grants = append(grants, g.Channel)
		}
	}
	if want := []string{"notify:*", "room:*"}; !slices.Equal(grants, want) {
		t.Errorf("grants to anonymous with publish: %q, want %q (the demo's); all: %+v", grants, want, o.Grants)
	}
	if n, ok := o.sockets("order_changes"); !ok || n != 0 {
		t.Errorf("order_changes: %d sockets (listed: %v), want 0, listed as a watched channel", n, ok)
	}
	if !o.Listener.Ready {
		t.Error("listener not ready in the overview of a started server")
	}

	ws := srv.connect(t, admin)
	ws.subscribe("order_changes")
	o = getOverview(t, srv, admin)
	if n, _ := o.sockets("order_changes"); n != 1 {
		t.Errorf("order_changes: %d sockets with one subscribed socket open, want 1", n)
	}
	if o.ConnectedSockets < 1 {
		t.Errorf("connected_sockets = %d with a socket open, want at least 1", o.ConnectedSockets)
	}

	const inserts = 5
	for i := range inserts {
		exec(t, pool, `INSERT INTO orders (order_number) VALUES ($1)`, "ADM-"+string(rune('A'+i)))
	}
	for range inserts {
		ws.expectEvent("order:created")
	}
	// The sampler closes an interval every second: poll until the inserts
	// are in the history.
	dbtest.Eventually(t, waitTimeout, func() bool {
		h := getOverview(t, srv, admin).History
		var received, delivered float64
		latency := false
		for i := range h.Time {
			received += h.ReceivedPerSecond[i] * h.IntervalSeconds
			delivered += h.DeliveredPerSecond[i] * h.IntervalSeconds
			if p50, p99 := h.LatencyP50Millis[i], h.LatencyP99Millis[i]; p50 != nil && p99 != nil && *p50 >= 0 && *p99 >= *p50 {
				latency = true
			}
		}
		// Rates are per second of each real interval, which is about
		// a second: the sums are the counts give or take rounding.
		return received >= inserts-0.5 && delivered >= inserts-0.5 && latency
	})
}

func TestAdminOverviewRefusesOthers(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	secAddUser(t, secStore(t, pool), "ada@shop.example.com", "customer", map[string]string{"customer_id": "1"})
	customer := srv.login(t, "ada@shop.example.com", secPassword)

	for _, tt := range []struct {
		name   string
		method string
		cookie *http.Cookie
		want   int
	}{
		{"no session", http.MethodGet, nil, http.StatusUnauthorized},
		{"customer", http.MethodGet, customer, http.StatusForbidden},
		{"admin posts", http.MethodPost, srv.admin(t, password), http.StatusMethodNotAllowed},
	} {
		resp, body := srv.request(t, tt.method, "/api/v1/admin/overview", tt.cookie, nil)
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %s /api/v1/admin/overview = %d %s, want %d", tt.name, tt.method, resp.StatusCode, body, tt.want)
		}
	}
}
