package main

import (
	"bytes"
	"math"
	"slices"
	"time"
)

// seqBits splits a row's key into the writer that wrote it (high bits) and
// that writer's sequence number (low bits), so a receiver can name the
// exact write it got without any shared state on the hot path.
const seqBits = 40

// keyColumn is the column of the benchmark table that carries the key.
const keyColumn = "bench_k"

// keyMarker is how the key appears in both pgpush's event frame (data is
// jsonb) and a relay's row_to_json payload.
var keyMarker = []byte(`"` + keyColumn + `":`)

func makeKey(writer, seq int) uint64 { return uint64(writer)<<seqBits | uint64(seq) }

func splitKey(k uint64) (writer, seq int) {
	return int(k >> seqBits), int(k & (1<<seqBits - 1))
}

// findKey returns the first "bench_k" number in a frame. It scans bytes
// rather than decoding JSON: at hundreds of thousands of frames a second
// on the same two cores as the server, the client must stay cheap.
func findKey(frame []byte) (uint64, bool) {
	i := bytes.Index(frame, keyMarker)
	if i < 0 {
		return 0, false
	}
	j := i + len(keyMarker)
	for j < len(frame) && frame[j] == ' ' {
		j++
	}
	var v uint64
	digits := 0
	for ; j < len(frame) && frame[j] >= '0' && frame[j] <= '9'; j++ {
		if digits == 19 { // would overflow uint64's safe range
			return 0, false
		}
		v = v*10 + uint64(frame[j]-'0')
		digits++
	}
	return v, digits > 0
}

// receipt is one frame that carried a key, with the time it was read.
type receipt struct {
	key uint64
	at  int64 // nanoseconds since the benchmark's epoch
}

// commitLog holds, per writer and per sequence number, the time COMMIT
// returned, in nanoseconds since the epoch.
type commitLog [][]int64

func (c commitLog) rows() int64 {
	var n int64
	for _, w := range c {
		n += int64(len(w))
	}
	return n
}

// matchResult is what the receivers got, compared with what was committed.
type matchResult struct {
	Expected   int64 // committed rows × subscribers
	Delivered  int64 // frames with a key some writer committed
	Unique     int64 // distinct (subscriber, row) pairs delivered
	Lost       int64 // Expected - Unique
	Duplicated int64 // Delivered - Unique
	Unknown    int64 // keys of writer slots nobody committed (should be 0)
	InWindow   int64 // deliveries read no later than windowEnd
	// Latencies are commit→client times in nanoseconds, one per unique
	// delivery, sorted.
	Latencies []int64
}

// match joins every subscriber's receipts with the commit log. Keys of
// writers beyond the log (the warm-up rows) are ignored.
func match(commits commitLog, subs [][]receipt, windowEnd int64) matchResult {
	var r matchResult
	rows := commits.rows()
	r.Expected = rows * int64(len(subs))
	// seen is reused across subscribers: set while scanning one, cleared
	// from its own receipts afterwards, so the cost stays O(receipts).
	seen := make([][]bool, len(commits))
	for w := range commits {
		seen[w] = make([]bool, len(commits[w]))
	}
	total := 0
	for _, s := range subs {
		total += len(s)
	}
	r.Latencies = make([]int64, 0, total)
	for _, recs := range subs {
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
			if seen[w][n] {
				r.Duplicated++
				continue
			}
			seen[w][n] = true
			r.Unique++
			r.Latencies = append(r.Latencies, rc.at-commits[w][n])
		}
		for _, rc := range recs {
			if w, n := splitKey(rc.key); w < len(commits) && n < len(commits[w]) {
				seen[w][n] = false
			}
		}
	}
	r.Lost = r.Expected - r.Unique
	slices.Sort(r.Latencies)
	return r
}

// percentile returns the nearest-rank percentile p (0 < p <= 100) of
// sorted values, or 0 when there are none.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms turns nanoseconds into milliseconds for reports.
func ms(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }

// backlogGrowing reports whether the undelivered backlog kept growing over
// a run: sampled once a second, its last quarter's mean is above twice the
// first quarter's mean and above a tenth of a second of deliveries.
func backlogGrowing(samples []int64, deliveriesPerSecond float64) bool {
	if len(samples) < 4 {
		return false
	}
	q := len(samples) / 4
	mean := func(s []int64) float64 {
		var sum float64
		for _, v := range s {
			sum += float64(v)
		}
		return sum / float64(len(s))
	}
	first, last := mean(samples[:q]), mean(samples[len(samples)-q:])
	return last > 2*first && last > deliveriesPerSecond/10
}
