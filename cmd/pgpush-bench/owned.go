package main

// The per-user scenarios of issue 14: each socket is one customer's, and
// must get that customer's rows and nothing else, whatever the number of
// other customers connected.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Settings of match-10k and filter-10k. A flag given explicitly overrides
// rate, duration and writers; --subscribers runs that one rung instead of
// ownedRungs.
const (
	ownedRate     = 1000 // rows/s, each for one random customer
	ownedDuration = 20   // seconds per rung
	ownedWriters  = 8    // paced: 125 rows/s each leaves 8 ms per commit on a busy box
	customerRole  = "customer"
	ownedChannel  = "order_changes"
)

// ownedRungs are the subscriber counts whose server CPU per row issue 14
// compares: it must not grow with the number of customers connected.
var ownedRungs = []int{100, 1000, 10000}

// ownedMode says how a socket is tied to its customer.
type ownedMode int

const (
	// ownedMatch: a logged-in user of role customer with attribute
	// customer_id, under `grant order_changes --role customer --match
	// customer_id=customer_id`.
	ownedMatch ownedMode = iota
	// ownedFilter: an anonymous socket subscribed with the filter
	// {"customer_id": i}, the channel granted to role anonymous.
	ownedFilter
)

// Registered here rather than in scenarios.go's table so that this file
// stands alone; init runs after the table is built.
func init() {
	scenarios["match-10k"] = ownedScenario("match-10k", ownedMatch)
	scenarios["filter-10k"] = ownedScenario("filter-10k", ownedFilter)
	scenarioOrder = append(scenarioOrder, "match-10k", "filter-10k")
}

// logins is how long the per-user scenarios' customers took to log in,
// measured apart from the runs.
type logins struct {
	Count          int     `json:"count"`
	HashCost       int     `json:"bcrypt_cost"`
	Parallel       int     `json:"parallel"`
	Seconds        float64 `json:"seconds"`
	PerSec         float64 `json:"logins_per_s"`
	ServerCPUMsPer float64 `json:"server_cpu_ms_per_login"`
}

// loginParallel is how many logins are in flight at once. Each takes a
// token of the server's per-address failed-login bucket (20) until it
// succeeds, so more than 20 at once would be refused with 429.
const loginParallel = 8

// ownedScenario runs one rung per subscriber count, each on a fresh
// server, after creating and logging in the customers (ownedMatch).
func ownedScenario(name string, mode ownedMode) scenarioFunc {
	return func(ctx context.Context, b *bench) error {
		rungs := ownedRungs
		if b.opts.set["subscribers"] {
			rungs = []int{max(b.opts.Subscribers, 1)}
		}
		customers := slices.Max(rungs)
		role, grant := customerRole, []string{"grant", ownedChannel, "--role", customerRole, "--match", "customer_id=customer_id"}
		if mode == ownedFilter {
			role, grant = "anonymous", []string{"grant", ownedChannel, "--role", "anonymous"}
		}
		if err := b.pgpush(ctx, nil, grant...); err != nil {
			return err
		}
		// Other scenarios must not see this grant (anonymous sockets).
		defer func() {
			b.stopServers()
			if err := b.pgpush(context.WithoutCancel(ctx), nil, "revoke", ownedChannel, "--role", role); err != nil {
				fmt.Fprintf(b.out, "[%s] %v\n", name, err)
			}
		}()
		var cookies []http.Header
		if mode == ownedMatch {
			if err := b.addCustomers(ctx, customers); err != nil {
				return err
			}
			if err := b.startServers(ctx, 1); err != nil {
				return err
			}
			var err error
			if cookies, err = b.loginCustomers(ctx, name, customers); err != nil {
				return err
			}
		}
		for _, n := range rungs {
			// Statistics first: without them the listener's query reads the
			// whole log on every doorbell (see analyzeLog).
			if err := b.analyzeLog(ctx); err != nil {
				return err
			}
			// A fresh server per rung: its CPU and memory are this rung's.
			if err := b.startServers(ctx, 1); err != nil {
				return err
			}
			s := b.spec(name, kindPgpush, func(s *runSpec) {
				s.Writers, s.Subscribers, s.Rate, s.Duration = ownedWriters, n, ownedRate, ownedDuration
			})
			// One server, so CPU per row is one process's; rows are inserted
			// because an insert names its customer.
			s.Instances, s.Mode, s.Subscribers = 1, "insert", n
			b.measureOwned(ctx, s, ownedTargets(b.servers[0].addr, mode, cookies, n))
		}
		return nil
	}
}

