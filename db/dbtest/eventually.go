package dbtest

import (
	"testing"
	"time"
)

// pollEvery is how often Eventually looks again: often enough that a test
// waits little past the moment cond holds, rarely enough to cost nothing.
const pollEvery = 5 * time.Millisecond

// Eventually polls cond until it holds, failing tb after timeout. It is for
// state a test can only observe, not wait on (a counter, a server's view
// of its sockets); where there is a channel or a signal, wait on that.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(pollEvery)
	}
}
