package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgpush/pgpush/client"
)

// order is the orders row as events carry it.
type order struct {
	ID         int     `json:"id"`
	Status     string  `json:"status"`
	Total      float64 `json:"total"`
	CustomerID *int    `json:"customer_id"`
}

// TestServer runs the client against the real server: `pgpush serve` as a
// child process on a database of its own per test. The binary is built
// once for all subtests.
func TestServer(t *testing.T) {
	t.Parallel()
	bin := buildPgpush(t)

	t.Run("ChangesWithTypedFields", func(t *testing.T) {
		t.Parallel()
		f := setup(t, bin)
		c := f.newClient(t, client.Options{Email: viewerEmail, Password: viewerPassword})
		if err := c.Connect(t.Context()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		if u := c.User(); u == nil || u.Email != viewerEmail || u.Role != "viewer" {
			t.Fatalf("User() = %+v, want %s with role viewer", u, viewerEmail)
		}
		got := newEvents()
		sub, err := c.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{OnEvent: got.add})
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		if sub.Channel() != "order_changes" {
			t.Errorf("Channel() = %q, want order_changes", sub.Channel())
		}

		f.exec(t, `INSERT INTO orders (status, total, customer_id) VALUES ('new', 99.99, 45)`)
		f.exec(t, `UPDATE orders SET status = 'paid' WHERE id = 1`)
		f.exec(t, `DELETE FROM orders WHERE id = 1`)

		created := got.next(t)
		if created.Event != "order:created" || created.Entity() != "order" || created.Action() != "created" {
			t.Fatalf("first event %q (entity %q, action %q), want order:created", created.Event, created.Entity(), created.Action())
		}
		var row order
		if err := created.Decode(&row); err != nil {
			t.Fatal(err)
		}
		if row.ID != 1 || row.Status != "new" || row.Total != 99.99 || row.CustomerID == nil || *row.CustomerID != 45 {
			t.Errorf("created row = %+v, want id 1, new, 99.99, customer 45", row)
		}
		if created.Channel != "order_changes" || created.ID == "" {
			t.Errorf("created channel %q id %q, want order_changes and an id", created.Channel, created.ID)
		}
		if age := time.Since(created.Timestamp); age < 0 || age > time.Minute {
			t.Errorf("created timestamp %v is %v old, want now", created.Timestamp, age)
		}
		if cf := created.ChangedFields(); cf != nil {
			t.Errorf("created ChangedFields() = %v, want nil", cf)
		}

		updated := got.next(t)
		if updated.Event != "order:updated" {
			t.Fatalf("second event %q, want order:updated", updated.Event)
		}
		cf := updated.ChangedFields()
		if len(cf) != 1 || string(cf["status"]) != `"paid"` {
			t.Errorf("updated ChangedFields() = %s, want only status \"paid\"", jsonString(cf))
		}

		deleted := got.next(t)
		if deleted.Event != "order:deleted" || deleted.Action() != "deleted" {
			t.Fatalf("third event %q, want order:deleted", deleted.Event)
		}
		if err := deleted.Decode(&row); err != nil || row.ID != 1 || row.Status != "paid" {
			t.Errorf("deleted row = %+v (%v), want the old row: id 1, paid", row, err)
		}
		if sub.LastID() != deleted.ID {
			t.Errorf("LastID() = %q, want the last event's id %q", sub.LastID(), deleted.ID)
		}
		if created.ID == updated.ID || updated.ID == deleted.ID {
			t.Errorf("ids %q %q %q, want distinct", created.ID, updated.ID, deleted.ID)
		}
	})

	t.Run("Filter", func(t *testing.T) {
		t.Parallel()
		f := setup(t, bin)
		c := f.newClient(t, client.Options{Email: viewerEmail, Password: viewerPassword})
		if err := c.Connect(t.Context()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		got := newEvents()
		_, err := c.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{
			Filter:  json.RawMessage(`{"status": "paid"}`),
			OnEvent: got.add,
		})
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		for i, status := range []string{"new", "paid", "new", "cancelled", "paid"} {
			f.exec(t, `INSERT INTO orders (status, total) VALUES ($1, $2)`, status, i)
		}
		// Events arrive in commit order, so the second paid order coming
		// right after the first proves the others were filtered out.
		for _, wantID := range []int{2, 5} {
			ev := got.next(t)
			var row order
			if err := ev.Decode(&row); err != nil {
				t.Fatal(err)
			}
			if ev.Event != "order:created" || row.ID != wantID || row.Status != "paid" {
				t.Fatalf("got %s of order %d (%s), want order:created of paid order %d", ev.Event, row.ID, row.Status, wantID)
			}
		}
	})

	t.Run("Since", func(t *testing.T) {
		t.Parallel()
		f := setup(t, bin)
		first := f.newClient(t, client.Options{Email: viewerEmail, Password: viewerPassword})
		if err := first.Connect(t.Context()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		seen := newEvents()
		if _, err := first.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{OnEvent: seen.add}); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		for range 3 {
			f.exec(t, `INSERT INTO orders DEFAULT VALUES`)
		}
		ids := []string{seen.next(t).ID, seen.next(t).ID, seen.next(t).ID}

		// A second client resumes after the first event: it gets the other
		// two from the log, then live events, with nothing in between.
		second := f.newClient(t, client.Options{Email: viewerEmail, Password: viewerPassword})
		if err := second.Connect(t.Context()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		got := newEvents()
		subscribed := make(chan client.Subscribed, 1)
		_, err := second.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{
			Since:        ids[0],
			OnEvent:      got.add,
			OnSubscribed: func(s client.Subscribed) { subscribed <- s },
		})
		if err != nil {
			t.Fatalf("Subscribe since %s: %v", ids[0], err)
		}
		if s := <-subscribed; !s.Resumed || s.Since != ids[0] {
			t.Errorf("Subscribed = %+v, want Resumed", s)
		}
		f.exec(t, `INSERT INTO orders DEFAULT VALUES`)
		live := seen.next(t).ID
		for _, want := range []string{ids[1], ids[2], live} {
			if ev := got.next(t); ev.ID != want {
				t.Fatalf("got event %s, want %s (replay %v then live %s)", ev.ID, want, ids[1:], live)
			}
		}
	})

	t.Run("ResumeAcrossServerRestart", func(t *testing.T) {
		t.Parallel()
		f := setup(t, bin)
		states := make(chan client.StateChange, 1000)
		c := f.newClient(t, client.Options{
			Email: viewerEmail, Password: viewerPassword,
			OnState: func(sc client.StateChange) {
				select {
				case states <- sc:
				default:
				}
			},
		})
		if err := c.Connect(t.Context()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		got := newEvents()
		sub, err := c.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{OnEvent: got.add})
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		waitState(t, states, client.StateConnected)

		const perPhase = 20
		insert := func() {
			for range perPhase {
				f.exec(t, `INSERT INTO orders DEFAULT VALUES`)
			}
		}
		nextOrder := 1
		seenIDs := map[string]bool{}
		expect := func(n int) {
			t.Helper()
			for range n {
				ev := got.next(t)
				var row order
				if err := ev.Decode(&row); err != nil {
					t.Fatal(err)
				}
				if ev.Event != "order:created" || row.ID != nextOrder {
					t.Fatalf("got %s of order %d, want order:created of order %d", ev.Event, row.ID, nextOrder)
				}
				if seenIDs[ev.ID] {
					t.Fatalf("event %s delivered twice", ev.ID)
				}
				seenIDs[ev.ID] = true
				nextOrder++
			}
		}

		insert()
		expect(perPhase)

		// A crash: the client loses the connection and retries while the
		// server is down; rows keep being committed meanwhile.
		f.srv.kill(t)
		if sc := waitState(t, states, client.StateDisconnected); sc.Err == nil {
			t.Error("Disconnected without an error, want why the connection was lost")
		}
		insert()
		f.srv.start(t)
		insert()
		// Every row exactly once, in order: the ones before the crash, the
		// ones committed while the server was down (replayed from the
		// client's last id), the ones after.
		expect(2 * perPhase)
		if sc := waitState(t, states, client.StateConnected); sc.Attempt == 0 {
			t.Errorf("Connected after the restart = %+v, want the attempt that succeeded", sc)
		}

		// A marker row as the very next event shows nothing was repeated.
		f.exec(t, `INSERT INTO orders DEFAULT VALUES`)
		expect(1)
		if c.State() != client.StateConnected {
			t.Errorf("State() = %v, want connected", c.State())
		}
		select {
		case <-sub.Done():
			t.Fatalf("subscription ended: %v", sub.Err())
		default:
		}
	})

	t.Run("AccountDisabled", func(t *testing.T) {
		t.Parallel()
		f := setup(t, bin)
		c := f.newClient(t, client.Options{Email: viewerEmail, Password: viewerPassword})
		if err := c.Connect(t.Context()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		if _, err := c.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{}); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		// Disabling ends the session and closes its socket with 1008; the
		// client's new login is refused, so it closes for good and says why.
		f.cli(t, "user", "disable", viewerEmail)
		select {
		case <-c.Done():
		case <-time.After(waitTimeout):
			t.Fatal("client still running after its account was disabled")
		}
		if !errors.Is(c.Err(), client.ErrBadCredentials) {
			t.Errorf("Err() = %v, want ErrBadCredentials", c.Err())
		}
		if c.State() != client.StateClosed {
			t.Errorf("State() = %v, want closed", c.State())
		}
	})

	t.Run("BadPassword", func(t *testing.T) {
		t.Parallel()
		f := setup(t, bin)
		c := f.newClient(t, client.Options{Email: viewerEmail, Password: "not-the-password"})
		err := c.Connect(t.Context())
		if !errors.Is(err, client.ErrBadCredentials) {
			t.Fatalf("Connect with a wrong password = %v, want ErrBadCredentials", err)
		}
		if want := "log in as " + viewerEmail + ": wrong email or password"; err.Error() != want {
			t.Errorf("error text %q, want %q", err.Error(), want)
		}
		if _, err := c.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{}); !errors.Is(err, client.ErrNotConnected) {
			t.Errorf("Subscribe after a failed Connect = %v, want ErrNotConnected", err)
		}
	})

	t.Run("AnonymousAndRefusals", func(t *testing.T) {
		t.Parallel()
		f := setup(t, bin)

		// Without a grant to anonymous the server closes the socket at once.
		anon := f.newClient(t, client.Options{})
		err := anon.Connect(t.Context())
		var ce *client.CloseError
		if !errors.As(err, &ce) || ce.Code != 1008 {
			t.Fatalf("anonymous Connect without grants = %v, want close 1008", err)
		}

		// The running server reloads grants when told through the
		// database; until then it still refuses anonymous sockets.
		f.cli(t, "grant", "order_changes", "--role", "anonymous")
		deadline := time.Now().Add(waitTimeout)
		for {
			anon = f.newClient(t, client.Options{})
			err := anon.Connect(t.Context())
			if err == nil {
				break
			}
			if !errors.As(err, &ce) || time.Now().After(deadline) {
				t.Fatalf("anonymous Connect with a grant: %v", err)
			}
			time.Sleep(20 * time.Millisecond) // polling for the reload, not synchronisation
		}
		if anon.User() != nil {
			t.Errorf("User() = %+v, want nil when anonymous", anon.User())
		}
		got := newEvents()
		if _, err := anon.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{OnEvent: got.add}); err != nil {
			t.Fatalf("anonymous Subscribe: %v", err)
		}
		_, err = anon.Subscribe(t.Context(), "no_such_changes", client.SubscribeOptions{})
		var se *client.ServerError
		if !errors.As(err, &se) || se.Channel != "no_such_changes" || !strings.Contains(se.Message, "unknown channel") {
			t.Errorf("Subscribe to an unknown channel = %v, want a server error naming it", err)
		}
		if _, err := anon.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{}); !errors.Is(err, client.ErrAlreadySubscribed) {
			t.Errorf("second Subscribe = %v, want ErrAlreadySubscribed", err)
		}
		f.exec(t, `INSERT INTO orders DEFAULT VALUES`)
		if ev := got.next(t); ev.Event != "order:created" {
			t.Errorf("got %s, want order:created", ev.Event)
		}
	})

	t.Run("Snapshot", func(t *testing.T) {
		t.Parallel()
		f := setup(t, bin)
		f.exec(t, `INSERT INTO orders (status) VALUES ('new'), ('paid'), ('paid')`)
		c := f.newClient(t, client.Options{Email: viewerEmail, Password: viewerPassword})
		if err := c.Connect(t.Context()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		snaps := make(chan client.Snapshot, 1)
		got := newEvents()
		_, err := c.Subscribe(t.Context(), "order_changes", client.SubscribeOptions{
			Snapshot:   true,
			Filter:     json.RawMessage(`{"status":"paid"}`),
			OnSnapshot: func(s client.Snapshot) { snaps <- s },
			OnEvent:    got.add,
		})
		if err != nil {
			t.Fatalf("Subscribe with Snapshot: %v", err)
		}
		snap := <-snaps
		var ids []int
		for _, raw := range snap.Rows {
			var row order
			if err := json.Unmarshal(raw, &row); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, row.ID)
		}
		if fmt.Sprint(ids) != "[2 3]" {
			t.Errorf("snapshot rows %v, want the paid orders [2 3]", ids)
		}
		f.exec(t, `INSERT INTO orders (status) VALUES ('paid')`)
		var row order
		if ev := got.next(t); ev.Decode(&row) != nil || row.ID != 4 {
			t.Errorf("first event after the snapshot is of order %d, want 4", row.ID)
		}
	})
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSubscribeValidation covers what Subscribe refuses before sending.
func TestSubscribeValidation(t *testing.T) {
	t.Parallel()
	c, err := client.New("http://127.0.0.1:1", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	tests := []struct {
		name    string
		channel string
		opts    client.SubscribeOptions
		want    string
	}{
		{"empty channel", "", client.SubscribeOptions{}, "empty channel"},
		{"long channel", strings.Repeat("c", 201), client.SubscribeOptions{}, "longer than 200"},
		{"since and snapshot", "c", client.SubscribeOptions{Since: "1", Snapshot: true}, "exclude each other"},
		{"filter not an object", "c", client.SubscribeOptions{Filter: json.RawMessage(`[1]`)}, "JSON object"},
		{"filter not JSON", "c", client.SubscribeOptions{Filter: json.RawMessage(`{`)}, "JSON object"},
		{"not connected", "c", client.SubscribeOptions{}, "call Connect first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.Subscribe(context.Background(), tt.channel, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Subscribe(%q) = %v, want an error containing %q", tt.channel, err, tt.want)
			}
		})
	}
}

// TestNewURL checks the URLs New accepts and derives.
func TestNewURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr bool
	}{
		{"http://localhost:3000", false},
		{"https://push.example.com/prefix/", false},
		{"ws://localhost:3000/ws", false},
		{"wss://push.example.com/ws", false},
		{"ftp://x", true},
		{"localhost:3000", true},
		{"http://", true},
	}
	for _, tt := range tests {
		_, err := client.New(tt.in, client.Options{})
		if (err != nil) != tt.wantErr {
			t.Errorf("New(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
	if _, err := client.New("http://x", client.Options{Email: "a@b.c"}); err == nil {
		t.Error("New with an email and no password succeeded, want an error")
	}
}