// analyzeLog gathers planner statistics on pgpush's event log before a
// rung's server starts. A throwaway cluster's log is younger than
// autovacuum's first ANALYZE (one minute at the earliest), and without
// statistics PostgreSQL plans the listener's EventsAfter as a hash join
// over a sequential scan of all of pgpush.events: measured on 2026-12-01,
// from the second rung on, seq_scan on pgpush.events rose by ~7,800 in 40 s
// while idx_scan stayed flat, and p50 commit→client went from 0.25 ms to
// 4.7 and 17.8 ms as the log grew to 20,000 and 40,000 rows. A server whose
// log has been analyzed does not pay this; the rungs compare subscribers,
// not log ages.
func (b *bench) analyzeLog(ctx context.Context) error {
	return b.exec(ctx, `ANALYZE pgpush.events, pgpush.commits`)
}

// customerEmail is customer i's address for this invocation: unique, so
// that a --database-url reused across runs never collides.
func (b *bench) customerEmail(i int) string {
	return strings.Replace(b.email, "@", fmt.Sprintf("-c%d@", i), 1)
}

// addCustomers inserts customers 1..n with attribute customer_id = i, all
// with one bcrypt hash of the bench password at the cheapest cost. Going
// through `pgpush user add` would hash each at cost 12 (a quarter second
// of CPU each, 40 minutes for 10,000 on this machine); logging in with a
// cost-4 hash is measured apart (loginCustomers).
func (b *bench) addCustomers(ctx context.Context, n int) error {
	start := time.Now()
	hash, err := bcrypt.GenerateFromPassword([]byte(b.password), bcrypt.MinCost)
	if err != nil {
		return fmt.Errorf("hash customer password: %w", err)
	}
	format := strings.Replace(b.email, "@", "-c%s@", 1)
	if err := b.exec(ctx, `INSERT INTO pgpush.users (email, role, attrs, password_hash)
		SELECT format($1::text, g), $2::text, jsonb_build_object('customer_id', g::text), $3::text
		FROM generate_series(1, $4::int) g
		ON CONFLICT DO NOTHING`, format, customerRole, string(hash), n); err != nil {
		return fmt.Errorf("add customers: %w", err)
	}
	fmt.Fprintf(b.out, "added %d customers (one bcrypt hash of cost %d, inserted into pgpush.users) in %.1fs\n",
		n, bcrypt.MinCost, time.Since(start).Seconds())
	return nil
}

// loginCustomers logs customers 1..n in through the running server and
// records how long that took and what it cost the server. Sessions live in
// the database, so the cookies stay valid on the servers started later.
func (b *bench) loginCustomers(ctx context.Context, scenario string, n int) ([]http.Header, error) {
	p := b.servers[0]
	before, err := readUsage(p.pid())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	cookies := make([]http.Header, n)
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range loginParallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) // customer ids start at 1
				if i > n || ctx.Err() != nil {
					return
				}
				c, err := login(ctx, p.addr, b.customerEmail(i), b.password)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("customer %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
				cookies[i-1] = c
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	after, err := readUsage(p.pid())
	if err != nil {
		return nil, err
	}
	cpu := after.CPUSecs - before.CPUSecs
	l := &logins{Count: n, HashCost: bcrypt.MinCost, Parallel: loginParallel, Seconds: elapsed.Seconds(),
		PerSec: float64(n) / elapsed.Seconds(), ServerCPUMsPer: 1000 * cpu / float64(n)}
	r := &result{runSpec: runSpec{Scenario: scenario, Kind: "login", Instances: 1, Subscribers: n}, Logins: l,
		ServerCPUSecs: []float64{cpu}, ServerRSS: []int64{after.RSSBytes}}
	b.results = append(b.results, r)
	fmt.Fprintf(b.out, "[%s] login     %d customers, %d at a time, bcrypt cost %d: %.1fs, %.0f logins/s, server CPU %.2f ms per login\n",
		scenario, n, loginParallel, bcrypt.MinCost, l.Seconds, l.PerSec, l.ServerCPUMsPer)
	return cookies, nil
}

// ownedTargets is one target per socket: socket i is customer i+1's.
func ownedTargets(addr string, mode ownedMode, cookies []http.Header, n int) []target {
	ts := make([]target, n)
	for i := range ts {
		t := target{URL: "ws://" + addr + "/ws"}
		switch mode {
		case ownedMatch:
			t.Header = cookies[i]
			t.Subscribe = []byte(`{"type":"subscribe","channel":"` + ownedChannel + `"}`)
		case ownedFilter:
			t.Subscribe = fmt.Appendf(nil, `{"type":"subscribe","channel":"%s","filter":{"customer_id":%d}}`, ownedChannel, i+1)
		}
		ts[i] = t
	}
	return ts
}

// customerOf is the customer (1..n) of the row with key: a hash of the
// key, so rows land on customers at random as far as the server can tell,
// while the writers and the matcher agree without sharing any state.
func customerOf(key uint64, n int) int64 {
	// splitmix64's finaliser.
	z := key + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int64(z%uint64(n)) + 1
}

