package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgpush/pgpush/client"
)

// The tests in this file script the server's side of the protocol with a
// fake, for frames the real server does not send yet (snapshots, SPEC §3.2)
// or sends only in states hard to reach on purpose (resync_required).

// fakeServer accepts sockets on /ws, sends "connected", and hands each
// socket to the test.
type fakeServer struct {
	srv   *httptest.Server
	conns chan *fakeConn
	// logins and logouts count the auth requests; each login hands out
	// the cookie pgpush_session=s<n>.
	logins, logouts atomic.Int32

	mu   sync.Mutex
	open []*websocket.Conn
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{conns: make(chan *fakeConn, 10)}
	upgrader := websocket.Upgrader{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/auth/login":
			n := f.logins.Add(1)
			http.SetCookie(w, &http.Cookie{Name: "pgpush_session", Value: fmt.Sprintf("s%d", n), Path: "/"})
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"user":{"id":1,"email":"viewer@example.com","role":"viewer"}}`)
			return
		case "/api/v1/auth/logout":
			f.logouts.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		case "/ws":
		default:
			http.NotFound(w, r)
			return
		}
		if got, want := r.Header.Get("Origin"), "http://"+r.Host; got != want {
			http.Error(w, "origin "+got+", want "+want, http.StatusForbidden)
			return
		}
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.open = append(f.open, conn)
		f.mu.Unlock()
		_ = conn.WriteJSON(map[string]any{"type": "connected", "message": "WebSocket connection established", "userId": nil})
		var cookie string
		if c, err := r.Cookie("pgpush_session"); err == nil {
			cookie = c.Value
		}
		f.conns <- &fakeConn{conn: conn, cookie: cookie}
	}))
	t.Cleanup(func() {
		f.srv.Close()
		// Upgraded connections are no longer the httptest server's.
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.open {
			c.Close()
		}
	})
	return f
}

// accept waits for the client's next socket.
func (f *fakeServer) accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(waitTimeout):
		t.Fatal("the client did not connect in time")
		return nil
	}
}

type fakeConn struct {
	conn   *websocket.Conn
	cookie string // the session cookie the client sent
}

// clientFrame is what the fake reads from the client.
type clientFrame struct {
	Type     string          `json:"type"`
	Channel  string          `json:"channel"`
	Since    string          `json:"since"`
	Snapshot bool            `json:"snapshot"`
	Filter   json.RawMessage `json:"filter"`
}

// expect reads the client's next frame other than a ping.
func (c *fakeConn) expect(t *testing.T, typ string) clientFrame {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		var f clientFrame
		if err := c.conn.ReadJSON(&f); err != nil {
			t.Fatalf("read the client's %s frame: %v", typ, err)
		}
		if f.Type == "ping" {
			continue
		}
		if f.Type != typ {
			t.Fatalf("client sent %+v, want type %q", f, typ)
		}
		return f
	}
}

func (c *fakeConn) send(t *testing.T, frames ...string) {
	t.Helper()
	for _, f := range frames {
		if err := c.conn.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
			t.Fatalf("send %s: %v", f, err)
		}
	}
}

// closeWith sends a close frame with code, as the server does, and ends
// the socket.
func (c *fakeConn) closeWith(code int, reason string) {
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	c.conn.Close()
}

// drop ends the socket without a close frame, as a crash would.
func (c *fakeConn) drop() { c.conn.Close() }

func event(id, name string) string {
	return `{"id":"` + id + `","channel":"order_changes","event":"` + name + `","data":{"id":` + id + `},"timestamp":"2026-01-25T10:30:00.000Z"}`
}

// TestSnapshotFrames: the snapshot comes whole, once, before the events;
// after a drop the client resumes from the last event, not with a new
// snapshot, and a repeated event is dropped.
func TestSnapshotFrames(t *testing.T) {
	t.Parallel()
	fake := newFakeServer(t)
	c := newClientFor(t, fake.srv.URL, client.Options{})
	if err := c.Connect(t.Context()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	conn := fake.accept(t)

	var order []string // what the callbacks saw, in order; only the client's goroutine appends
	snaps := make(chan client.Snapshot, 2)
	got := newEvents()
	subscribed := make(chan client.Subscribed, 2)
	type result struct {
		sub *client.Subscription
		err error
	}
	done := make(chan result, 1)
	go func() {
		sub, err := c.Subscribe(context.Background(), "order_changes", client.SubscribeOptions{
			Snapshot: true,
			Filter:   json.RawMessage(`{"status":"paid"}`),
			OnSnapshot: func(s client.Snapshot) {
				order = append(order, "snapshot")
				snaps <- s
			},
			OnSubscribed: func(s client.Subscribed) {
				order = append(order, "subscribed")
				subscribed <- s
			},
			OnEvent: func(ev client.Event) {
				order = append(order, "event "+ev.ID)
				got.add(ev)
			},
		})
		done <- result{sub, err}
	}()

	f := conn.expect(t, "subscribe")
	if f.Channel != "order_changes" || !f.Snapshot || f.Since != "" || string(f.Filter) != `{"status":"paid"}` {
		t.Fatalf("subscribe frame %+v, want a snapshot with the filter and no since", f)
	}
	conn.send(t,
		`{"type":"snapshot","channel":"order_changes","rows":[{"id":1},{"id":2}],"more":true}`,
		`{"type":"snapshot","channel":"order_changes","rows":[{"id":3}],"more":false}`,
		`{"type":"subscribed","channel":"order_changes","position":"10"}`,
		event("11", "order:updated"),
	)
	r := <-done
	if r.err != nil {
		t.Fatalf("Subscribe: %v", r.err)
	}
	snap := <-snaps
	if len(snap.Rows) != 3 || string(snap.Rows[2]) != `{"id":3}` || snap.Position != "10" || snap.Channel != "order_changes" {
		t.Errorf("snapshot = %+v, want 3 rows in order at position 10", snap)
	}
	if ev := got.next(t); ev.ID != "11" {
		t.Fatalf("event %s, want 11", ev.ID)
	}
	if s := <-subscribed; s.Resumed || s.Position != "10" {
		t.Errorf("first Subscribed = %+v, want not resumed, position 10", s)
	}

	conn.drop()
	conn = fake.accept(t)
	f = conn.expect(t, "subscribe")
	if f.Since != "11" || f.Snapshot || string(f.Filter) != `{"status":"paid"}` {
		t.Fatalf("resubscribe frame %+v, want since 11 with the filter and no snapshot", f)
	}
	conn.send(t,
		`{"type":"subscribed","channel":"order_changes","position":"12"}`,
		event("11", "order:updated"), // a repeat: dropped
		event("12", "order:deleted"),
	)
	if ev := got.next(t); ev.ID != "12" {
		t.Fatalf("event %s after the reconnect, want 12 (11 was a repeat)", ev.ID)
	}
	if s := <-subscribed; !s.Resumed || s.Since != "11" || s.Position != "12" {
		t.Errorf("Subscribed after the reconnect = %+v, want resumed since 11 at position 12", s)
	}
	if r.sub.LastID() != "12" {
		t.Errorf("LastID() = %q, want 12", r.sub.LastID())
	}
	// Close waits for the client's goroutine, so order is safe to read.
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{"snapshot", "subscribed", "event 11", "subscribed", "event 12"}
	if jsonString(order) != jsonString(want) {
		t.Errorf("callbacks ran as %v, want %v", order, want)
	}
	if !errors.Is(r.sub.Err(), client.ErrClosed) {
		t.Errorf("Err() after Close = %v, want ErrClosed", r.sub.Err())
	}
}

// TestSnapshotUnsupported: a server that answers a snapshot subscribe
// without snapshot frames is not taken for one with no rows.
func TestSnapshotUnsupported(t *testing.T) {
	t.Parallel()
	fake := newFakeServer(t)
	c := newClientFor(t, fake.srv.URL, client.Options{})
	if err := c.Connect(t.Context()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	conn := fake.accept(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Subscribe(context.Background(), "order_changes", client.SubscribeOptions{Snapshot: true})
		errc <- err
	}()
	conn.expect(t, "subscribe")
	conn.send(t, `{"type":"subscribed","channel":"order_changes","position":"10"}`)
	if err := <-errc; !errors.Is(err, client.ErrSnapshotUnsupported) {
		t.Fatalf("Subscribe = %v, want ErrSnapshotUnsupported", err)
	}
	if f := conn.expect(t, "unsubscribe"); f.Channel != "order_changes" {
		t.Errorf("unsubscribe frame %+v, want order_changes", f)
	}
}

// TestResyncRequired: resync_required reaches OnResync, and the next
// resume starts from the position of that subscription, not from the id
// the server no longer keeps.
func TestResyncRequired(t *testing.T) {
	t.Parallel()
	fake := newFakeServer(t)
	c := newClientFor(t, fake.srv.URL, client.Options{})
	if err := c.Connect(t.Context()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	conn := fake.accept(t)
	resync := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Subscribe(context.Background(), "order_changes", client.SubscribeOptions{
			Since:    "5",
			OnResync: func() { resync <- struct{}{} },
		})
		errc <- err
	}()
	if f := conn.expect(t, "subscribe"); f.Since != "5" {
		t.Fatalf("subscribe frame %+v, want since 5", f)
	}
	conn.send(t,
		`{"type":"subscribed","channel":"order_changes","position":"9"}`,
		`{"type":"resync_required","channel":"order_changes"}`,
	)
	if err := <-errc; err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	select {
	case <-resync:
	case <-time.After(waitTimeout):
		t.Fatal("OnResync not called")
	}
	conn.drop()
	conn = fake.accept(t)
	if f := conn.expect(t, "subscribe"); f.Since != "9" {
		t.Fatalf("resubscribe frame %+v, want since 9 (the position after the resync)", f)
	}
}

// TestServerEndsSubscription: an error frame then "unsubscribed" (a
// revoked grant) ends the subscription with that error; an unsubscribe
// asked for ends it with none.
func TestServerEndsSubscription(t *testing.T) {
	t.Parallel()
	fake := newFakeServer(t)
	c := newClientFor(t, fake.srv.URL, client.Options{})
	if err := c.Connect(t.Context()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	conn := fake.accept(t)
	subc := make(chan *client.Subscription, 2)
	for _, ch := range []string{"a_changes", "b_changes"} {
		go func() {
			sub, err := c.Subscribe(context.Background(), ch, client.SubscribeOptions{})
			if err != nil {
				t.Errorf("Subscribe %s: %v", ch, err)
			}
			subc <- sub
		}()
		f := conn.expect(t, "subscribe")
		conn.send(t, `{"type":"subscribed","channel":"`+f.Channel+`"}`)
	}
	subs := map[string]*client.Subscription{}
	for range 2 {
		s := <-subc
		if s == nil {
			t.FailNow()
		}
		subs[s.Channel()] = s
	}

	conn.send(t,
		`{"type":"error","channel":"a_changes","message":"not allowed on channel \"a_changes\""}`,
		`{"type":"unsubscribed","channel":"a_changes"}`,
	)
	a := subs["a_changes"]
	select {
	case <-a.Done():
	case <-time.After(waitTimeout):
		t.Fatal("subscription not ended by the server's unsubscribed")
	}
	var se *client.ServerError
	if !errors.As(a.Err(), &se) || se.Channel != "a_changes" {
		t.Errorf("Err() = %v, want the server's error on a_changes", a.Err())
	}

	b := subs["b_changes"]
	b.Unsubscribe()
	<-b.Done()
	if b.Err() != nil {
		t.Errorf("Err() after Unsubscribe = %v, want nil", b.Err())
	}
	if f := conn.expect(t, "unsubscribe"); f.Channel != "b_changes" {
		t.Errorf("unsubscribe frame %+v, want b_changes", f)
	}
}

// TestReloginAfterSessionEnded: a socket closed with 1008 (the session
// ended: a logout elsewhere, an expired session) makes the client log in
// again before it reconnects, then resume; Close logs out.
func TestReloginAfterSessionEnded(t *testing.T) {
	t.Parallel()
	fake := newFakeServer(t)
	states := make(chan client.StateChange, 100)
	c := newClientFor(t, fake.srv.URL, client.Options{
		Email: "viewer@example.com", Password: "pw",
		OnState: func(sc client.StateChange) { states <- sc },
	})
	if err := c.Connect(t.Context()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	conn := fake.accept(t)
	if conn.cookie != "s1" {
		t.Fatalf("first socket sent cookie %q, want s1 from the login", conn.cookie)
	}
	got := newEvents()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Subscribe(context.Background(), "order_changes", client.SubscribeOptions{OnEvent: got.add})
		errc <- err
	}()
	conn.expect(t, "subscribe")
	conn.send(t, `{"type":"subscribed","channel":"order_changes","position":"3"}`, event("4", "order:created"))
	if err := <-errc; err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	got.next(t)

	conn.closeWith(1008, "session ended")
	sc := waitState(t, states, client.StateDisconnected)
	var ce *client.CloseError
	if !errors.As(sc.Err, &ce) || ce.Code != 1008 || ce.Reason != "session ended" {
		t.Errorf("Disconnected with %v, want close 1008 session ended", sc.Err)
	}
	conn = fake.accept(t)
	if conn.cookie != "s2" {
		t.Errorf("socket after 1008 sent cookie %q, want s2 from a new login", conn.cookie)
	}
	if f := conn.expect(t, "subscribe"); f.Since != "4" {
		t.Errorf("resubscribe frame %+v, want since 4", f)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := fake.logouts.Load(); n != 1 {
		t.Errorf("Close logged out %d times, want once", n)
	}
}
