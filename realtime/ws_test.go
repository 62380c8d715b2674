package realtime

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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
