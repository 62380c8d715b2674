package triggers

import (
	"testing"

	"github.com/pgpush/pgpush/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }
