package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/pgpush/pgpush/db/dbtest"
)

// TestReadinessAndMetricsAcrossListenerOutage: while the listener cannot
// reconnect, /readyz says 503; changes committed meanwhile are delivered
// once it is back, /readyz says 200 again, and /metrics tells the story.
func TestReadinessAndMetricsAcrossListenerOutage(t *testing.T) {
	t.Parallel()
	pool, url, password := newShop(t)
	srv := startServer(t, url, nil)
	c := srv.connect(t, srv.admin(t, password))
	c.subscribe("order_changes")
	ready := func() int {
		resp, _ := srv.request(t, http.MethodGet, "/readyz", nil, nil)
		return resp.StatusCode
	}
	if got := ready(); got != http.StatusOK {
		t.Fatalf("/readyz = %d, want 200", got)
	}

	ctx := context.Background()
	// Hold one pool connection: with the database closed to new
	// connections, it is how this test keeps writing.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var dbName string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	ident := pgx.Identifier{dbName}.Sanitize()
	// A database cannot close itself: do it from the maintenance database.
	admin, err := pgx.Connect(ctx, dbtest.Cluster().URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `ALTER DATABASE `+ident+` ALLOW_CONNECTIONS false`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgpush-listener' AND datname = current_database()`); err != nil {
		t.Fatal(err)
	}
	dbtest.Eventually(t, waitTimeout, func() bool { return ready() == http.StatusServiceUnavailable })
	for i := range 3 {
		if _, err := conn.Exec(ctx, `INSERT INTO orders (order_number) VALUES ($1)`, "ORD-outage-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Exec(ctx, `ALTER DATABASE `+ident+` ALLOW_CONNECTIONS true`); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ev := c.expectEvent("order:created")
		if got, want := ev["data"].(map[string]any)["order_number"], "ORD-outage-"+strconv.Itoa(i); got != want {
			t.Fatalf("after the outage got %v, want %s", got, want)
		}
	}
	dbtest.Eventually(t, waitTimeout, func() bool { return ready() == http.StatusOK })

	resp, body := srv.request(t, http.MethodGet, "/metrics", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics = %d", resp.StatusCode)
	}
	text := string(body)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^pgpush_connected_sockets 1$`),
		regexp.MustCompile(`(?m)^pgpush_subscriptions\{channel="order_changes"\} 1$`),
		regexp.MustCompile(`(?m)^pgpush_events_received_total [3-9]`),
		regexp.MustCompile(`(?m)^pgpush_events_delivered_total [3-9]`),
		regexp.MustCompile(`(?m)^pgpush_listener_reconnects_total [1-9]`),
		regexp.MustCompile(`(?m)^pgpush_listener_connected 1$`),
		regexp.MustCompile(`(?m)^pgpush_events_dropped_total\{reason="slow_client"\} 0$`),
		regexp.MustCompile(`(?m)^pgpush_event_latency_seconds_count [3-9]`),
		regexp.MustCompile(`(?m)^pgpush_listener_lag_seconds `),
	} {
		if !want.MatchString(text) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(text, password) {
		t.Error("/metrics leaks the admin password")
	}
}

// TestGracefulShutdownInProcess: cancelling serve closes sockets with 1001
// and returns nil.
func TestGracefulShutdownInProcess(t *testing.T) {
	t.Parallel()
	_, url, password := newShop(t)
	srv := startServer(t, url, nil)
	c := srv.connect(t, srv.admin(t, password))
	c.subscribe("order_changes")
	srv.cancel()
	c.expectClose(websocket.CloseGoingAway)
}

// buildBinary builds pgpush into t's temp dir. The test binary itself
// cannot stand in for it here: its TestMain handles SIGTERM on its own.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pgpush")
	if out, err := osexec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// TestSIGTERM runs the real binary's serve, sends SIGTERM, and checks the
// socket is closed with 1001 and the process exits 0.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	_, url, password := newShop(t)
	cmd := osexec.Command(buildBinary(t), "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url,
		"SESSION_SECRET=test-secret-test-secret-test-secret!", "LISTEN_ADDR=127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// The server logs its address once it accepts connections.
	addrRE := regexp.MustCompile(`msg="pgpush serving" addr=(\S+)`)
	lines := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && lines.Scan() {
		if m := addrRE.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("server never logged its address")
	}
	go io.Copy(io.Discard, stderr) //nolint:errcheck // keep the pipe drained
	srv := &testServer{base: "http://" + addr}
	c := srv.connect(t, srv.admin(t, password))
	c.subscribe("order_changes")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.expectClose(websocket.CloseGoingAway)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("serve did not exit after SIGTERM")
	}
}
