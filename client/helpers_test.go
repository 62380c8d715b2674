package client_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/client"
	"github.com/pgpush/pgpush/db/dbtest"
)

// waitTimeout bounds every wait for something that must happen.
const waitTimeout = 15 * time.Second

const (
	viewerEmail    = "viewer@example.com"
	viewerPassword = "viewer-password-1"
	sessionSecret  = "client-test-secret-client-test-secret"
)

// buildPgpush builds cmd/pgpush into a temporary directory that lives as
// long as t (and its subtests). Tests here cannot import package main, so
// they run the real binary.
func buildPgpush(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "pgpush")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/pgpush")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pgpush: %v\n%s", err, out)
	}
	return bin
}

// fixture is a database with a watched orders table, a viewer allowed on
// order_changes, and a pgpush serve process on it.
type fixture struct {
	bin   string
	pool  *pgxpool.Pool
	dbURL string
	srv   *serverProcess
}

func setup(t *testing.T, bin string) *fixture {
	t.Helper()
	pool, dbURL := dbtest.NewPool(t)
	f := &fixture{bin: bin, pool: pool, dbURL: dbURL}
	f.exec(t, `CREATE TABLE orders (
		id serial PRIMARY KEY,
		status text NOT NULL DEFAULT 'new',
		total numeric(10,2) NOT NULL DEFAULT 0,
		customer_id int)`)
	f.cli(t, "watch", "orders")
	f.cli(t, "user", "add", "--email", viewerEmail, "--role", "viewer", "--password", viewerPassword)
	f.cli(t, "grant", "order_changes", "--role", "viewer")
	f.srv = startServerProcess(t, bin, dbURL, freeAddr(t))
	return f
}

// cli runs a pgpush admin command against the fixture's database.
func (f *fixture) cli(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(f.bin, append(args, "--database-url", f.dbURL)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgpush %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// exec runs SQL as an application would, committed.
func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := f.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// newClient makes a client for the fixture's server, closed when t ends.
func (f *fixture) newClient(t *testing.T, opts client.Options) *client.Client {
	t.Helper()
	return newClientFor(t, f.srv.url(), opts)
}

func newClientFor(t *testing.T, url string, opts client.Options) *client.Client {
	t.Helper()
	if opts.BackoffMin == 0 {
		opts.BackoffMin = 20 * time.Millisecond
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = 300 * time.Millisecond
	}
	c, err := client.New(url, opts)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// freeAddr finds a free loopback port. Another process could take it
// before the server binds it; on a test machine that is rare enough.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// serverProcess is `pgpush serve` running as a child process.
type serverProcess struct {
	bin, dbURL, addr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *syncBuffer
}

func startServerProcess(t *testing.T, bin, dbURL, addr string) *serverProcess {
	t.Helper()
	s := &serverProcess{bin: bin, dbURL: dbURL, addr: addr, logs: &syncBuffer{}}
	s.start(t)
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	return s
}

func (s *serverProcess) url() string { return "http://" + s.addr }

// start runs the server and waits until /readyz answers 200.
func (s *serverProcess) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(s.bin, "serve")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+s.dbURL,
		"SESSION_SECRET="+sessionSecret,
		"LISTEN_ADDR="+s.addr,
		"SHUTDOWN_TIMEOUT=5s",
	)
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgpush serve: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(waitTimeout)
	for {
		select {
		case <-exited:
			t.Fatalf("pgpush serve exited before it was ready:\n%s", s.logs.String())
		default:
		}
		resp, err := http.Get(s.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgpush serve not ready after %v (last: %v):\n%s", waitTimeout, err, s.logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling /readyz, not synchronisation
	}
}

// kill ends the server with SIGKILL, as a crash would, and waits for it.
func (s *serverProcess) kill(t *testing.T) {
	t.Helper()
	s.signal(t, syscall.SIGKILL)
}

// stop ends the server with SIGTERM, then SIGKILL if it hangs.
func (s *serverProcess) stop(t *testing.T) {
	t.Helper()
	s.signal(t, syscall.SIGTERM)
}

func (s *serverProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("signal pgpush serve: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(waitTimeout):
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("pgpush serve did not exit on %v", sig)
	}
}

// syncBuffer is a bytes.Buffer safe for the process's two output copiers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// events collects a subscription's events for a test to wait on.
type events struct {
	ch chan client.Event
}

func newEvents() *events { return &events{ch: make(chan client.Event, 1000)} }

// add is an OnEvent callback.
func (e *events) add(ev client.Event) { e.ch <- ev }

// next waits for the next event.
func (e *events) next(t *testing.T) client.Event {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(waitTimeout):
		t.Fatal("no event in time")
		return client.Event{}
	}
}

// waitState waits until states delivers want.
func waitState(t *testing.T, states <-chan client.StateChange, want client.State) client.StateChange {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case sc := <-states:
			if sc.State == want {
				return sc
			}
		case <-timeout:
			t.Fatalf("state %v not reached in time", want)
		}
	}
}
