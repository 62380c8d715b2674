// Package cluster starts and stops a throwaway PostgreSQL cluster from the
// local server binaries, so that `pgpush demo` works without any setup and
// tests run against a real server instead of mocks.
//
// The cluster listens on a Unix socket only, in its own temporary directory,
// so any number of clusters can run side by side without competing for a TCP
// port. PostgreSQL refuses to run as root, so when the caller is root the
// server runs as the "postgres" system user (or "nobody").
package cluster

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoServerBinaries means neither PATH nor /usr/lib/postgresql holds initdb
// and pg_ctl. Callers test for it with errors.Is to skip or to tell the user
// how to continue.
var ErrNoServerBinaries = errors.New("no PostgreSQL server binaries found (install them with 'apt-get install postgresql' or set DATABASE_URL)")

const (
	// port only names the socket file (.s.PGSQL.5432): with TCP off, clusters
	// in different directories never collide.
	port = 5432

	// serverTimeoutSeconds bounds pg_ctl's wait for start, restart and stop.
	serverTimeoutSeconds = 60

	// commandTimeout bounds a pg_ctl call a little beyond its own -t so that
	// pg_ctl, not the kill, reports the timeout.
	commandTimeout = (serverTimeoutSeconds + 15) * time.Second

	// logTailLines is how much of the server log a start error carries.
	logTailLines = 20

	// maxSocketPath leaves room under the kernel's 108-byte sun_path limit
	// (107 characters plus the terminating NUL).
	maxSocketPath = 103

	// debianBinRoot holds one bin directory per major version on Debian and
	// Ubuntu, which do not put initdb and pg_ctl on PATH.
	debianBinRoot = "/usr/lib/postgresql"
)

// Options configures Start. The zero value is a fast cluster for tests.
type Options struct {
	// Fsync keeps PostgreSQL's durability settings. False (the default) turns
	// off fsync, synchronous_commit and full_page_writes, which makes tests
	// much faster; a crash may then lose or corrupt data, which does not
	// matter for a throwaway cluster. `pgpush demo` sets it.
	Fsync bool

	// Logger receives start and stop messages. Nil discards them.
	Logger *slog.Logger
}

// Cluster is a running throwaway PostgreSQL cluster. Its methods are safe for
// concurrent use. The caller owns it and must call Stop, which also removes
// its directory.
type Cluster struct {
	binDir  string
	dir     string // the temporary directory; everything lives under it
	dataDir string
	sockDir string
	logFile string
	cred    *syscall.Credential // nil unless the server runs as another user
	logger  *slog.Logger

	// mu serialises pg_ctl calls so that Restart and Stop never overlap.
	mu      sync.Mutex
	stopped bool
	stopErr error

	// watchdog stops the server if this process dies without calling
	// Stop (see startWatchdog); lifeline is the pipe it waits on.
	watchdog *exec.Cmd
	lifeline *os.File
}

// FindBinaries returns the directory holding initdb and pg_ctl: first the
// one pg_ctl on PATH resolves to, else the highest version under
// /usr/lib/postgresql/*/bin. It returns ErrNoServerBinaries when neither has
// them.
func FindBinaries() (binDir string, err error) {
	return findBinaries(exec.LookPath, debianBinRoot)
}

// findBinaries takes its lookups as arguments so tests can point it at a
// fake tree.
func findBinaries(lookPath func(string) (string, error), root string) (string, error) {
	if p, err := lookPath("pg_ctl"); err == nil {
		// Resolve symlinks: /usr/local/bin/pg_ctl often points into the
		// versioned directory, and Debian's /usr/bin wrappers point to a
		// directory without initdb, which the check below rejects.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if dir := filepath.Dir(real); hasServerBinaries(dir) {
				return dir, nil
			}
		}
	}
	versions, err := os.ReadDir(root)
	if err != nil {
		return "", ErrNoServerBinaries
	}
	var names []string
	for _, v := range versions {
		names = append(names, v.Name())
	}
	// Highest version first, compared as numbers so that 9.6 < 15 < 16.
	slices.SortFunc(names, func(a, b string) int { return compareVersions(b, a) })
	for _, name := range names {
		if dir := filepath.Join(root, name, "bin"); hasServerBinaries(dir) {
			return dir, nil
		}
	}
	return "", ErrNoServerBinaries
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersions compares dotted version strings part by part as numbers.
// Parts that are not numbers sort below any number, then by text.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		if i >= len(as) {
			return -1
		}
		if i >= len(bs) {
			return 1
		}
		an, aErr := strconv.Atoi(as[i])
		bn, bErr := strconv.Atoi(bs[i])
		switch {
		case aErr == nil && bErr == nil:
			if c := cmp.Compare(an, bn); c != 0 {
				return c
			}
		case aErr == nil:
			return 1
		case bErr == nil:
			return -1
		default:
			if c := strings.Compare(as[i], bs[i]); c != 0 {
				return c
			}
		}
	}
	return 0
}

