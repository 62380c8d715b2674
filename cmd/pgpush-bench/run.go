package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
)

// What a run measures.
const (
	kindNone      = "none"      // writers only, no trigger
	kindRelay     = "relay"     // pg_notify(row_to_json(NEW)) with one LISTEN drain
	kindPgpush    = "pgpush"    // pgpush's trigger and servers
	kindEventserv = "eventserv" // the relay trigger and pg_eventserv
)

// runSpec is one run's configuration.
type runSpec struct {
	Scenario    string  `json:"scenario"`
	Kind        string  `json:"kind"`
	Instances   int     `json:"instances"`
	Writers     int     `json:"writers"`
	Subscribers int     `json:"subscribers"`
	Rate        float64 `json:"target_rows_per_s"` // 0: max
	Mode        string  `json:"mode"`
	Payload     int     `json:"payload_bytes"`
	Duration    float64 `json:"duration_s"`
	Idle        bool    `json:"idle,omitempty"` // no writers: memory per idle socket
}

// result is everything a run measured.
type result struct {
	runSpec
	RowsCommitted   int64   `json:"rows_committed"`
	CommittedPerSec float64 `json:"rows_committed_per_s"`

	Expected          int64     `json:"deliveries_expected"`
	Delivered         int64     `json:"deliveries"`
	DeliveredInWindow int64     `json:"deliveries_in_window"`
	DeliveredPerSec   float64   `json:"deliveries_per_s"`
	PerInstancePerSec []float64 `json:"deliveries_per_s_by_instance,omitempty"`
	Lost              int64     `json:"lost"`
	Duplicated        int64     `json:"duplicated"`
	Unknown           int64     `json:"unknown,omitempty"`
	Misdelivered      int64     `json:"misdelivered,omitempty"` // per-user runs: rows read by a socket not their customer's
	Logins            *logins   `json:"logins,omitempty"`       // kind "login": the per-user scenarios' logins, measured apart
	ClosedEarly       int       `json:"sockets_closed_early"`
	CloseReasons      []string  `json:"close_reasons,omitempty"`
	WarmupMissing     int       `json:"warmup_missing,omitempty"`

	P50Ms float64 `json:"latency_p50_ms"`
	P90Ms float64 `json:"latency_p90_ms"`
	P99Ms float64 `json:"latency_p99_ms"`
	MaxMs float64 `json:"latency_max_ms"`

	Backlog        []int64 `json:"backlog_per_second,omitempty"`
	BacklogGrowing bool    `json:"backlog_growing"`
	DrainSeconds   float64 `json:"drain_s"`

	ServerRSS       []int64   `json:"server_rss_bytes,omitempty"`
	ServerPeakRSS   []int64   `json:"server_peak_rss_bytes,omitempty"`
	ServerCPUSecs   []float64 `json:"server_cpu_s,omitempty"`
	IdleRSSPerConn  float64   `json:"rss_bytes_per_idle_socket,omitempty"`
	PostgresCPUSecs float64   `json:"postgres_cpu_s"` // the throwaway cluster only; 0 with --database-url
	// WriterBackendCPUSecs and ListenerBackendCPUSecs split
	// PostgresCPUSecs: the writers' backends (trigger, commit), and the
	// backend of pgpush's listener (the sequencer's numbering and the
	// log reads, with one instance). The rest is pool connections, WAL
	// writer, checkpointer, autovacuum. Throwaway cluster only.
	WriterBackendCPUSecs   float64 `json:"writer_backend_cpu_s,omitempty"`
	ListenerBackendCPUSecs float64 `json:"listener_backend_cpu_s,omitempty"`
	BenchCPUSecs           float64 `json:"bench_cpu_s"` // this process: writers and receiving sockets
	// OtherCPUSecs is the machine's busy CPU time from the writers' start
	// to the end of the drain minus servers, bench and PostgreSQL: other
	// processes competing for the cores.
	OtherCPUSecs float64 `json:"other_cpu_s"`
	// ServerRunQueueSecs and BenchRunQueueSecs (per-user runs) are the
	// time the server's and this process's threads were ready to run but
	// waited for a CPU, summed over threads (schedstat run_delay).
	ServerRunQueueSecs float64 `json:"server_run_queue_wait_s,omitempty"`
	BenchRunQueueSecs  float64 `json:"bench_run_queue_wait_s,omitempty"`
	// WriteSyscallsPerDelivery is the servers' write system calls from the
	// writers' start to the end of the drain, per frame received.
	WriteSyscallsPerDelivery float64 `json:"server_write_syscalls_per_delivery,omitempty"`
	// ServerP50Ms and ServerP99Ms bound the server's own share of the
	// latency, row insert to fan-out into socket queues, from its
	// pgpush_event_latency_seconds histogram (the bucket's upper bound;
	// -1: above the largest finite bucket).
	ServerP50Ms  float64 `json:"server_queue_latency_p50_le_ms,omitempty"`
	ServerP99Ms  float64 `json:"server_queue_latency_p99_le_ms,omitempty"`
	HostCPUBusy  float64 `json:"host_cpu_busy"`  // 0..1 over the write phase, steal excluded
	HostCPUSteal float64 `json:"host_cpu_steal"` // 0..1: the hypervisor ran someone else

	Profiles []string `json:"profiles,omitempty"` // files written under --server-profile

	Error string `json:"error,omitempty"`
}