// measureOwned runs one per-user rung and records and prints its result.
// The server must already run.
func (b *bench) measureOwned(ctx context.Context, s runSpec, targets []target) *result {
	r := &result{runSpec: s}
	if err := b.measureOwnedInto(ctx, r, targets); err != nil {
		r.Error = err.Error()
	}
	b.results = append(b.results, r)
	fmt.Fprintln(b.out, r.ownedLine())
	return r
}

// ownedLine is line() plus what only a per-user run has.
func (r *result) ownedLine() string {
	perRow := 0.0
	if r.RowsCommitted > 0 {
		perRow = 1e6 * first(r.ServerCPUSecs) / float64(r.RowsCommitted)
	}
	return fmt.Sprintf("%s; misdelivered %d, unknown %d, server CPU per row %.0f µs, waiting for a CPU: server %.1fs bench %.1fs",
		r.line(), r.Misdelivered, r.Unknown, perRow, r.ServerRunQueueSecs, r.BenchRunQueueSecs)
}

// runQueueWait is how long pid's threads have been ready to run but
// waited for a CPU (the second field of /proc/<pid>/task/*/schedstat),
// summed over the threads alive now. On a shared box it tells a latency
// the server causes from one the run queue causes.
func runQueueWait(pid int) time.Duration {
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var total time.Duration
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if fields := strings.Fields(string(b)); len(fields) >= 2 {
			ns, _ := strconv.ParseInt(fields[1], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

func (b *bench) measureOwnedInto(ctx context.Context, r *result, targets []target) error {
	s := r.runSpec
	if len(b.servers) == 0 {
		return errNoServers
	}
	p := b.servers[0]
	if err := b.prepareTable(ctx, kindPgpush, s.Mode, s.Writers); err != nil {
		return err
	}
	var readers sync.WaitGroup
	dialCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	subs, err := dialAll(dialCtx, targets, s.Subscribers, s.Writers, &readers)
	cancel()
	defer func() {
		for _, sub := range subs {
			sub.conn.Close()
		}
		waitGroupTimeout(&readers, 30*time.Second)
	}()
	if err != nil {
		return err
	}
	if r.WarmupMissing, err = b.warmOwned(ctx, subs); err != nil {
		return err
	}
	delivered := func() int64 {
		var n int64
		for _, sub := range subs {
			n += sub.count.Load()
		}
		return n
	}

	before, err := readUsage(p.pid())
	if err != nil {
		return err
	}
	histBefore, _ := scrapeLatency(ctx, p.addr)
	serverWait0, benchWait0 := runQueueWait(p.pid()), runQueueWait(os.Getpid())
	pgBefore := postgresCPUSeconds(b.postmaster)
	benchBefore, _ := cpuSeconds(os.Getpid())
	busy0, steal0, total0 := hostCPU()

	var committed atomic.Int64
	stopSampling := sampleBacklog(ctx, r, func() int64 {
		got := delivered() // first, so a sample is never negative
		return committed.Load() - got
	})
	procs := []*process{p}
	profiled := b.profileCPU(ctx, s, procs)
	stopSelfProfile := b.profileSelf(s)
	n := s.Subscribers
	writeStart := now()
	log, elapsed, werr := runWriters(ctx, writeLoad{URL: b.dbURL, Writers: s.Writers, Rate: s.Rate, Mode: s.Mode,
		Payload: s.Payload, Duration: time.Duration(s.Duration * float64(time.Second)),
		Customer: func(key uint64) int64 { return customerOf(key, n) }}, &committed)
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

	// Stragglers: every row has one receiver.
	drainStart := time.Now()
	waitFor(ctx, b.opts.Drain, func() bool {
		if delivered() >= r.RowsCommitted {
			return true
		}
		for _, sub := range subs {
			if !sub.done.Load() {
				return false
			}
		}
		return true
	})
	r.DrainSeconds = time.Since(drainStart).Seconds()
	r.ServerRunQueueSecs = (runQueueWait(p.pid()) - serverWait0).Seconds()
	r.BenchRunQueueSecs = (runQueueWait(os.Getpid()) - benchWait0).Seconds()
	r.PostgresCPUSecs = postgresCPUSeconds(b.postmaster) - pgBefore
	if benchAfter, err := cpuSeconds(os.Getpid()); err == nil {
		r.BenchCPUSecs = benchAfter - benchBefore
	}
	after, err := readUsage(p.pid())
	if err != nil {
		return err
	}
	serverCPU := after.CPUSecs - before.CPUSecs
	r.ServerRSS, r.ServerPeakRSS, r.ServerCPUSecs = []int64{after.RSSBytes}, []int64{after.PeakBytes}, []float64{serverCPU}
	if h, err := scrapeLatency(ctx, p.addr); err == nil {
		r.ServerP50Ms = boundMs(h.quantileBound(histBefore, 0.5))
		r.ServerP99Ms = boundMs(h.quantileBound(histBefore, 0.99))
	}
	if busy2, _, _ := hostCPU(); busy2 > busy0 {
		r.OtherCPUSecs = max(0, float64(busy2-busy0)/clockTicks-serverCPU-r.BenchCPUSecs-r.PostgresCPUSecs)
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
		return fmt.Errorf("socket readers did not stop within 30s (writers: %v)", werr)
	}
	recs := make([][]receipt, len(subs))
	for i, sub := range subs {
		recs[i] = sub.recs
	}
	m := matchOwned(log, recs, func(key uint64) int { return int(customerOf(key, n)) - 1 }, windowEnd)
	r.Expected, r.Delivered, r.DeliveredInWindow = m.Expected, m.Delivered, m.InWindow
	r.Lost, r.Duplicated, r.Unknown, r.Misdelivered = m.Lost, m.Duplicated, m.Unknown, m.Misdelivered
	if m.Delivered > 0 {
		r.WriteSyscallsPerDelivery = float64(after.WriteSyscalls-before.WriteSyscalls) / float64(m.Delivered)
	}
	r.DeliveredPerSec = float64(m.InWindow) / time.Duration(windowEnd-writeStart).Seconds()
	r.P50Ms, r.P90Ms = ms(percentile(m.Latencies, 50)), ms(percentile(m.Latencies, 90))
	r.P99Ms, r.MaxMs = ms(percentile(m.Latencies, 99)), ms(percentile(m.Latencies, 100))
	r.BacklogGrowing = backlogGrowing(r.Backlog, r.CommittedPerSec)
	return werr
}

// warmOwned writes one row for each customer whose socket has not had one
// yet, in one transaction, and waits for them; at most three rounds. It
// returns how many sockets never got theirs. The measured window starts
// only when delivery is known to work for every socket.
func (b *bench) warmOwned(ctx context.Context, subs []*subscriber) (int, error) {
	missing := func() []int64 {
		var ids []int64
		for i, sub := range subs {
			if !sub.warm.Load() {
				ids = append(ids, int64(i+1))
			}
		}
		return ids
	}
	for range 3 {
		ids := missing()
		if len(ids) == 0 {
			return 0, nil
		}
		if err := b.exec(ctx, `INSERT INTO `+benchTable+` (bench_k, status, total, customer_id, payload)
			SELECT $1::bigint + c, 'paid', 99.99, c, '' FROM unnest($2::bigint[]) c`,
			int64(makeKey(warmWriter, 0)), ids); err != nil {
			return 0, fmt.Errorf("warm-up rows: %w", err)
		}
		waitFor(ctx, 20*time.Second, func() bool {
			for _, sub := range subs {
				if !sub.warm.Load() {
					return false
				}
			}
			return true
		})
	}
	return len(missing()), nil
}

// ownedMatchResult is what per-user receivers got: each row is owed to
// exactly one subscriber.
type ownedMatchResult struct {
	Expected     int64 // committed rows, one delivery each
	Delivered    int64 // frames with a key some writer committed, to anyone
	Unique       int64 // rows delivered to their owner at least once
	Lost         int64 // Expected - Unique
	Duplicated   int64 // deliveries to the owner beyond the first
	Misdelivered int64 // deliveries to a subscriber that is not the owner
	Unknown      int64 // keys of writer slots nobody committed
	InWindow     int64 // deliveries read no later than windowEnd
	Latencies    []int64
}

// matchOwned joins the receipts of every subscriber with the commit log
// when row k belongs to subscriber owner(k) alone. Keys of writers beyond
// the log (the warm-up rows) are ignored.
func matchOwned(commits commitLog, subs [][]receipt, owner func(key uint64) int, windowEnd int64) ownedMatchResult {
	var r ownedMatchResult
	r.Expected = commits.rows()
	seen := make([][]bool, len(commits))
	for w := range commits {
		seen[w] = make([]bool, len(commits[w]))
	}
	r.Latencies = make([]int64, 0, r.Expected)
	for i, recs := range subs {
		for _, rc := range recs {
			w, n := splitKey(rc.key)
			if w >= len(commits) {
				continue
			}
			if n >= len(commits[w]) {
				r.Unknown++
				continue
			}
			r.Delivered++
			if rc.at <= windowEnd {
				r.InWindow++
			}
			switch {
			case owner(rc.key) != i:
				r.Misdelivered++
			case seen[w][n]:
				r.Duplicated++
			default:
				seen[w][n] = true
				r.Unique++
				r.Latencies = append(r.Latencies, rc.at-commits[w][n])
			}
		}
	}
	r.Lost = r.Expected - r.Unique
	slices.Sort(r.Latencies)
	return r
}
