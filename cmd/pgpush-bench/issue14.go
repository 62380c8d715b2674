package main

// Issue 14's fan-out comparison with pg_eventserv, and its targets.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

func init() {
	scenarios["fanout-5k"] = fanout5k
	scenarioOrder = append(scenarioOrder, "fanout-5k")
}

// fanout5k is issue 14's plain fan-out, side by side in one run: 5,000
// sockets on one channel at 20 rows/s on pgpush, then the same on
// pg_eventserv, then idle-10k on both (memory per idle socket).
func fanout5k(ctx context.Context, b *bench) error {
	if b.opts.EventservBin == "" {
		return errors.New("fanout-5k compares with pg_eventserv: give --compare-eventserv PATH")
	}
	set := func(s *runSpec) { s.Instances, s.Writers, s.Subscribers, s.Rate, s.Duration = 1, 4, 5000, 20, 20 }
	if err := b.startServers(ctx, 1); err != nil {
		return err
	}
	p := b.measure(ctx, b.spec("fanout-5k", kindPgpush, set))
	// The same with the fan-out's writes held for fanoutDelay: what a
	// deployment that can spare that much latency gets back in CPU.
	b.serverEnv = []string{"FANOUT_WRITE_DELAY=" + fanoutDelay.String()}
	err := b.startServers(ctx, 1)
	b.serverEnv = nil
	if err != nil {
		return err
	}
	d := b.measure(ctx, b.spec(fanoutDelayed, kindPgpush, set))
	b.stopServers()
	e := b.measure(ctx, b.spec("fanout-5k", kindEventserv, set))
	fmt.Fprintf(b.out, "[fanout-5k] server CPU per delivery: pgpush %.2f µs (FANOUT_WRITE_DELAY=%v: %.2f µs), pg_eventserv %.2f µs\n",
		cpuPerDeliveryUs(p), fanoutDelay, cpuPerDeliveryUs(d), cpuPerDeliveryUs(e))
	return idle10k(ctx, b)
}

// fanoutDelay is the FANOUT_WRITE_DELAY of fanout-5k's second pgpush run:
// two events of the 20 rows/s per write.
const (
	fanoutDelay   = 100 * time.Millisecond
	fanoutDelayed = "fanout-5k-delayed"
)

// cpuPerDeliveryUs is the servers' CPU time per frame received.
func cpuPerDeliveryUs(r *result) float64 {
	var cpu float64
	for _, c := range r.ServerCPUSecs {
		cpu += c
	}
	if r.Delivered == 0 {
		return 0
	}
	return 1e6 * cpu / float64(r.Delivered)
}

// issue14Targets reads the results of match-10k, filter-10k and
// fanout-5k against issue 14's targets. Idle memory per socket is issue 7's
// idle-10k target, evaluated with the others.
func issue14Targets(results []*result) []targetResult {
	find := func(scenario, kind string) []*result { return resultsOf(results, scenario, kind) }
	var ts []targetResult
	for _, name := range []string{"match-10k", "filter-10k"} {
		rs := find(name, kindPgpush)
		if len(rs) == 0 {
			continue
		}
		var perRow, p99, delivery []string
		cpuAt := map[int]float64{}
		worstP99, rateReached := 0.0, true
		exact := true
		var owed, got int64
		for _, r := range rs {
			us := 1e6 * first(r.ServerCPUSecs) / float64(max(r.RowsCommitted, 1))
			cpuAt[r.Subscribers] = us
			perRow = append(perRow, fmt.Sprintf("%d: %.0f µs", r.Subscribers, us))
			p99 = append(p99, fmt.Sprintf("%d: %.1f ms at %.0f rows/s", r.Subscribers, r.P99Ms, r.CommittedPerSec))
			delivery = append(delivery, fmt.Sprintf("%d: %d of %d rows, lost %d dup %d misdelivered %d", r.Subscribers,
				r.Expected-r.Lost, r.Expected, r.Lost, r.Duplicated, r.Misdelivered))
			worstP99 = max(worstP99, r.P99Ms)
			rateReached = rateReached && r.CommittedPerSec >= 0.95*r.Rate
			exact = exact && r.Lost == 0 && r.Duplicated == 0 && r.Misdelivered == 0 && r.Unknown == 0 && r.WarmupMissing == 0
			owed, got = owed+r.Expected, got+r.Expected-r.Lost
		}
		if lo, hi := cpuAt[100], cpuAt[10000]; lo > 0 && hi > 0 {
			growth := hi / lo
			ts = append(ts, targetResult{name + ": server CPU per row, 10,000 vs 100 subscribers", "≤ 2× (flat)",
				fmt.Sprintf("%s; 10,000 ÷ 100 = %.2f", strings.Join(perRow, ", "), growth), 2 / growth, growth <= 2})
		}
		ts = append(ts, targetResult{name + ": every row to exactly its customer", "0 lost, 0 duplicated, 0 misdelivered",
			strings.Join(delivery, "; "), float64(got) / float64(max(owed, 1)), exact})
		// Met only where the rate was reached: a box that cannot commit
		// 1,000 rows/s has not tested the target.
		ts = append(ts, targetResult{fmt.Sprintf("%s: p99 commit→client at %g rows/s", name, rs[0].Rate), "≤ 10 ms, every rung at ≥ 95% of that rate",
			strings.Join(p99, ", "),
			10 / max(worstP99, 0.001), worstP99 <= 10 && rateReached})
	}
	if p, e := find("fanout-5k", kindPgpush), find("fanout-5k", kindEventserv); len(p) > 0 && len(e) > 0 {
		pc, ec := cpuPerDeliveryUs(p[0]), cpuPerDeliveryUs(e[0])
		if pc > 0 && ec > 0 {
			ratio := pc / ec
			ts = append(ts, targetResult{"fan-out, 5,000 sockets, 20 rows/s: server CPU per delivery", "≤ 0.5 × pg_eventserv's",
				fmt.Sprintf("pgpush %.2f µs, pg_eventserv %.2f µs: %.2f× (lost %d / %d)", pc, ec, ratio, p[0].Lost, e[0].Lost),
				0.5 / ratio, ratio <= 0.5})
		}
		ts = append(ts, targetResult{"fan-out, 5,000 sockets, 20 rows/s: p99 commit→client", "≤ pg_eventserv's",
			fmt.Sprintf("pgpush %.1f ms, pg_eventserv %.1f ms", p[0].P99Ms, e[0].P99Ms),
			e[0].P99Ms / max(p[0].P99Ms, 0.001), p[0].P99Ms <= e[0].P99Ms && p[0].Lost == 0})
		if d := find(fanoutDelayed, kindPgpush); len(d) > 0 && ec > 0 {
			dc := cpuPerDeliveryUs(d[0])
			ratio := dc / ec
			ts = append(ts, targetResult{fmt.Sprintf("the same with FANOUT_WRITE_DELAY=%v: CPU per delivery and p99", fanoutDelay), "≤ 0.5 × pg_eventserv's; p99 ≤ pg_eventserv's",
				fmt.Sprintf("pgpush %.2f µs: %.2f× (lost %d); p99 %.1f ms", dc, ratio, d[0].Lost, d[0].P99Ms),
				0.5 / ratio, ratio <= 0.5 && d[0].P99Ms <= e[0].P99Ms && d[0].Lost == 0})
		}
	}
	return ts
}