// spec builds a run from the options, then lets the scenario's settings
// apply where the user gave no flag.
func (b *bench) spec(scenario, kind string, set func(*runSpec)) runSpec {
	o := b.opts
	s := runSpec{Scenario: scenario, Kind: kind, Instances: o.Instances, Writers: o.Writers,
		Subscribers: o.Subscribers, Rate: o.Rate, Mode: o.Mode, Payload: o.Payload, Duration: o.Duration.Seconds()}
	if set == nil {
		return s
	}
	d := s
	set(&d)
	for name, field := range map[string]func(){
		"instances":     func() { d.Instances = s.Instances },
		"writers":       func() { d.Writers = s.Writers },
		"subscribers":   func() { d.Subscribers = s.Subscribers },
		"rate":          func() { d.Rate = s.Rate },
		"mode":          func() { d.Mode = s.Mode },
		"payload-bytes": func() { d.Payload = s.Payload },
		"duration":      func() { d.Duration = s.Duration },
	} {
		if o.set[name] {
			field()
		}
	}
	return d
}

// measure runs one spec and records and prints its result. Servers of
// kind pgpush must already run.
func (b *bench) measure(ctx context.Context, s runSpec) *result {
	r := &result{runSpec: s}
	if err := b.measureInto(ctx, r); err != nil {
		r.Error = err.Error()
	}
	b.results = append(b.results, r)
	fmt.Fprintln(b.out, r.line())
	return r
}

