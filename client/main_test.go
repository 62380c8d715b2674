package client_test

import (
	"testing"

	"github.com/pgpush/pgpush/db/dbtest"
)

// TestMain starts the package's throwaway PostgreSQL and fails the run on
// leaked goroutines (dbtest.Main runs goleak after the tests pass).
func TestMain(m *testing.M) { dbtest.Main(m) }