// Start creates a cluster in a new temporary directory and starts it. On
// error nothing is left behind: the server is stopped and the directory
// removed.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	binDir, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred, err = serverCredential()
		if err != nil {
			return nil, err
		}
	}

	base := tempBase(cred)
	dir, err := os.MkdirTemp(base, "pgpush-pg-")
	if err != nil {
		return nil, fmt.Errorf("create cluster directory: %w", err)
	}
	c := &Cluster{
		binDir:  binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		sockDir: filepath.Join(dir, "sock"),
		logFile: filepath.Join(dir, "postgres.log"),
		cred:    cred,
		logger:  logger,
	}
	if err := c.start(ctx, opts); err != nil {
		// Stop copes with every stage: no data dir, no pid file, a server
		// that is still starting.
		if stopErr := c.Stop(); stopErr != nil {
			logger.Warn("clean up after failed start", "dir", dir, "err", stopErr)
		}
		return nil, err
	}
	logger.Info("postgres started", "dir", dir, "bin_dir", binDir, "fsync", opts.Fsync)
	return c, nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	if n := len(filepath.Join(c.sockDir, ".s.PGSQL."+strconv.Itoa(port))); n > maxSocketPath {
		return fmt.Errorf("socket path in %s is %d bytes, over the limit of %d: set TMPDIR to a shorter path", c.dir, n, maxSocketPath)
	}
	if err := os.Mkdir(c.sockDir, 0o700); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	if c.cred != nil {
		if err := chownTree(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return err
		}
	}

	initArgs := []string{"-D", c.dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"}
	if !opts.Fsync {
		initArgs = append(initArgs, "--no-sync")
	}
	if err := c.run(ctx, "initdb", initArgs...); err != nil {
		return err
	}
	if err := c.writeConfig(opts); err != nil {
		return err
	}
	if err := c.startWatchdog(); err != nil {
		return err
	}
	if err := c.run(ctx, "pg_ctl", "start", "-w", "-t", strconv.Itoa(serverTimeoutSeconds),
		"-D", c.dataDir, "-l", c.logFile); err != nil {
		return c.withLogTail(fmt.Errorf("start postgres: %w", err))
	}
	return nil
}

// startWatchdog starts a shell, as the server's user, that waits for the
// end of a pipe only this process writes to, then stops the server and
// removes the cluster's directory. The kernel closes the pipe however this
// process ends: a test binary killed by a timeout or SIGKILL, or a demo
// killed with kill -9, no longer leaves a server running with nobody to
// stop it. It runs in a process group of its own so that a Ctrl-C meant
// for this process does not end it first. Stop closes the pipe after
// stopping the server itself, and the watchdog then finds nothing to do;
// when Stop could not stop the server it leaves the pipe open, so the
// directory and its log stay until this process ends. The directory goes
// only once pg_ctl has stopped the server.
func (c *Cluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start watchdog: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c",
		`cat >/dev/null; "$0" stop -w -m immediate -D "$1" >/dev/null 2>&1 && rm -rf "$2"`,
		filepath.Join(c.binDir, "pg_ctl"), c.dataDir, c.dir)
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start watchdog: %w", err)
	}
	c.watchdog, c.lifeline = cmd, w
	return nil
}

// writeConfig appends pgpush's settings to postgresql.conf, where later lines
// win. A file rather than pg_ctl -o keeps socket paths away from the shell
// that pg_ctl starts the server with, and Restart picks them up unchanged.
func (c *Cluster) writeConfig(opts Options) error {
	settings := [][2]string{
		// Unix socket only: no port to collide on, nothing reachable from
		// the network while trust authentication is on.
		{"listen_addresses", ""},
		{"unix_socket_directories", c.sockDir},
		{"port", strconv.Itoa(port)},
		// Parallel tests each hold a few pools.
		{"max_connections", "300"},
		{"max_prepared_transactions", "10"},
		{"shared_buffers", "128MB"},
		{"logging_collector", "off"},
	}
	if !opts.Fsync {
		settings = append(settings,
			[2]string{"fsync", "off"},
			[2]string{"synchronous_commit", "off"},
			[2]string{"full_page_writes", "off"},
		)
	}
	var b strings.Builder
	b.WriteString("\n# Added by pgpush's db/cluster.\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "%s = '%s'\n", s[0], strings.ReplaceAll(s[1], "'", "''"))
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

// URL returns a pgx connection URL for database on this cluster. pgx treats
// an absolute host path as the directory holding the Unix socket.
func (c *Cluster) URL(database string) string {
	q := url.Values{
		"host":    {c.sockDir},
		"port":    {strconv.Itoa(port)},
		"sslmode": {"disable"},
	}
	u := url.URL{
		Scheme: "postgres",
		User:   url.User("postgres"),
		Path:   "/" + database,
		// Keep the socket path readable; '/' needs no escaping in a query.
		RawQuery: strings.ReplaceAll(q.Encode(), "%2F", "/"),
	}
	return u.String()
}

// Dir returns the cluster's temporary directory, which holds the data
// directory, the socket directory and the server log (postgres.log).
func (c *Cluster) Dir() string { return c.dir }

// Restart stops the server with a fast shutdown and starts it again, waiting
// until it accepts connections. Existing connections are closed, which is
// what fault tests want to provoke.
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("restart postgres: cluster is stopped")
	}
	if err := c.run(ctx, "pg_ctl", "restart", "-w", "-m", "fast", "-t", strconv.Itoa(serverTimeoutSeconds),
		"-D", c.dataDir, "-l", c.logFile); err != nil {
		return c.withLogTail(fmt.Errorf("restart postgres: %w", err))
	}
	c.logger.Info("postgres restarted", "dir", c.dir)
	return nil
}