func (b *bench) measureInto(ctx context.Context, r *result) error {
	s := r.runSpec
	if err := b.prepareTable(ctx, s.Kind, s.Mode, s.Writers); err != nil {
		return err
	}
	var targets []target
	var procs []*process
	switch s.Kind {
	case kindPgpush:
		if len(b.servers) == 0 {
			return errNoServers
		}
		targets, procs = b.pgpushTargets(), b.servers
	case kindEventserv:
		p, err := b.startEventserv(ctx)
		if err != nil {
			return err
		}
		defer p.stop()
		procs = []*process{p}
		targets = []target{{URL: "ws://" + p.addr + "/listen/" + relayChannel}}
	}

	// Receivers: sockets, or for the relay baseline one LISTEN connection.
	var subs []*subscriber
	var readers sync.WaitGroup
	var relayCount atomic.Int64
	stopRelay := func() {}
	switch {
	case s.Kind == kindRelay:
		stop, err := b.drainRelay(ctx, &relayCount)
		if err != nil {
			return err
		}
		stopRelay = stop
	case targets != nil && s.Subscribers > 0:
		var err error
		subs, err = b.openSockets(ctx, targets, s, &readers)
		defer func() {
			for _, sub := range subs {
				sub.conn.Close()
			}
			waitGroupTimeout(&readers, 30*time.Second)
		}()
		if err != nil {
			return err
		}
		for _, sub := range subs {
			if !sub.warm.Load() {
				r.WarmupMissing++
			}
		}
	}
	defer stopRelay()
	delivered := func() int64 {
		if s.Kind == kindRelay {
			return relayCount.Load()
		}
		var n int64
		for _, sub := range subs {
			n += sub.count.Load()
		}
		return n
	}
	receivers := int64(len(subs))
	if s.Kind == kindRelay {
		receivers = 1
	}

	before := make([]procUsage, len(procs))
	for i, p := range procs {
		before[i], _ = readUsage(p.pid())
	}
	var histBefore latencyHistogram
	if s.Kind == kindPgpush && len(procs) == 1 {
		histBefore, _ = scrapeLatency(ctx, procs[0].addr)
	}
	pgBefore := postgresCPUSeconds(b.postmaster)
	listenerPIDs := b.backendPIDs(ctx, "pgpush-listener")
	listenerBefore := sumCPUSeconds(listenerPIDs)
	benchBefore, _ := cpuSeconds(os.Getpid())
	busy0, steal0, total0 := hostCPU()

	var committed atomic.Int64
	stopSampling := sampleBacklog(ctx, r, func() int64 {
		// Delivered first: rows committed after it only add backlog, so a
		// sample is never negative.
		got := delivered()
		return committed.Load()*receivers - got
	})
	profiled := b.profileCPU(ctx, s, procs)
	stopSelfProfile := b.profileSelf(s)
	writeStart := now()
	var writerBackendCPU float64
	log, elapsed, werr := runWriters(ctx, writeLoad{URL: b.dbURL, Writers: s.Writers, Rate: s.Rate,
		Mode: s.Mode, Payload: s.Payload, Duration: time.Duration(s.Duration * float64(time.Second)),
		BackendCPU: &writerBackendCPU}, &committed)
	windowEnd := now()
	stopSampling()
	r.Profiles = append(profiled(), stopSelfProfile()...)
	busy1, steal1, total1 := hostCPU()
	if total1 > total0 {
		r.HostCPUBusy = float64(busy1-busy0) / float64(total1-total0)
		r.HostCPUSteal = float64(steal1-steal0) / float64(total1-total0)
	}
	r.RowsCommitted = log.rows()
	r.CommittedPerSec = float64(r.RowsCommitted) / elapsed.Seconds()

	// Stragglers: wait until every receiver has every row, or the deadline.
	drainStart := time.Now()
	want := r.RowsCommitted
	waitFor(ctx, b.opts.Drain, func() bool {
		if s.Kind == kindRelay {
			return relayCount.Load() >= want
		}
		for _, sub := range subs {
			if sub.count.Load() < want && !sub.done.Load() {
				return false
			}
		}
		return true
	})
	r.DrainSeconds = time.Since(drainStart).Seconds()
	pgAfter := postgresCPUSeconds(b.postmaster)
	r.PostgresCPUSecs = pgAfter - pgBefore
	if b.postmaster > 0 {
		r.WriterBackendCPUSecs = writerBackendCPU
		r.ListenerBackendCPUSecs = sumCPUSeconds(listenerPIDs) - listenerBefore
	}
	if benchAfter, err := cpuSeconds(os.Getpid()); err == nil {
		r.BenchCPUSecs = benchAfter - benchBefore
	}
	var serverCPU float64
	var writeSyscalls int64
	for i, p := range procs {
		after, err := readUsage(p.pid())
		if err != nil {
			continue
		}
		r.ServerRSS = append(r.ServerRSS, after.RSSBytes)
		r.ServerPeakRSS = append(r.ServerPeakRSS, after.PeakBytes)
		r.ServerCPUSecs = append(r.ServerCPUSecs, after.CPUSecs-before[i].CPUSecs)
		serverCPU += after.CPUSecs - before[i].CPUSecs
		writeSyscalls += after.WriteSyscalls - before[i].WriteSyscalls
	}
	if s.Kind == kindPgpush && len(procs) == 1 {
		if h, err := scrapeLatency(ctx, procs[0].addr); err == nil {
			r.ServerP50Ms = boundMs(h.quantileBound(histBefore, 0.5))
			r.ServerP99Ms = boundMs(h.quantileBound(histBefore, 0.99))
		}
	}
	if busy2, _, _ := hostCPU(); busy2 > busy0 {
		r.OtherCPUSecs = max(0, float64(busy2-busy0)/clockTicks-serverCPU-r.BenchCPUSecs-r.PostgresCPUSecs)
	}

	if s.Kind == kindRelay {
		stopRelay()
		n := relayCount.Load()
		r.Expected, r.Delivered = r.RowsCommitted, n
		r.Lost = max(r.RowsCommitted-n, 0)
		r.DeliveredPerSec = float64(n) / elapsed.Seconds()
		return werr
	}
	if len(subs) == 0 {
		return werr
	}
	reasons := map[string]int{}
	for _, sub := range subs {
		if sub.done.Load() {
			r.ClosedEarly++
			reasons[closeReason(sub.closeErr)]++
		}
	}
	for reason, n := range reasons {
		r.CloseReasons = append(r.CloseReasons, fmt.Sprintf("%d× %s", n, reason))
	}
	for _, sub := range subs {
		sub.conn.Close()
	}
	if !waitGroupTimeout(&readers, 30*time.Second) {
		return errors.Join(werr, errors.New("socket readers did not stop within 30s"))
	}
	recs := make([][]receipt, len(subs))
	perInstance := make([]int64, len(targets))
	for i, sub := range subs {
		recs[i] = sub.recs
		for _, rc := range sub.recs {
			if rc.at <= windowEnd {
				perInstance[sub.instance]++
			}
		}
	}
	m := match(log, recs, windowEnd)
	r.Expected, r.Delivered, r.DeliveredInWindow = m.Expected, m.Delivered, m.InWindow
	if m.Delivered > 0 && writeSyscalls > 0 {
		r.WriteSyscallsPerDelivery = float64(writeSyscalls) / float64(m.Delivered)
	}
	r.Lost, r.Duplicated, r.Unknown = m.Lost, m.Duplicated, m.Unknown
	window := time.Duration(windowEnd - writeStart).Seconds()
	r.DeliveredPerSec = float64(m.InWindow) / window
	if len(targets) > 1 {
		for _, n := range perInstance {
			r.PerInstancePerSec = append(r.PerInstancePerSec, float64(n)/window)
		}
	}
	r.P50Ms, r.P90Ms = ms(percentile(m.Latencies, 50)), ms(percentile(m.Latencies, 90))
	r.P99Ms, r.MaxMs = ms(percentile(m.Latencies, 99)), ms(percentile(m.Latencies, 100))
	r.BacklogGrowing = backlogGrowing(r.Backlog, r.CommittedPerSec*float64(len(subs)))
	return werr
}

