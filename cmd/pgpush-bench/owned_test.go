package main

import (
	"slices"
	"testing"
)

func TestMatchOwned(t *testing.T) {
	t.Parallel()
	// Two writers: writer 0 committed rows 0 and 1, writer 1 row 0.
	commits := commitLog{{100, 200}, {150}}
	k := makeKey
	owners := map[uint64]int{k(0, 0): 0, k(0, 1): 1, k(1, 0): 1}
	owner := func(key uint64) int { return owners[key] }
	subs := [][]receipt{
		// Its row once, twice more, and a warm-up row that must be ignored.
		{{k(0, 0), 110}, {k(0, 0), 115}, {k(0, 0), 116}, {k(warmWriter, 0), 50}},
		// Its row (0,1) after the window, (1,0) lost, and subscriber 0's row.
		{{k(0, 1), 900}, {k(0, 0), 120}},
		// A key no writer committed.
		{{k(1, 5), 300}},
	}
	got := matchOwned(commits, subs, owner, 500)
	want := ownedMatchResult{
		Expected:     3,
		Delivered:    5,
		Unique:       2,
		Lost:         1,
		Duplicated:   2,
		Misdelivered: 1,
		Unknown:      1,
		InWindow:     4,
		Latencies:    []int64{10, 700},
	}
	if got.Expected != want.Expected || got.Delivered != want.Delivered || got.Unique != want.Unique || got.Lost != want.Lost ||
		got.Duplicated != want.Duplicated || got.Misdelivered != want.Misdelivered || got.Unknown != want.Unknown || got.InWindow != want.InWindow {
		t.Fatalf("matchOwned()=%+v, want %+v", got, want)
	}
	if !slices.Equal(got.Latencies, want.Latencies) {
		t.Fatalf("matchOwned() latencies=%v, want %v", got.Latencies, want.Latencies)
	}
}

// TestCustomerOf checks that rows spread over every customer, none outside
// 1..n, roughly evenly: a skew would make some sockets idle and others busy.
func TestCustomerOf(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 100, 10000} {
		counts := make([]int, n+1)
		rows := 50 * n
		for w := range 4 {
			for seq := range rows / 4 {
				c := customerOf(makeKey(w, seq), n)
				if c < 1 || c > int64(n) {
					t.Fatalf("customerOf(makeKey(%d, %d), %d)=%d, want 1..%d", w, seq, n, c, n)
				}
				counts[c]++
			}
		}
		lo, hi := slices.Min(counts[1:]), slices.Max(counts[1:])
		if n > 1 && (lo < 20 || hi > 90) { // mean 50
			t.Fatalf("customerOf over %d customers: %d to %d rows each, want 20..90", n, lo, hi)
		}
	}
}

func TestOwnedTargets(t *testing.T) {
	t.Parallel()
	ts := ownedTargets("127.0.0.1:1", ownedFilter, nil, 3)
	if got, want := string(ts[2].Subscribe), `{"type":"subscribe","channel":"order_changes","filter":{"customer_id":3}}`; got != want {
		t.Fatalf("filter target 2 subscribes with %s, want %s", got, want)
	}
	if ts[0].Header != nil {
		t.Fatalf("filter targets are anonymous, got header %v", ts[0].Header)
	}
}

func TestIssue14Scenarios(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"match-10k", "filter-10k", "fanout-5k"} {
		if scenarios[name] == nil || !slices.Contains(scenarioNames(), name) {
			t.Fatalf("scenario %s is not registered", name)
		}
	}
}
