package realtime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pgpush/pgpush/session"
)

// TestSessionEndedWhileOpening: a socket whose session ended between the
// session lookup and its registration is closed with 1008 at once.
func TestSessionEndedWhileOpening(t *testing.T) {
	t.Parallel()
	hub := NewHub(Options{}, allowAll{}, nil, discard())
	hub.CheckSessionsOnOpen(func(context.Context, string) (bool, error) { return false, nil })
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		hub.ServeConn(context.Background(), conn, &session.Principal{UserID: 1, SessionID: "gone"}, nil)
	}))
	defer srv.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue // the connected frame
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != ClosePolicyViolation {
			t.Fatalf("got %v, want close 1008", err)
		}
		break
	}
	if err := hub.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// serveHub serves hub's /ws on a test server and returns its ws:// URL.
func serveHub(t *testing.T, hub *Hub) string {
	t.Helper()
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		hub.ServeConn(context.Background(), conn, &session.Principal{UserID: 1, Role: "anonymous"}, nil)
	}))
	t.Cleanup(func() {
		if err := hub.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestCloseCodeReachesClientStillSending: a client that keeps writing
// after the server decided to close still reads the close code, instead
// of a reset that overtook it (the server drains before closing).
func TestCloseCodeReachesClientStillSending(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  Options
		frame []byte
		want  int
	}{
		{"frame over the limit", Options{MaxFrameBytes: 1 << 10}, []byte(`{"type":"ping","pad":"` + strings.Repeat("x", 4<<10) + `"}`), CloseMessageTooBig},
		{"flood", Options{MessageRate: 1, MessageBurst: 5}, []byte(`{"type":"ping"}`), ClosePolicyViolation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hub := NewHub(tt.opts, allowAll{}, nil, discard())
			conn, _, err := websocket.DefaultDialer.Dial(serveHub(t, hub), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			stop := make(chan struct{})
			writerDone := make(chan struct{})
			go func() {
				defer close(writerDone)
				for {
					select {
					case <-stop:
						return
					default:
					}
					_ = conn.SetWriteDeadline(time.Now().Add(waitTimeout))
					if conn.WriteMessage(websocket.TextMessage, tt.frame) != nil {
						return
					}
				}
			}()
			_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
			var err2 error
			for err2 == nil {
				_, _, err2 = conn.ReadMessage()
			}
			close(stop)
			<-writerDone
			var ce *websocket.CloseError
			if !errors.As(err2, &ce) || ce.Code != tt.want {
				t.Fatalf("read ended with %v, want close %d", err2, tt.want)
			}
		})
	}
}

// TestWSFrameLengths: frames the writer builds itself read back with a
// real WebSocket client at each length encoding (7-bit, 16-bit, 64-bit).
func TestWSFrameLengths(t *testing.T) {
	t.Parallel()
	sizes := []int{0, 125, 126, 65535, 65536, 200000}
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, n := range sizes {
			if _, err := conn.NetConn().Write(wsTextFrame([]byte(strings.Repeat("a", n)))); err != nil {
				return
			}
		}
		_, _ = conn.NetConn().Write(wsCloseFrame(CloseNormal, strings.Repeat("r", 200)))
	}))
	defer srv.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for _, n := range sizes {
		kind, msg, err := conn.ReadMessage()
		if err != nil || kind != websocket.TextMessage || len(msg) != n {
			t.Fatalf("frame of %d bytes read as kind %d, %d bytes, %v", n, kind, len(msg), err)
		}
	}
	_, _, err = conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseNormal {
		t.Fatalf("after the frames got %v, want close %d (a long reason is cut to fit a control frame)", err, CloseNormal)
	}
}