// openSockets opens the run's sockets and waits until each has received a
// warm-up row, so the measured window starts with delivery active
// everywhere. One socket per target goes first: pg_eventserv starts its
// LISTEN only when a channel's first socket arrives.
func (b *bench) openSockets(ctx context.Context, targets []target, s runSpec, readers *sync.WaitGroup) ([]*subscriber, error) {
	dialCtx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	first := min(len(targets), s.Subscribers)
	subs, err := dialAll(dialCtx, targets, first, s.Writers, readers)
	if err != nil {
		return nil, err
	}
	warm := func(group []*subscriber, d time.Duration) {
		n := 0
		waitFor(ctx, d, func() bool {
			for _, sub := range group {
				if !sub.warm.Load() {
					if n%10 == 0 { // a new row every 200ms
						_ = b.insertWarm(ctx, n)
					}
					n++
					return false
				}
			}
			return true
		})
	}
	warm(subs, 30*time.Second)
	if s.Subscribers > first {
		// The rest continue the round-robin where the first ones stopped.
		rest := make([]target, len(targets))
		for i := range targets {
			rest[i] = targets[(first+i)%len(targets)]
		}
		more, err := dialAll(dialCtx, rest, s.Subscribers-first, s.Writers, readers)
		subs = append(subs, more...)
		if err != nil {
			return subs, err
		}
	}
	warm(subs, 60*time.Second)
	return subs, nil
}

// drainRelay listens on the relay channel and counts notifications, as the
// one listener a hand-written relay would have.
func (b *bench) drainRelay(ctx context.Context, count *atomic.Int64) (stop func(), err error) {
	conn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return nil, fmt.Errorf("connect relay listener: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+relayChannel); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("listen %q: %w", relayChannel, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := conn.WaitForNotification(lctx); err != nil {
				return
			}
			count.Add(1)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			conn.Close(context.WithoutCancel(ctx))
		})
	}, nil
}

func (b *bench) startEventserv(ctx context.Context) (*process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	bin := b.opts.EventservBin
	env := []string{"DATABASE_URL=" + b.dbURL, "ES_HTTPHOST=127.0.0.1", "ES_HTTPPORT=" + port}
	return startProcess(ctx, "pg_eventserv", bin, nil, env, filepath.Dir(bin),
		filepath.Join(b.tmp, "pg_eventserv.log"), addr, tcpReady)
}

