package main

import (
	"math"
	"slices"
	"testing"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(i + 1)
	}
	tests := []struct {
		name   string
		sorted []int64
		p      float64
		want   int64
	}{
		{"empty", nil, 50, 0},
		{"one value", []int64{7}, 99, 7},
		{"p50 of 1..100", hundred, 50, 50},
		{"p90 of 1..100", hundred, 90, 90},
		{"p99 of 1..100", hundred, 99, 99},
		{"max", hundred, 100, 100},
		{"nearest rank rounds up", []int64{1, 2, 3}, 50, 2},
		{"tiny p is the minimum", []int64{4, 5, 6}, 0.001, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Fatalf("percentile(%v, %g)=%d, want %d", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestFindKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		frame string
		want  uint64
		ok    bool
	}{
		{"pgpush event", `{"id":"12","channel":"order_changes","event":"order:created","data":{"id": 5, "bench_k": 1099511627777, "status": "paid"},"timestamp":"2026-01-01T00:00:00.000Z"}`, 1099511627777, true},
		{"relay row_to_json", `{"id":5,"bench_k":42,"status":"paid"}`, 42, true},
		{"first occurrence wins", `{"data":{"bench_k": 3, "changed_fields": {"bench_k": 3}}}`, 3, true},
		{"control frame", `{"type":"subscribed","channel":"order_changes"}`, 0, false},
		{"negative seed value", `{"bench_k": -1}`, 0, false},
		{"overflow", `{"bench_k": 99999999999999999999}`, 0, false},
		{"truncated", `{"bench_k":`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := findKey([]byte(tt.frame))
			if got != tt.want || ok != tt.ok {
				t.Fatalf("findKey(%s)=%d,%v, want %d,%v", tt.frame, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range [][2]int{{0, 0}, {3, 12345}, {warmWriter, 7}, {1, 1<<seqBits - 1}} {
		w, n := splitKey(makeKey(c[0], c[1]))
		if w != c[0] || n != c[1] {
			t.Fatalf("splitKey(makeKey(%d, %d))=%d, %d", c[0], c[1], w, n)
		}
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	// Two writers: writer 0 committed rows 0 and 1, writer 1 row 0.
	commits := commitLog{{100, 200}, {150}}
	k := makeKey
	subs := [][]receipt{
		// Everything once, plus a warm-up row that must be ignored.
		{{k(0, 0), 110}, {k(1, 0), 170}, {k(0, 1), 230}, {k(warmWriter, 0), 50}},
		// Row (0,0) twice, row (1,0) lost, (0,1) after the window.
		{{k(0, 0), 120}, {k(0, 0), 125}, {k(0, 1), 900}},
		// A key no writer committed.
		{{k(1, 5), 300}},
	}
	got := match(commits, subs, 500)
	want := matchResult{
		Expected:   9,
		Delivered:  6,
		Unique:     5,
		Lost:       4,
		Duplicated: 1,
		Unknown:    1,
		InWindow:   5,
		Latencies:  []int64{10, 20, 20, 30, 700},
	}
	if got.Expected != want.Expected || got.Delivered != want.Delivered || got.Unique != want.Unique ||
		got.Lost != want.Lost || got.Duplicated != want.Duplicated || got.Unknown != want.Unknown || got.InWindow != want.InWindow {
		t.Fatalf("match()=%+v, want %+v", got, want)
	}
	if !slices.Equal(got.Latencies, want.Latencies) {
		t.Fatalf("match() latencies=%v, want %v", got.Latencies, want.Latencies)
	}
}

func TestBacklogGrowing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		samples []int64
		perSec  float64
		want    bool
	}{
		{"too short to tell", []int64{0, 1000, 5000}, 100, false},
		{"steady small backlog", []int64{3, 5, 2, 4, 3, 6, 2, 4}, 1000, false},
		{"growing", []int64{100, 200, 400, 800, 1600, 3200, 6400, 12800}, 1000, true},
		{"growing but below a tenth of a second", []int64{1, 2, 4, 8, 16, 32, 64, 80}, 1000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := backlogGrowing(tt.samples, tt.perSec); got != tt.want {
				t.Fatalf("backlogGrowing(%v, %g)=%v, want %v", tt.samples, tt.perSec, got, tt.want)
			}
		})
	}
}

func TestSplitStat(t *testing.T) {
	t.Parallel()
	line := []byte("4242 (post gres) (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0")
	pid, comm, fields, ok := splitStat(line)
	if !ok || pid != "4242" || comm != "post gres) (x)" || fields[11] != "250" || fields[12] != "50" {
		t.Fatalf("splitStat()=%q, %q, %q, %v", pid, comm, fields, ok)
	}
}

func TestQuantileBound(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	before := latencyHistogram{le: []float64{0.001, 0.01, inf}, count: []float64{10, 10, 10}}
	after := latencyHistogram{le: []float64{0.001, 0.01, inf}, count: []float64{60, 108, 110}}
	for _, tt := range []struct{ q, want float64 }{{0.5, 0.001}, {0.9, 0.01}, {0.99, inf}} {
		if got := after.quantileBound(before, tt.q); got != tt.want {
			t.Errorf("quantileBound(%g) = %g, want %g", tt.q, got, tt.want)
		}
	}
	if got := after.quantileBound(latencyHistogram{}, 0.5); got != 0 {
		t.Errorf("without a before histogram: %g, want 0", got)
	}
}
