package realtime

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pgpush/pgpush/session"
)

// TestBatchConnWritesOnceAtFlush: frames written during a batch reach the
// peer in one write at flush, in order; outside a batch they pass through.
func TestBatchConnWritesOnceAtFlush(t *testing.T) {
	t.Parallel()
	server, client := net.Pipe()
	defer client.Close()
	bc := BatchingConn(server).(*batchConn)

	got := make(chan []byte, 4)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := client.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()

	bc.begin()
	for _, part := range []string{"one", "two", "three"} {
		if _, err := bc.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case b := <-got:
		t.Fatalf("peer got %q before flush", b)
	default:
	}
	if err := bc.flush(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "onetwothree" {
		t.Fatalf("flush wrote %q, want onetwothree in one write", b)
	}
	if _, err := bc.Write([]byte("direct")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "direct" {
		t.Fatalf("outside a batch got %q, want direct", b)
	}
	server.Close()
	if _, ok := <-got; ok {
		t.Fatal("peer still reading after close")
	}
}

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
		hub.ServeConn(context.Background(), conn, &session.Principal{UserID: 1, SessionID: "gone"})
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