// idle measures the server's resident memory per idle subscribed socket.
func (b *bench) idle(ctx context.Context, s runSpec, targets []target, p *process) *result {
	r := &result{runSpec: s}
	err := func() error {
		if err := b.prepareTable(ctx, s.Kind, s.Mode, s.Writers); err != nil {
			return err
		}
		settle := func() { sleepCtx(ctx, 3*time.Second) } // let the heap and RSS settle
		settle()
		before, err := readUsage(p.pid())
		if err != nil {
			return err
		}
		var readers sync.WaitGroup
		subs, err := b.openSockets(ctx, targets, s, &readers)
		defer func() {
			for _, sub := range subs {
				sub.conn.Close()
			}
			waitGroupTimeout(&readers, 30*time.Second)
		}()
		if err != nil {
			return err
		}
		settle()
		after, err := readUsage(p.pid())
		if err != nil {
			return err
		}
		r.Profiles = b.profileIdle(ctx, s, p)
		for _, sub := range subs {
			if sub.done.Load() {
				r.ClosedEarly++
			}
		}
		r.ServerRSS, r.ServerPeakRSS = []int64{after.RSSBytes}, []int64{after.PeakBytes}
		r.ServerCPUSecs = []float64{after.CPUSecs - before.CPUSecs}
		r.IdleRSSPerConn = float64(after.RSSBytes-before.RSSBytes) / float64(len(subs))
		return nil
	}()
	if err != nil {
		r.Error = err.Error()
	}
	b.results = append(b.results, r)
	fmt.Fprintln(b.out, r.line())
	return r
}

func closeReason(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Sprintf("close %d %s", ce.Code, ce.Text)
	}
	if err == nil {
		return "unknown"
	}
	return err.Error()
}

