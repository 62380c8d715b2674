package dbtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { Main(m) }

// waitTimeout bounds waits on the other parallel subtest.
const waitTimeout = 10 * time.Second

func TestNewIsolatesParallelTests(t *testing.T) {
	t.Parallel()
	// Each subtest creates its table, waits until the other has created
	// its own, then checks it cannot see it: with a shared database it
	// would.
	created := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	other := map[string]string{"a": "b", "b": "a"}
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			pool, url := NewPool(t)
			if !strings.Contains(url, "/t") || !strings.Contains(url, name) {
				t.Errorf("URL %q does not name the test", url)
			}
			if _, err := pool.Exec(ctx, "CREATE TABLE only_"+name+" (id int)"); err != nil {
				t.Fatalf("create table: %v", err)
			}
			close(created[name])
			select {
			case <-created[other[name]]:
			case <-ctx.Done():
				t.Fatalf("subtest %s did not create its table within %v (needs -parallel >= 2)", other[name], waitTimeout)
			}
			if got := regclass(t, ctx, pool, "only_"+name); got == nil {
				t.Errorf("to_regclass(only_%s) = NULL, want own table", name)
			}
			if got := regclass(t, ctx, pool, "only_"+other[name]); got != nil {
				t.Errorf("to_regclass(only_%s) = %q, want NULL: databases shared", other[name], *got)
			}
		})
	}
}

func TestNewIsMigrated(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	pool, _ := NewPool(t)
	if got := regclass(t, ctx, pool, "pgpush.events"); got == nil {
		t.Fatal("to_regclass(pgpush.events) = NULL, want the migrated table")
	}
}

func TestClusterSet(t *testing.T) {
	t.Parallel()
	New(t) // skips when there is no cluster
	if Cluster() == nil {
		t.Fatal("Cluster() = nil after New succeeded")
	}
}

func TestDBName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		n        int64
		testName string
		want     string
	}{
		{"plain", 1, "TestFoo", "t1_testfoo"},
		{"subtest", 12, "TestFoo/Bar baz-2", "t12_testfoo_bar_baz_2"},
		{"non-ascii", 3, "TestÜ", "t3_test_"},
		{"truncated", 7, "Test" + strings.Repeat("x", 100), "t7_test" + strings.Repeat("x", 63-len("t7_test"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := dbName(tt.n, tt.testName)
			if got != tt.want || len(got) > maxIdentifierBytes {
				t.Fatalf("dbName(%d, %q) = %q (%d bytes), want %q", tt.n, tt.testName, got, len(got), tt.want)
			}
		})
	}
}

func regclass(t *testing.T, ctx context.Context, pool *pgxpool.Pool, name string) *string {
	t.Helper()
	var got *string
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1)::text", name).Scan(&got); err != nil {
		t.Fatalf("to_regclass(%s): %v", name, err)
	}
	return got
}
