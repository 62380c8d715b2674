package httpapi

import (
	"context"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgpush/pgpush/realtime"
)

const (
	// HistoryInterval is how often History samples the hub and listener.
	HistoryInterval = time.Second
	// historyLen is how many samples History keeps: 10 minutes.
	historyLen = 600
)

// Latency buckets are log-linear over microseconds: four per power of two
// (so a bucket is at most 1/4 of its lower bound wide, and its midpoint
// within 12.5% of any value in it), exact below 4 µs, and the last one
// also holds everything from about 2 minutes up. 104 counters are swapped
// once a second: no per-event allocation, no lock.
const (
	latencySubBits  = 2
	latencySubs     = 1 << latencySubBits
	latencyMaxPower = 26 // the last power of two with buckets of its own: 2^26 µs ≈ 67 s
	latencyBuckets  = latencySubs + (latencyMaxPower-latencySubBits+1)*latencySubs
)

// latencyBucket returns d's bucket.
func latencyBucket(d time.Duration) int {
	us := d.Microseconds()
	if us < latencySubs {
		return int(max(us, 0)) // a negative age: the database's clock is ahead
	}
	power := bits.Len64(uint64(us)) - 1 // us is in [2^power, 2^(power+1))
	sub := int(us>>(power-latencySubBits)) & (latencySubs - 1)
	return min(latencySubs+(power-latencySubBits)*latencySubs+sub, latencyBuckets-1)
}

// latencyBucketLow returns the smallest value, in µs, of bucket i;
// latencyBucketLow(i+1) is its end.
func latencyBucketLow(i int) float64 {
	if i < latencySubs {
		return float64(i)
	}
	power := (i-latencySubs)/latencySubs + latencySubBits
	sub := (i - latencySubs) % latencySubs
	return float64(uint64(latencySubs+sub) << (power - latencySubBits))
}

// latencyQuantile returns the q-quantile of counts in milliseconds (the
// midpoint of the bucket it falls in), or NaN when counts are all zero.
func latencyQuantile(counts *[latencyBuckets]uint64, total uint64, q float64) float64 {
	if total == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, n := range counts {
		seen += n
		if seen >= rank {
			return (latencyBucketLow(i) + latencyBucketLow(i+1)) / 2 / 1000
		}
	}
	return math.NaN() // unreachable: the counts add up to total
}

// Sample is one interval of traffic on this instance.
type Sample struct {
	Time time.Time // end of the interval
	// ReceivedPerSecond is events the listener dispatched; DeliveredPerSecond
	// is event frames queued to sockets (one per subscriber).
	ReceivedPerSecond, DeliveredPerSecond float64
	// LatencyP50Millis and LatencyP99Millis are the time from an event's
	// commit to its fan-out, over the events of the interval; NaN when
	// there were none.
	LatencyP50Millis, LatencyP99Millis float64
	// ListenerLagMillis is the listener's lag at the end of the interval:
	// the age of the newest event when it was dispatched.
	ListenerLagMillis int64
}

// History keeps the last 10 minutes of per-second samples of events
// received and delivered, commit-to-fan-out latency and listener lag, for
// the operator view. Counters are read from the hub once a second; only
// ObserveLatency runs per event, and it is one atomic add.
type History struct {
	stats    *realtime.Stats
	listener ListenerStats

	latency [latencyBuckets]atomic.Uint64 // this interval's observations

	// Only Run touches these: the counters at the previous sample.
	lastTime                    time.Time
	lastReceived, lastDelivered int64

	mu    sync.Mutex
	ring  [historyLen]Sample
	next  int // where the next sample goes
	count int // samples held, up to historyLen
}

// NewHistory makes a History of the hub's counters and the listener's lag.
// Run samples them.
func NewHistory(stats *realtime.Stats, listener ListenerStats) *History {
	return &History{stats: stats, listener: listener}
}

// ObserveLatency records one event's time from commit to fan-out.
func (h *History) ObserveLatency(d time.Duration) {
	h.latency[latencyBucket(d)].Add(1)
}

// Dispatched records the latency of events the hub has just dispatched,
// as the hub's own latency observer (which /metrics holds) does, measured
// once the whole batch is fanned out. Call it from the listener's
// DispatchFunc, after Hub.Dispatch.
func (h *History) Dispatched(events []*realtime.Event) {
	now := time.Now()
	for _, ev := range events {
		h.ObserveLatency(now.Sub(ev.Time))
	}
}

// Run takes a sample every HistoryInterval until ctx ends.
func (h *History) Run(ctx context.Context) {
	ticker := time.NewTicker(HistoryInterval)
	defer ticker.Stop()
	h.lastTime = time.Now()
	h.lastReceived, h.lastDelivered = h.stats.Received.Load(), h.stats.Delivered.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			h.sample(now)
		}
	}
}

// sample closes the interval that ends at now.
func (h *History) sample(now time.Time) {
	received, delivered := h.stats.Received.Load(), h.stats.Delivered.Load()
	// Per second of the real interval: a late tick must not read as a spike.
	seconds := now.Sub(h.lastTime).Seconds()
	if seconds <= 0 {
		seconds = HistoryInterval.Seconds()
	}
	var counts [latencyBuckets]uint64
	var total uint64
	for i := range h.latency {
		counts[i] = h.latency[i].Swap(0)
		total += counts[i]
	}
	s := Sample{
		Time:               now,
		ReceivedPerSecond:  float64(received-h.lastReceived) / seconds,
		DeliveredPerSecond: float64(delivered-h.lastDelivered) / seconds,
		LatencyP50Millis:   latencyQuantile(&counts, total, 0.50),
		LatencyP99Millis:   latencyQuantile(&counts, total, 0.99),
		ListenerLagMillis:  h.listener.LagMillis(),
	}
	h.lastTime, h.lastReceived, h.lastDelivered = now, received, delivered
	h.mu.Lock()
	h.ring[h.next] = s
	h.next = (h.next + 1) % historyLen
	h.count = min(h.count+1, historyLen)
	h.mu.Unlock()
}

// Samples returns the samples held, oldest first.
func (h *History) Samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Sample, 0, h.count)
	start := (h.next - h.count + historyLen) % historyLen
	for i := range h.count {
		out = append(out, h.ring[(start+i)%historyLen])
	}
	return out
}