func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// line is the one human line per run.
func (r *result) line() string {
	var sb strings.Builder
	rate := "max"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%g/s", r.Rate)
	}
	fmt.Fprintf(&sb, "[%s] %-9s inst=%d W=%d S=%d %s rate=%s payload=%dB", r.Scenario, r.Kind,
		r.Instances, r.Writers, r.Subscribers, r.Mode, rate, r.Payload)
	if r.Idle {
		fmt.Fprintf(&sb, ": %.0f B RSS per idle socket (%.1f KiB), server RSS %.1f MiB",
			r.IdleRSSPerConn, r.IdleRSSPerConn/1024, mib(first(r.ServerRSS)))
	} else {
		fmt.Fprintf(&sb, " %gs: committed %.0f rows/s", r.Duration, r.CommittedPerSec)
		if r.Kind != kindNone {
			fmt.Fprintf(&sb, ", delivered %.0f/s", r.DeliveredPerSec)
			if len(r.PerInstancePerSec) > 0 {
				parts := make([]string, len(r.PerInstancePerSec))
				for i, v := range r.PerInstancePerSec {
					parts[i] = fmt.Sprintf("%.0f", v)
				}
				fmt.Fprintf(&sb, " (%s)", strings.Join(parts, "+"))
			}
			fmt.Fprintf(&sb, ", lost %d dup %d", r.Lost, r.Duplicated)
		}
		if r.Kind == kindPgpush || r.Kind == kindEventserv {
			fmt.Fprintf(&sb, ", latency p50 %.2f p90 %.2f p99 %.2f max %.1f ms", r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
			if r.ServerP99Ms != 0 {
				fmt.Fprintf(&sb, " (insert→server queue p50 %s p99 %s ms)", boundText(r.ServerP50Ms), boundText(r.ServerP99Ms))
			}
			if r.BacklogGrowing {
				sb.WriteString(", BACKLOG GROWING")
			}
			var rss int64
			var cpu float64
			for i := range r.ServerRSS {
				rss += r.ServerRSS[i]
				cpu += r.ServerCPUSecs[i]
			}
			fmt.Fprintf(&sb, ", server RSS %.1f MiB CPU %.1fs", mib(rss), cpu)
			if r.WriteSyscallsPerDelivery > 0 {
				fmt.Fprintf(&sb, " (%.2f write syscalls per delivery)", r.WriteSyscallsPerDelivery)
			}
		}
		if r.WriterBackendCPUSecs > 0 && r.RowsCommitted > 0 {
			fmt.Fprintf(&sb, ", postgres µs/row: writers %.0f listener %.0f",
				1e6*r.WriterBackendCPUSecs/float64(r.RowsCommitted), 1e6*r.ListenerBackendCPUSecs/float64(r.RowsCommitted))
		}
		fmt.Fprintf(&sb, ", bench CPU %.1fs, postgres CPU %.1fs, other processes %.1fs, host busy %.0f%% steal %.0f%%",
			r.BenchCPUSecs, r.PostgresCPUSecs, r.OtherCPUSecs, 100*r.HostCPUBusy, 100*r.HostCPUSteal)
	}
	if r.ClosedEarly > 0 {
		fmt.Fprintf(&sb, ", %d sockets closed early %v", r.ClosedEarly, r.CloseReasons)
	}
	if r.WarmupMissing > 0 {
		fmt.Fprintf(&sb, ", %d sockets missed the warm-up row", r.WarmupMissing)
	}
	if r.Error != "" {
		fmt.Fprintf(&sb, " ERROR: %s", r.Error)
	}
	return sb.String()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func first[T any](s []T) T {
	var zero T
	if len(s) == 0 {
		return zero
	}
	return s[0]
}

// profileFile names a profile of run s on instance i.
func (b *bench) profileFile(s runSpec, i int, what string) string {
	return filepath.Join(b.opts.ServerProfileDir, fmt.Sprintf("%02d-%s-%s-inst%d.%s", len(b.results)+1, s.Scenario, s.Kind, i, what))
}

// profileCPU starts a CPU profile of every pgpush server for the write
// phase (with --server-profile); the returned function waits for them and
// returns the files written.
func (b *bench) profileCPU(ctx context.Context, s runSpec, procs []*process) func() []string {
	if b.opts.ServerProfileDir == "" || s.Kind != kindPgpush || s.Duration <= 0 {
		return func() []string { return nil }
	}
	files := make([]string, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		if p.pprofAddr == "" {
			continue
		}
		file := b.profileFile(s, i, "cpu.pprof")
		wg.Go(func() {
			path := fmt.Sprintf("profile?seconds=%d", max(1, int(s.Duration)))
			if err := fetchProfile(ctx, p.pprofAddr, path, file); err != nil {
				fmt.Fprintf(b.out, "[%s] profile: %v\n", s.Scenario, err)
				return
			}
			files[i] = file
		})
	}
	return func() []string {
		wg.Wait()
		return slices.DeleteFunc(files, func(f string) bool { return f == "" })
	}
}

// profileIdle saves the heap (after a GC), goroutine and memory-statistics
// profiles of an idle pgpush server (with --server-profile).
func (b *bench) profileIdle(ctx context.Context, s runSpec, p *process) []string {
	if b.opts.ServerProfileDir == "" || p.pprofAddr == "" {
		return nil
	}
	var files []string
	for _, f := range []struct{ path, what string }{
		{"heap?gc=1", "heap.pprof"},
		{"heap?debug=1", "heap.txt"}, // ends with runtime.MemStats: stacks, heap, GC
		{"goroutine", "goroutine.pprof"},
		{"goroutine?debug=1", "goroutine.txt"},
	} {
		file := b.profileFile(s, 0, f.what)
		if err := fetchProfile(ctx, p.pprofAddr, f.path, file); err != nil {
			fmt.Fprintf(b.out, "[%s] profile: %v\n", s.Scenario, err)
			continue
		}
		files = append(files, file)
	}
	return files
}

// profileSelf profiles this process (writers and receiving sockets) for
// the write phase of a socket run (with --server-profile), to tell the
// receivers' cost from the server's on a shared box.
func (b *bench) profileSelf(s runSpec) func() []string {
	if b.opts.ServerProfileDir == "" || (s.Kind != kindPgpush && s.Kind != kindEventserv) || s.Subscribers == 0 {
		return func() []string { return nil }
	}
	file := filepath.Join(b.opts.ServerProfileDir, fmt.Sprintf("%02d-%s-%s-bench.cpu.pprof", len(b.results)+1, s.Scenario, s.Kind))
	f, err := os.Create(file)
	if err != nil {
		fmt.Fprintf(b.out, "[%s] profile: %v\n", s.Scenario, err)
		return func() []string { return nil }
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		fmt.Fprintf(b.out, "[%s] profile: %v\n", s.Scenario, err)
		return func() []string { return nil }
	}
	return func() []string {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return nil
		}
		return []string{file}
	}
}

// boundMs turns a histogram bound in seconds into milliseconds, -1 for +Inf.
func boundMs(sec float64) float64 {
	if math.IsInf(sec, 1) {
		return -1
	}
	return 1000 * sec
}

func boundText(ms float64) string {
	if ms < 0 {
		return "> 10000"
	}
	return fmt.Sprintf("≤ %g", ms)
}

// sampleBacklog appends backlog() to r.Backlog every second until the
// returned stop is called; stop returns once the sampler has ended.
func sampleBacklog(ctx context.Context, r *result, backlog func() int64) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.Backlog = append(r.Backlog, backlog())
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
