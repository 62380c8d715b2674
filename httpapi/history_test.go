package httpapi

import (
	"math"
	"testing"
	"time"

	"github.com/pgpush/pgpush/realtime"
)

func TestLatencyBucketHoldsItsValue(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{
		0, time.Microsecond, 3 * time.Microsecond, 4 * time.Microsecond, 7 * time.Microsecond,
		8 * time.Microsecond, 15 * time.Microsecond, 999 * time.Microsecond, time.Millisecond,
		1234567 * time.Nanosecond, 250 * time.Millisecond, 10 * time.Second, 60 * time.Second,
	} {
		i := latencyBucket(d)
		us := float64(d.Microseconds())
		low, high := latencyBucketLow(i), latencyBucketLow(i+1)
		if us < low || us >= high {
			t.Errorf("latencyBucket(%v)=%d covers [%v, %v) µs, want it to hold %v", d, i, low, high, us)
		}
		if us >= 4 && (high-low)/low > 0.25 {
			t.Errorf("bucket %d [%v, %v) µs is wider than a quarter of its start", i, low, high)
		}
	}
	for _, tt := range []struct {
		name string
		d    time.Duration
		want int
	}{
		{"negative (database clock ahead)", -time.Second, 0},
		{"beyond the last bucket", time.Hour, latencyBuckets - 1},
	} {
		if got := latencyBucket(tt.d); got != tt.want {
			t.Errorf("%s: latencyBucket(%v)=%d, want %d", tt.name, tt.d, got, tt.want)
		}
	}
}

func TestLatencyBucketsAreContiguous(t *testing.T) {
	t.Parallel()
	for i := range latencyBuckets {
		low := latencyBucketLow(i)
		if got := latencyBucket(time.Duration(low) * time.Microsecond); got != i {
			t.Fatalf("the start of bucket %d (%v µs) falls in bucket %d", i, low, got)
		}
	}
}

type fakeListener struct{ lag int64 }

func (fakeListener) Ready() bool        { return true }
func (fakeListener) Reconnects() int64  { return 0 }
func (l fakeListener) LagMillis() int64 { return l.lag }

func TestHistorySample(t *testing.T) {
	t.Parallel()
	var stats realtime.Stats
	h := NewHistory(&stats, fakeListener{lag: 7})
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h.lastTime = start

	// An interval with 98 fast events and 2 slow ones, sampled late.
	stats.Received.Add(100)
	stats.Delivered.Add(300)
	for range 98 {
		h.ObserveLatency(2 * time.Millisecond)
	}
	h.ObserveLatency(400 * time.Millisecond)
	h.ObserveLatency(400 * time.Millisecond)
	h.sample(start.Add(2 * time.Second))
	// An idle interval.
	h.sample(start.Add(3 * time.Second))

	got := h.Samples()
	if len(got) != 2 {
		t.Fatalf("Samples() holds %d, want 2", len(got))
	}
	busy, idle := got[0], got[1]
	if busy.ReceivedPerSecond != 50 || busy.DeliveredPerSecond != 150 {
		t.Errorf("busy interval: %v received/s, %v delivered/s, want 50 and 150 (a 2 s interval)", busy.ReceivedPerSecond, busy.DeliveredPerSecond)
	}
	within := func(got, want float64) bool { return math.Abs(got-want) <= want/8 }
	if !within(busy.LatencyP50Millis, 2) {
		t.Errorf("p50=%v ms, want about 2", busy.LatencyP50Millis)
	}
	if !within(busy.LatencyP99Millis, 400) {
		t.Errorf("p99=%v ms, want about 400", busy.LatencyP99Millis)
	}
	if busy.ListenerLagMillis != 7 {
		t.Errorf("lag=%d ms, want 7", busy.ListenerLagMillis)
	}
	if idle.ReceivedPerSecond != 0 || !math.IsNaN(idle.LatencyP50Millis) || !math.IsNaN(idle.LatencyP99Millis) {
		t.Errorf("idle interval: %+v, want 0 events and no latency (NaN)", idle)
	}
}

func TestHistoryKeepsTheLast600(t *testing.T) {
	t.Parallel()
	var stats realtime.Stats
	h := NewHistory(&stats, fakeListener{})
	start := time.Unix(0, 0)
	h.lastTime = start
	for i := 1; i <= historyLen+5; i++ {
		h.sample(start.Add(time.Duration(i) * time.Second))
	}
	got := h.Samples()
	if len(got) != historyLen {
		t.Fatalf("Samples() holds %d, want %d", len(got), historyLen)
	}
	if first, last := got[0].Time.Unix(), got[len(got)-1].Time.Unix(); first != 6 || last != historyLen+5 {
		t.Errorf("samples run from %d s to %d s, want 6 s to %d s, oldest first", first, last, historyLen+5)
	}
}

func TestOptionalFloatJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   float64
		want string
	}{
		{math.NaN(), "null"},
		{0, "0"},
		{2.5, "2.5"},
		{1.23456, "1.235"},
	} {
		b, err := optionalFloat(tt.in).MarshalJSON()
		if err != nil || string(b) != tt.want {
			t.Errorf("optionalFloat(%v) = %s, %v; want %s", tt.in, b, err, tt.want)
		}
	}
}
