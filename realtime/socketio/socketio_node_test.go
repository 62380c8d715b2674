//go:build unix

package socketio

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// nodeTimeout bounds the whole node --test run; each JavaScript wait has a
// 10 s budget of its own.
const nodeTimeout = 2 * time.Minute

// TestNodeClient runs testdata/node/client.test.mjs, the real
// socket.io-client from npm, against this server. It needs node (20+) and
// testdata/node/node_modules (npm ci); without them it skips, except under
// CI, which must not pass by skipping.
func TestNodeClient(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node is not installed (Node 20+ runs testdata/node)")
	}
	dir := filepath.Join("testdata", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io-client", "package.json")); err != nil {
		skipOrFail(t, "testdata/node/node_modules is missing: npm ci --prefix realtime/socketio/testdata/node")
	}
	// A 300 ms heartbeat makes the idle tests see several pings; the
	// generous timeout allows for -race.
	srv := &Server{PingInterval: 300 * time.Millisecond, PingTimeout: 5 * time.Second, OnConnect: echoHandler}
	url := startServer(t, srv)

	ctx, cancel := context.WithTimeout(t.Context(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "client.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SOCKETIO_URL="+url, "NO_COLOR=1")
	// node --test runs the file in a child process: kill the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test client.test.mjs: %v\n%s", err, out)
	}
	t.Logf("node --test client.test.mjs:\n%s", out)
}

func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(reason)
	}
	t.Skip(reason)
}
