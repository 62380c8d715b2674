package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times; it is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// raiseFileLimit lifts RLIMIT_NOFILE to its hard limit. Calling Setrlimit
// ourselves (rather than relying on the runtime's own raise) also makes
// child processes inherit the raised limit.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("get open-file limit: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raise open-file limit: %w", err)
	}
	return lim.Cur, nil
}

// process is a server child: pgpush serve or pg_eventserv.
type process struct {
	name string
	addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
	// pprofAddr is pgpush's PPROF_ADDR, set with --server-profile.
	pprofAddr string
}

// freeAddr asks the kernel for an unused loopback port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProcess runs bin with args and extra environment, logging to
// logPath, and waits until ready reports true or 60 s pass.
func startProcess(ctx context.Context, name, bin string, args, env []string, dir, logPath, addr string, ready func(context.Context, string) bool) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, addr: addr, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	ok := waitFor(ctx, 60*time.Second, func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		return ready(ctx, addr)
	})
	select {
	case <-p.done:
		logf.Close()
		return nil, fmt.Errorf("%s exited at start (%v); log: %s", name, p.err, lastLines(logPath, 5))
	default:
	}
	if !ok {
		p.stop()
		return nil, fmt.Errorf("%s not ready after 60s; log: %s", name, lastLines(logPath, 5))
	}
	return p, nil
}

// stop asks the process to shut down and kills it after 20 s.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// httpReady reports whether GET path answers 200.
func httpReady(path string) func(context.Context, string) bool {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context, addr string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// tcpReady reports whether the port accepts connections.
func tcpReady(ctx context.Context, addr string) bool {
	c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// procUsage is one process's resource use as /proc reports it.
type procUsage struct {
	RSSBytes      int64   // VmRSS
	PeakBytes     int64   // VmHWM
	CPUSecs       float64 // utime + stime
	WriteSyscalls int64   // syscw of /proc/<pid>/io: write(2), sendto(2)… calls
}

func readUsage(pid int) (procUsage, error) {
	var u procUsage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("read process status: %w", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		if name == "VmRSS" {
			u.RSSBytes = kb << 10
		} else {
			u.PeakBytes = kb << 10
		}
	}
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for line := range strings.SplitSeq(string(io), "\n") {
			if v, ok := strings.CutPrefix(line, "syscw:"); ok {
				u.WriteSyscalls, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	u.CPUSecs, err = cpuSeconds(pid)
	return u, err
}

// cpuSeconds reads utime+stime from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read process stat: %w", err)
	}
	_, comm, fields, ok := splitStat(b)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat %q", pid, comm)
	}
	// fields[0] is the state (field 3); utime and stime are fields 14, 15.
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / clockTicks, nil
}

// splitStat splits /proc/<pid>/stat around the command name, which may
// hold spaces and parentheses.
func splitStat(b []byte) (pid, comm string, fields []string, ok bool) {
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return "", "", nil, false
	}
	return strings.TrimSpace(string(b[:open])), string(b[open+1 : close]), strings.Fields(string(b[close+1:])), true
}

// postgresCPUSeconds sums the CPU time of the postmaster whose pid is
// given and of its children (backends and background workers), plus the
// postmaster's children-time, which holds the backends that have exited:
// writers connect and leave within a run. Other clusters on the machine
// are not counted.
func postgresCPUSeconds(postmaster int) float64 {
	if postmaster <= 0 {
		return 0
	}
	entries, _ := os.ReadDir("/proc")
	var total float64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		_, _, fields, ok := splitStat(b)
		if !ok || len(fields) < 15 {
			continue
		}
		last := 13 // utime, stime
		switch {
		case pid == postmaster:
			last = 15 // and cutime, cstime
		case fields[1] != strconv.Itoa(postmaster): // the parent pid
			continue
		}
		for _, f := range fields[11:last] {
			v, _ := strconv.ParseFloat(f, 64)
			total += v / clockTicks
		}
	}
	return total
}

// postmasterPID reads the first line of the cluster's postmaster.pid.
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// hostCPU is the "cpu" line of /proc/stat in jiffies: busy (user, nice,
// system, irq, softirq), steal (time the hypervisor gave to others while we
// wanted to run) and total.
func hostCPU() (busy, steal, total int64) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, 0
	}
	fields := strings.Fields(sc.Text())
	for i, v := range fields[1:] {
		if i >= 8 { // guest time is already counted in user time
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			steal += n
		default:
			busy += n
		}
	}
	return busy, steal, total
}

func lastLines(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// login posts the credentials and returns the session cookie as a header.
func login(ctx context.Context, addr, email, password string) (http.Header, error) {
	body := fmt.Sprintf(`{"email":%q,"password":%q}`, email, password)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/v1/auth/login", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("log in: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("log in: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	var cookies []string
	for _, c := range resp.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	if len(cookies) == 0 {
		return nil, errors.New("log in: no session cookie in the answer")
	}
	return http.Header{"Cookie": {strings.Join(cookies, "; ")}}, nil
}

// fetchProfile saves the pprof endpoint path (e.g. "profile?seconds=20",
// "heap?gc=1") of the server whose PPROF_ADDR is addr to file.
func fetchProfile(ctx context.Context, addr, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/"+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("fetch profile %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetch profile %s: HTTP %d: %s", path, resp.StatusCode, bytes.TrimSpace(msg))
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("create profile file: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetch profile %s: %w", path, err)
	}
	return f.Close()
}

// latencyHistogram is pgpush_event_latency_seconds from a server's
// /metrics: cumulative counts by upper bound (seconds), +Inf last.
type latencyHistogram struct {
	le    []float64
	count []float64
}

func scrapeLatency(ctx context.Context, addr string) (latencyHistogram, error) {
	var h latencyHistogram
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return h, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	const prefix = `pgpush_event_latency_seconds_bucket{le="`
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		bound, err1 := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		n, err2 := strconv.ParseFloat(strings.TrimSpace(count), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		h.le, h.count = append(h.le, bound), append(h.count, n)
	}
	return h, sc.Err()
}

// quantileBound is the upper bound of the bucket holding quantile q of
// the events counted between before and h (+Inf past the last bound).
func (h latencyHistogram) quantileBound(before latencyHistogram, q float64) float64 {
	if len(h.count) == 0 || len(before.count) != len(h.count) {
		return 0
	}
	total := h.count[len(h.count)-1] - before.count[len(before.count)-1]
	if total <= 0 {
		return 0
	}
	for i := range h.count {
		if h.count[i]-before.count[i] >= q*total {
			return h.le[i]
		}
	}
	return h.le[len(h.le)-1]
}

// backendPIDs lists the PostgreSQL backends whose application_name is
// name (none with an unreachable database: the figure is then missing,
// not wrong).
func (b *bench) backendPIDs(ctx context.Context, name string) []int {
	if b.postmaster <= 0 {
		return nil
	}
	conn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, name)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := make([]int, len(pids))
	for i, p := range pids {
		out[i] = int(p)
	}
	return out
}

// sumCPUSeconds adds up the CPU time of processes that still exist.
func sumCPUSeconds(pids []int) float64 {
	var total float64
	for _, pid := range pids {
		if secs, err := cpuSeconds(pid); err == nil {
			total += secs
		}
	}
	return total
}
