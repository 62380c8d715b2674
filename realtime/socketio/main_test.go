package socketio

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package on leaked goroutines: every session, pump and
// OnConnect call must end with its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