// Stop kills the server with an immediate shutdown, waits for it to exit and
// removes the cluster's directory. It works after a partial start and is
// safe to call more than once; later calls return the first call's result.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.stopErr
	}
	c.stopped = true

	var errs []error
	// Without a pid file no server was started (or it already exited), and
	// pg_ctl would only complain.
	if _, err := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); err == nil {
		// Stop runs from cleanup paths whose context may be done already.
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		err := c.run(ctx, "pg_ctl", "stop", "-w", "-m", "immediate", "-t", strconv.Itoa(serverTimeoutSeconds), "-D", c.dataDir)
		cancel()
		// A stale pid file of a server that died makes pg_ctl fail although
		// there is nothing left to stop.
		if err != nil && c.postmasterAlive() {
			errs = append(errs, fmt.Errorf("stop postgres: %w", err))
		}
	}
	// Keep the directory when the server may still run: removing its data
	// under it would hide the leak, and the log tells what happened.
	if len(errs) == 0 {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove cluster directory: %w", err))
		}
		c.logger.Info("postgres stopped", "dir", c.dir)
	}
	if c.lifeline != nil && len(errs) == 0 {
		c.lifeline.Close()
		c.watchdog.Wait()
	}
	c.stopErr = errors.Join(errs...)
	return c.stopErr
}

// postmasterAlive reports whether the process named in postmaster.pid
// exists. When in doubt it says yes, so that Stop keeps the directory.
func (c *Cluster) postmasterAlive() bool {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return true
	}
	// Signal 0 checks existence; EPERM means it exists as another user.
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// run runs one of the server binaries as the server's user. Its error is one
// line: the exit status and the last line the command printed.
func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.dir // the server user may not be able to enter the caller's directory
	cmd.Env = serverEnv()
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	c.logger.Debug("run", "cmd", name, "args", args)
	if err := cmd.Run(); err != nil {
		if last := lastLine(out.String()); last != "" {
			return fmt.Errorf("%s: %w: %s", name, err, last)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// withLogTail appends the end of the server log, which holds the reason a
// server did not start (a bad setting, shared memory, permissions) while
// pg_ctl only says that it did not.
func (c *Cluster) withLogTail(err error) error {
	tail := tailLines(c.logFile, logTailLines)
	if tail == "" {
		return err
	}
	return fmt.Errorf("%w\nserver log:\n%s", err, tail)
}

// serverEnv is the caller's environment without PG* variables, which would
// otherwise change what initdb and pg_ctl do (PGDATA, PGPORT, PGHOST).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// serverCredential picks the unprivileged user the server runs as when the
// caller is root: "postgres" where packages created it, else "nobody".
func serverCredential() (*syscall.Credential, error) {
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
		}
		// An empty Groups drops root's supplementary groups.
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("find a user to run postgres as (running as root): %w", errors.Join(errs...))
}

// tempBase returns the directory to create the cluster in: os.TempDir unless
// the server's user cannot reach it or the socket path would get too long,
// then /tmp.
func tempBase(cred *syscall.Credential) string {
	base := os.TempDir()
	// "/pgpush-pg-" + up to 10 random digits + "/sock/.s.PGSQL.5432"
	const suffix = len("/pgpush-pg-1234567890/sock/.s.PGSQL.5432")
	if len(base)+suffix > maxSocketPath {
		return "/tmp"
	}
	if cred != nil && !traversable(base, cred) {
		return "/tmp"
	}
	return base
}

// traversable reports whether the user in cred may enter dir and each of its
// parents.
func traversable(dir string, cred *syscall.Credential) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false
		}
		perm := fi.Mode().Perm()
		var x bool
		switch {
		case st.Uid == cred.Uid:
			x = perm&0o100 != 0
		case st.Gid == cred.Gid:
			x = perm&0o010 != 0
		default:
			x = perm&0o001 != 0
		}
		if !x {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// chownTree hands dir and everything in it to the server's user, who must
// own the data directory.
func chownTree(dir string, uid, gid int) error {
	err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("chown cluster directory: %w", err)
	}
	return nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// tailLines returns the last n lines of the file, or "" if it cannot be read.
func tailLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	// The last 64 KiB hold the last 20 lines of any sane log.
	const window = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		if _, err := f.Seek(fi.Size()-window, io.SeekStart); err != nil {
			return ""
		}
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
