package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// startCluster starts a cluster for one test and stops it in t.Cleanup. It
// skips without server binaries, except in CI, which must not skip silently.
func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if errors.Is(err, ErrNoServerBinaries) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, Options{})

	url := c.URL("postgres")
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", url, err)
	}
	if network, _ := pgconn.NetworkAddress(cfg.Host, cfg.Port); network != "unix" || cfg.Host != filepath.Join(c.Dir(), "sock") {
		t.Fatalf("URL %q: host %q network %q, want unix socket in %s/sock", url, cfg.Host, network, c.Dir())
	}

	conn := connect(t, ctx, url)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v; want 1", one, err)
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "postgres" {
		t.Fatalf("current_user = %q, %v; want postgres", user, err)
	}
	// The default is the fast, non-durable cluster tests want.
	var fsync string
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "off" {
		t.Fatalf("fsync = %q, %v; want off", fsync, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before restart')"); err != nil {
		t.Fatalf("create table: %v", err)
	}

	if err := c.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	// The restart closed the old connection.
	conn = connect(t, ctx, url)
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "before restart" {
		t.Fatalf("after Restart: SELECT v = %q, %v; want %q", v, err, "before restart")
	}
	conn.Close(ctx)

	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(c.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Stop: stat %s: %v, want not exist", c.Dir(), err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := c.Restart(ctx); err == nil {
		t.Fatal("Restart after Stop: nil error, want one")
	}
}

func TestStartFsync(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, Options{Fsync: true})
	conn := connect(t, ctx, c.URL("postgres"))
	for _, name := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil || got != "on" {
			t.Errorf("%s = %q, %v; want on", name, got, err)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"9", "15", -1},
		{"15", "16", -1},
		{"16", "15", 1},
		{"9.6", "10", -1},
		{"9.6", "9.5", 1},
		{"15", "15", 0},
		{"15", "15.2", -1},
		{"beta", "9", -1},
	}
	for _, tt := range tests {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestFindBinaries(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mkBin := func(dir string, names ...string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	lib := filepath.Join(root, "lib")
	mkBin(filepath.Join(lib, "9.6", "bin"), "initdb", "pg_ctl")
	mkBin(filepath.Join(lib, "15", "bin"), "initdb", "pg_ctl")
	mkBin(filepath.Join(lib, "16", "bin"), "pg_ctl") // no initdb: client only
	// A PATH entry that is a symlink into a full bin directory.
	local := filepath.Join(root, "local")
	mkBin(local)
	if err := os.Symlink(filepath.Join(lib, "9.6", "bin", "pg_ctl"), filepath.Join(local, "pg_ctl")); err != nil {
		t.Fatal(err)
	}
	// A wrapper with no initdb beside it, like Debian's pg_wrapper.
	wrapper := filepath.Join(root, "wrapper")
	mkBin(wrapper, "pg_ctl")

	notFound := func(string) (string, error) { return "", exec.ErrNotFound }
	at := func(dir string) func(string) (string, error) {
		return func(name string) (string, error) { return filepath.Join(dir, name), nil }
	}
	tests := []struct {
		name     string
		lookPath func(string) (string, error)
		root     string
		want     string
		wantErr  error
	}{
		{"highest full version", notFound, lib, filepath.Join(lib, "15", "bin"), nil},
		{"PATH symlink resolved", at(local), lib, filepath.Join(lib, "9.6", "bin"), nil},
		{"PATH without initdb falls back", at(wrapper), lib, filepath.Join(lib, "15", "bin"), nil},
		{"nothing", notFound, filepath.Join(root, "missing"), "", ErrNoServerBinaries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := findBinaries(tt.lookPath, tt.root)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Fatalf("findBinaries = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestClusterStopsWhenOwnerDies: a process that started a cluster and is
// killed without calling Stop (a test binary past its timeout, a demo
// killed with -9) leaves no server running and no directory behind.
func TestClusterStopsWhenOwnerDies(t *testing.T) {
	if os.Getenv("PGPUSH_CLUSTER_OWNER") == "1" {
		c, err := Start(context.Background(), Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(c.Dir())
		select {} // until killed
	}
	t.Parallel()
	if _, err := FindBinaries(); err != nil && os.Getenv("CI") == "" {
		t.Skip(err) // as startCluster: CI installs the binaries
	}
	owner := exec.Command(os.Args[0], "-test.run=^TestClusterStopsWhenOwnerDies$")
	owner.Env = append(os.Environ(), "PGPUSH_CLUSTER_OWNER=1")
	out, err := owner.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "/") {
		owner.Process.Kill()
		owner.Wait()
		t.Fatalf("the owner process said %q, %v; want its cluster's directory", line, err)
	}
	dir := strings.TrimSpace(line)
	pidFile, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pidFile), "\n", 2)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	owner.Wait()
	deadline := time.Now().Add(serverTimeoutSeconds * time.Second)
	for !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || !notExist(dir) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d or directory %s still there %ds after its owner was killed", pid, dir, serverTimeoutSeconds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func notExist(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, os.ErrNotExist)
}
