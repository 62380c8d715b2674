//go:build unix

package web_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgpush/pgpush/db/dbtest"
)

// The tests in this file run the JavaScript tests in web/test with Node:
// pgpush.js against the real binary, and the dashboard in headless
// Chromium. They need node, web/node_modules (npm ci in web/), psql and,
// for the dashboard, /usr/bin/chromium. Without them they skip, except
// under CI, which must not pass by skipping.

func TestMain(m *testing.M) { dbtest.Main(m) }

const (
	// nodeTimeout bounds one node --test run; each JavaScript suite has a
	// 60 s budget of its own, and the wrapper leaves room for its output.
	nodeTimeout = 2 * time.Minute

	// chromiumPath is Debian's Chromium (apt-get install chromium); the
	// dashboard test drives it with playwright-core, which downloads no
	// browser of its own.
	chromiumPath = "/usr/bin/chromium"
)

func TestNode(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("node"); err != nil {
		skipOrFail(t, "node is not installed (Node 20+ is needed for web/test)")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "ws", "package.json")); err != nil {
		skipOrFail(t, "web/node_modules is missing: run npm ci in web/")
	}
	psql := findPsql()
	if psql == "" {
		skipOrFail(t, "psql is not installed (PostgreSQL's client)")
	}
	bin := buildPgpush(t)

	t.Run("client", func(t *testing.T) {
		t.Parallel()
		runNode(t, "test/client.test.mjs", []string{
			"PGPUSH_BIN=" + bin,
			"DATABASE_URL=" + dbtest.New(t),
			"PSQL=" + psql,
		})
	})

	t.Run("liverows", func(t *testing.T) {
		t.Parallel()
		runNode(t, "test/liverows.test.mjs", []string{
			"PGPUSH_BIN=" + bin,
			"DATABASE_URL=" + dbtest.New(t),
			"PSQL=" + psql,
		})
	})

	t.Run("closecodes", func(t *testing.T) {
		t.Parallel()
		runNode(t, "test/closecodes.test.mjs", []string{
			"PGPUSH_BIN=" + bin,
			"DATABASE_URL=" + dbtest.New(t),
			"PSQL=" + psql,
		})
	})

	t.Run("socketio", func(t *testing.T) {
		t.Parallel()
		if _, err := os.Stat(filepath.Join("node_modules", "socket.io-client", "package.json")); err != nil {
			skipOrFail(t, "web/node_modules/socket.io-client is missing: run npm ci in web/")
		}
		runNode(t, "test/socketio.test.mjs", []string{
			"PGPUSH_BIN=" + bin,
			"DATABASE_URL=" + dbtest.New(t),
			"PSQL=" + psql,
		})
	})

	t.Run("limits", func(t *testing.T) {
		t.Parallel()
		if _, err := os.Stat(filepath.Join("node_modules", "socket.io-client", "package.json")); err != nil {
			skipOrFail(t, "web/node_modules/socket.io-client is missing: run npm ci in web/")
		}
		runNode(t, "test/limits.test.mjs", []string{
			"PGPUSH_BIN=" + bin,
			"DATABASE_URL=" + dbtest.New(t),
			"PSQL=" + psql,
		})
	})

	t.Run("dashboard", func(t *testing.T) {
		t.Parallel()
		if _, err := os.Stat(chromiumPath); err != nil {
			skipOrFail(t, chromiumPath+" is missing: apt-get install chromium")
		}
		if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
			skipOrFail(t, "web/node_modules/playwright-core is missing: run npm ci in web/")
		}
		artifacts := os.Getenv("PGPUSH_ARTIFACTS")
		if artifacts == "" {
			artifacts = t.TempDir()
		} else if err := os.MkdirAll(artifacts, 0o755); err != nil {
			t.Fatal(err)
		}
		screenshot := filepath.Join(artifacts, "dashboard.png")
		runNode(t, "test/dashboard.test.mjs", []string{
			"PGPUSH_BIN=" + bin,
			"DATABASE_URL=" + dbtest.New(t),
			"PSQL=" + psql,
			"CHROMIUM=" + chromiumPath,
			"PGPUSH_SCREENSHOT=" + screenshot,
			"PGPUSH_PROFILE_DIR=" + t.TempDir(),
		})
		t.Logf("screenshot: %s", screenshot)
	})
}

// skipOrFail skips with reason, or fails under CI (CI non-empty), where a
// skipped browser test would hide that it never ran.
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this fails instead of skipping)", reason)
	}
	t.Skip(reason)
}

// findPsql looks on PATH, then where Debian puts PostgreSQL's binaries.
func findPsql() string {
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(matches) == 0 {
		return ""
	}
	return matches[len(matches)-1] // the highest version sorts last up to 99
}

// buildPgpush builds cmd/pgpush into a temporary directory.
func buildPgpush(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "pgpush")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/pgpush")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pgpush: %v\n%s", err, out)
	}
	return bin
}

// runNode runs one node --test file from web/ and fails with its output.
// Node runs in its own process group, so a timeout also ends the pgpush
// servers and browsers it started.
func runNode(t *testing.T, file string, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", file)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("node --test %s: timed out after %v\n%s", file, nodeTimeout, out.String())
	}
	if err != nil {
		t.Fatalf("node --test %s: %v\n%s", file, err, out.String())
	}
	t.Logf("node --test %s:\n%s", file, out.String())
}
