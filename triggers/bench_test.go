package triggers

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgpush/pgpush/db/dbtest"
)

// benchInsert measures single-row INSERTs, each its own transaction, through
// one connection: the cost a watched table adds to an application's writes
// (capture, emit, the deferred commit sequencing and its NOTIFY).
func benchInsert(b *testing.B, watch bool) {
	pool, url := dbtest.NewPool(b)
	ctx := b.Context()
	if _, err := pool.Exec(ctx, ordersDDL); err != nil {
		b.Fatalf("create orders: %v", err)
	}
	if watch {
		if _, err := Watch(ctx, pool, Config{Table: "orders", Exclude: []string{"card_token"}}); err != nil {
			b.Fatalf("Watch: %v", err)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())

	const insert = `INSERT INTO orders (status, total, customer_id, card_token) VALUES ('new', 99.99, 45, 'tok')`
	rows := 0
	for b.Loop() {
		if _, err := conn.Exec(ctx, insert); err != nil {
			b.Fatalf("insert: %v", err)
		}
		rows++
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkInsertWatched(b *testing.B)   { benchInsert(b, true) }
func BenchmarkInsertUnwatched(b *testing.B) { benchInsert(b, false) }
