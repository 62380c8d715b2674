package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgpush/pgpush/session"
)

// sseEvent is one Server-Sent Event as a client parses it.
type sseEvent struct {
	ID, Event string
	Data      map[string]any
}

// sseStream reads a GET /api/v1/stream response as EventSource would.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent
	done   chan struct{} // closed when the body ends
}

// openStream GETs /api/v1/stream with query and the cookie (nil: none),
// sending lastEventID as Last-Event-ID when not empty.
func (s *testServer) openStream(t *testing.T, query string, cookie *http.Cookie, lastEventID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/api/v1/stream?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	st := &sseStream{t: t, resp: resp, events: make(chan sseEvent, 1024), done: make(chan struct{})}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-st.done
	})
	go st.parse()
	return st
}

func (st *sseStream) parse() {
	defer close(st.done)
	sc := bufio.NewScanner(st.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev sseEvent
	var data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" || data != "" {
				_ = json.Unmarshal([]byte(data), &ev.Data)
				st.events <- ev
			}
			ev, data = sseEvent{}, ""
		case strings.HasPrefix(line, ":"): // a comment: keep-alive
		case strings.HasPrefix(line, "id: "):
			ev.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.Event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// next returns the next event, failing the test after waitTimeout.
func (st *sseStream) next() sseEvent {
	st.t.Helper()
	select {
	case ev := <-st.events:
		return ev
	case <-st.done:
		select {
		case ev := <-st.events:
			return ev
		default:
		}
		st.t.Fatal("stream ended")
	case <-time.After(waitTimeout):
		st.t.Fatal("no event in time")
	}
	return sseEvent{}
}

// expect skips control events until one named name, which it returns.
func (st *sseStream) expect(name string) sseEvent {
	st.t.Helper()
	for {
		ev := st.next()
		if ev.Event == name {
			return ev
		}
		if ev.Event == "error" {
			st.t.Fatalf("want %s, got error %v", name, ev.Data)
		}
	}
}

// quiet checks that no event named name arrives within d: the stream
// keeps only its own rows, so a short window is enough to see a leak.
func (st *sseStream) quiet(d time.Duration, name string) {
	st.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-st.events:
			if ev.Event == name {
				st.t.Fatalf("unexpected %s: %v", name, ev.Data)
			}
		case <-deadline:
			return
		}
	}
}

// TestStreamResumesAcrossRestart: an event stream delivers row changes with
// id, event and data; after the server restarts, a reconnect with
// Last-Event-ID gets exactly what was committed meanwhile, then live ones.
func TestStreamResumesAcrossRestart(t *testing.T) {
	t.Parallel()
	pool, dbURL, password := newShop(t)
	srv := startServer(t, dbURL, nil)
	cookie := srv.admin(t, password)

	st := srv.openStream(t, "channel=order_changes", cookie, "")
	if st.resp.StatusCode != http.StatusOK || !strings.HasPrefix(st.resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /api/v1/stream: %d %s", st.resp.StatusCode, st.resp.Header.Get("Content-Type"))
	}
	st.expect("subscribed")
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-S1')`)
	ev := st.expect("order:created")
	if ev.ID == "" || ev.ID != ev.Data["id"] || ev.Data["data"].(map[string]any)["order_number"] != "ORD-S1" {
		t.Fatalf("event = %+v, want id: the event id and the §3 object as data", ev)
	}
	lastID := ev.ID

	srv.stop(t)
	for i := range 3 {
		exec(t, pool, `INSERT INTO orders (order_number) VALUES ($1)`, fmt.Sprintf("ORD-down%d", i))
	}
	srv2 := startServer(t, dbURL, nil)
	cookie2 := srv2.admin(t, password)
	re := srv2.openStream(t, "channel=order_changes", cookie2, lastID)
	re.expect("subscribed")
	for i := range 3 {
		got := re.expect("order:created").Data["data"].(map[string]any)["order_number"]
		if want := fmt.Sprintf("ORD-down%d", i); got != want {
			t.Fatalf("replayed %v, want %s", got, want)
		}
	}
	exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-live')`)
	if got := re.expect("order:created").Data["data"].(map[string]any)["order_number"]; got != "ORD-live" {
		t.Fatalf("after the replay got %v, want ORD-live (no gap, no duplicate)", got)
	}
}

// TestStreamMatchIsolation: a customer's stream carries only the rows the
// grant's --match lets them see, and a filter narrows it further.
func TestStreamMatchIsolation(t *testing.T) {
	t.Parallel()
	pool, dbURL, _ := newShop(t)
	store := secStore(t, pool)
	secAddUser(t, store, "ada@shop.example.com", "customer", map[string]string{"customer_id": "1"})
	secAddUser(t, store, "alan@shop.example.com", "customer", map[string]string{"customer_id": "2"})
	// Granted before the server starts: a grant made later reaches it
	// through a reload, which a stream opened at once could beat.
	secGrant(t, pool, session.Grant{Channel: "order_changes", Role: "customer", Match: map[string]string{"customer_id": "customer_id"}})
	srv := startServer(t, dbURL, nil)

	ada := srv.openStream(t, "channel=order_changes", srv.login(t, "ada@shop.example.com", secPassword), "")
	alan := srv.openStream(t, "channel=order_changes&filter="+url.QueryEscape(`{"status":"shipped"}`),
		srv.login(t, "alan@shop.example.com", secPassword), "")
	ada.expect("subscribed")
	alan.expect("subscribed")

	exec(t, pool, `INSERT INTO orders (order_number, customer_id, status) VALUES ('ORD-alan-1', 2, 'pending')`)
	exec(t, pool, `INSERT INTO orders (order_number, customer_id, status) VALUES ('ORD-alan-2', 2, 'shipped')`)
	exec(t, pool, `INSERT INTO orders (order_number, customer_id) VALUES ('ORD-ada', 1)`)
	if got := ada.expect("order:created").Data["data"].(map[string]any)["order_number"]; got != "ORD-ada" {
		t.Fatalf("ada got %v, want only her ORD-ada", got)
	}
	if got := alan.expect("order:created").Data["data"].(map[string]any)["order_number"]; got != "ORD-alan-2" {
		t.Fatalf("alan got %v, want only his shipped ORD-alan-2", got)
	}
	// ada's own row came after alan's: had his leaked, it came first.
	alan.quiet(200*time.Millisecond, "order:created")
}

// TestStreamRefusals: what a bad stream request gets.
func TestStreamRefusals(t *testing.T) {
	t.Parallel()
	_, dbURL, password := newShop(t)
	srv := startServer(t, dbURL, nil)
	cookie := srv.admin(t, password)

	if st := srv.openStream(t, "", cookie, ""); st.resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no channel: %d, want 400", st.resp.StatusCode)
	}
	if st := srv.openStream(t, "channel=order_changes", nil, ""); st.resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no session, anonymous has no grant on order_changes: %d, want 401", st.resp.StatusCode)
	}
	for _, tt := range []struct {
		query string
		want  int
	}{
		{"channel=no_such_channel", http.StatusNotFound},
		{"channel=order_changes&filter=" + url.QueryEscape(`{"total":{"like":1}}`), http.StatusBadRequest},
		{"channel=order_changes&filter=%7B", http.StatusBadRequest},
	} {
		if st := srv.openStream(t, tt.query, cookie, ""); st.resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.query, st.resp.StatusCode, tt.want)
		}
	}
	if st := srv.openStream(t, "channel=order_changes", cookie, "999999"); st.expect("resync_required").Data["channel"] != "order_changes" {
		t.Error("resume from an unknown id: want resync_required for the channel")
	}
}
