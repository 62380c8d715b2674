package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/pgpush/pgpush/db/dbtest"
)

// signalWriter collects output and closes seen once it contains marker.
type signalWriter struct {
	marker string
	seen   chan struct{}

	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.marker) {
		w.once.Do(func() { close(w.seen) })
	}
	return n, err
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestDemoWithDatabaseURL: `pgpush demo` on the user's own database
// (DATABASE_URL) starts no throwaway cluster, so it must not promise to
// remove one; it still prints how to stop.
func TestDemoWithDatabaseURL(t *testing.T) {
	t.Parallel()
	url := dbtest.New(t)
	out := &signalWriter{marker: "Press Ctrl-C", seen: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo"}, strings.NewReader(""), out, &syncBuffer{},
			cliEnv(map[string]string{"DATABASE_URL": url, "LISTEN_ADDR": "127.0.0.1:0"}))
	}()
	select {
	case <-out.seen:
	case err := <-done:
		t.Fatalf("demo returned before serving: %v\n%s", err, out.String())
	case <-t.Context().Done():
		t.Fatal("test deadline")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v", err)
	}
	got := out.String()
	if strings.Contains(got, "throwaway") {
		t.Errorf("demo with DATABASE_URL printed %q, want no mention of a throwaway database", got)
	}
	if !strings.Contains(got, "Press Ctrl-C to stop") {
		t.Errorf("demo printed %q, want how to stop it", got)
	}
}