// TestWriteDelayBatchesFanoutWrites: with Options.WriteDelay the fan-out
// writes an idle socket at once, and holds the events for a socket it
// wrote less than WriteDelay ago until then, in one write; without it,
// every Dispatch writes.
func TestWriteDelayBatchesFanoutWrites(t *testing.T) {
	t.Parallel()
	for _, delay := range []time.Duration{0, time.Hour} {
		t.Run(delay.String(), func(t *testing.T) {
			t.Parallel()
			b := setupHub(t, Options{WriteDelay: delay})
			b.grants.set("order_changes", session.Access{})
			conn, _, err := websocket.DefaultDialer.Dial(serveHub(t, b.hub), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			readType := subscribeOrders(t, conn)
			writes := b.hub.Stats().FanoutWrites.Load
			dispatch := func(id int) {
				b.hub.Dispatch([]*Event{b.event("order_changes", "order:created", fmt.Sprintf(`{"id":%d}`, id))})
			}
			// "subscribed" is written before the subscription goes live
			// (events meanwhile are held, then queued with the activation),
			// and a writer ends its turn after its write: what is counted
			// here is a live subscription on a socket whose writer is idle.
			waitLiveAndIdle(t, b.hub)
			dispatch(1)
			if got := writes(); got != 1 {
				t.Fatalf("%d writes after the first event, want 1: an idle socket is written at once", got)
			}
			readType("order:created")
			waitLiveAndIdle(t, b.hub)
			dispatch(2)
			dispatch(3)
			want := int64(3)
			if delay > 0 {
				if got := writes(); got != 1 {
					t.Fatalf("%d writes after 3 events, want 1: the socket was written less than the delay ago", got)
				}
				b.hub.flushHeld(nil, time.Now().Add(delay))
				want = 2
			}
			readType("order:created")
			readType("order:created")
			if got := writes(); got != want {
				t.Errorf("%d fan-out writes for 3 events, want %d", got, want)
			}
		})
	}
}

// waitLiveAndIdle waits until every subscription of h is live and no
// socket's writer is running.
func waitLiveAndIdle(t *testing.T, h *Hub) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		busy := false
		h.mu.RLock()
		for c := range h.clients {
			for _, s := range c.subs {
				s.mu.Lock()
				busy = busy || s.pending
				s.mu.Unlock()
			}
			if c.inline != nil {
				c.inline.mu.Lock()
				busy = busy || c.inline.running
				c.inline.mu.Unlock()
			}
		}
		h.mu.RUnlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a subscription is still pending or a socket's writer still running")
		}
		runtime.Gosched()
	}
}

// TestServeConnOverTLS: a connection without a file descriptor of its own
// (TLS in this process) reads and writes through the blocking fallbacks.
func TestServeConnOverTLS(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{})
	upgrader := websocket.Upgrader{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		b.hub.ServeConn(context.Background(), conn, &session.Principal{UserID: 1, Role: "anonymous"}, nil)
	}))
	defer srv.Close()
	dialer := websocket.Dialer{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig}
	conn, _, err := dialer.Dial("wss"+strings.TrimPrefix(srv.URL, "https"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	expect := subscribeOrders(t, conn)
	b.hub.Dispatch([]*Event{b.event("order_changes", "order:created", `{"id":1}`)})
	expect("order:created")
}

// TestPingSweep: the hub's ping sweep keeps a /ws peer that answers open,
// and one that stops answering is closed once its pong deadline passes.
func TestPingSweep(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{PongWait: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.hub.RunPings(ctx)
	url := serveHub(t, b.hub)

	// The answering peer: gorilla's default handler pongs while it reads.
	answering, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer answering.Close()
	pings := make(chan struct{}, 100)
	answering.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return answering.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	read := make(chan error, 1)
	go func() {
		for {
			if _, _, err := answering.ReadMessage(); err != nil {
				read <- err
				return
			}
		}
	}()

	// The silent peer reads (so it sees the close) but never pongs.
	silent, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetPingHandler(func(string) error { return nil })
	_ = silent.SetReadDeadline(time.Now().Add(waitTimeout))
	var closeErr error
	for closeErr == nil {
		_, _, closeErr = silent.ReadMessage()
	}
	var ce *websocket.CloseError
	if !errors.As(closeErr, &ce) || ce.Code != CloseGoingAway {
		t.Fatalf("silent peer: %v, want close 1001", closeErr)
	}

	// By then the answering peer has been pinged past several pong
	// deadlines, and is still open.
	for range 3 {
		select {
		case <-pings:
		case err := <-read:
			t.Fatalf("answering peer closed: %v", err)
		case <-time.After(waitTimeout):
			t.Fatal("no ping")
		}
	}
	if err := answering.WriteJSON(map[string]string{"type": "ping"}); err != nil {
		t.Fatalf("answering peer: %v", err)
	}
	select {
	case err := <-read:
		t.Fatalf("answering peer closed: %v", err)
	default:
	}
}

// subscribeOrders subscribes conn to order_changes and returns a reader
// that fails the test unless the next frame has the wanted type or event.
func subscribeOrders(t *testing.T, conn *websocket.Conn) (expect func(want string)) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	expect = func(want string) {
		t.Helper()
		var m map[string]any
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if m["type"] != want && m["event"] != want {
			t.Fatalf("got %v, want %s", m, want)
		}
	}
	expect("connected")
	if err := conn.WriteJSON(map[string]string{"type": "subscribe", "channel": "order_changes"}); err != nil {
		t.Fatal(err)
	}
	expect("subscribed")
	return expect
}
