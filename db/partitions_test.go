package db_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
)

// TestLogSpan: a log partition spans a quarter of the retention, rounded
// down to a length that divides a day or is whole days (migration 00014).
func TestLogSpan(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	for _, c := range []struct{ retention, span string }{
		{"30 minutes", "01:00:00"},
		{"1 hour", "01:00:00"},
		{"4 hours", "01:00:00"},
		{"8 hours", "02:00:00"},
		{"23 hours", "04:00:00"},
		{"24 hours", "06:00:00"},
		{"48 hours", "12:00:00"},
		{"4 days", "1 day"},
		{"7 days", "1 day"},
		{"8 days", "2 days"},
		{"30 days", "7 days"},
		{"365 days", "7 days"},
	} {
		var span string
		if err := pool.QueryRow(ctx, `SELECT pgpush.log_span($1::interval)::text`, c.retention).Scan(&span); err != nil {
			t.Fatal(err)
		}
		if span != c.span {
			t.Errorf("log_span(%s) = %s, want %s", c.retention, span, c.span)
		}
	}
}

// TestLogPartitionsFollowRetention: with no partitions ahead, pruning
// makes partitions one span long that cover this hour and the coming two,
// whatever the retention, and a month of retention needs a handful of
// partitions, not 720. Running it again adds nothing.
func TestLogPartitionsFollowRetention(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	for _, c := range []struct {
		retention time.Duration
		suffix    string // of the partitions' names: their length
	}{
		{24 * time.Hour, "_6h"},
		{30 * 24 * time.Hour, "_168h"},
		{2 * time.Hour, ""},
	} {
		dropLogPartitions(t, ctx, pool)
		prune(t, ctx, pool, c.retention)
		before := logPartitions(t, ctx, pool)
		prune(t, ctx, pool, c.retention)
		after := logPartitions(t, ctx, pool)
		if len(after) != len(before) {
			t.Errorf("retention %v: a second prune went from %v to %v", c.retention, before, after)
		}
		if len(after) == 0 || len(after) > 3 {
			t.Errorf("retention %v: partitions %v, want one to three", c.retention, after)
		}
		for _, h := range []time.Duration{0, time.Hour, 2 * time.Hour} {
			part := partitionOf(t, ctx, pool, time.Now().Add(h))
			if part == "pgpush.events_default" || !strings.HasSuffix(part, c.suffix) ||
				(c.suffix == "" && strings.Contains(strings.TrimPrefix(part, "pgpush.events_"), "_")) {
				t.Errorf("retention %v: a row %v from now goes to %s, want a partition named *%s", c.retention, h, part, c.suffix)
			}
		}
	}
}

// TestLogPartitionsFillAroundOtherSpans: hourly partitions made before
// migration 00014 (or by an instance with a shorter retention) stay, and
// the hours of the coming two they leave uncovered get a partition each
// rather than going to the default partition.
func TestLogPartitionsFillAroundOtherSpans(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	dropLogPartitions(t, ctx, pool)
	this := time.Now().UTC().Truncate(time.Hour)
	exec(t, ctx, pool, `SELECT pgpush.add_log_partition($1, interval '1 hour')`, this.Add(time.Hour))
	prune(t, ctx, pool, 24*time.Hour)
	for _, h := range []time.Duration{0, time.Hour, 2 * time.Hour} {
		if part := partitionOf(t, ctx, pool, this.Add(h).Add(time.Minute)); part == "pgpush.events_default" {
			t.Errorf("a row of %v goes to the default partition; partitions %v", this.Add(h), logPartitions(t, ctx, pool))
		}
	}
	if part := partitionOf(t, ctx, pool, this.Add(time.Hour+time.Minute)); !strings.HasSuffix(part, this.Add(time.Hour).Format("20060102h15")) {
		t.Errorf("the hourly partition made first no longer takes its hour's rows (they go to %s)", part)
	}
}

func prune(t *testing.T, ctx context.Context, pool *pgxpool.Pool, retention time.Duration) {
	t.Helper()
	if _, err := db.PruneEvents(ctx, pool, retention, 100); err != nil {
		t.Fatalf("PruneEvents: %v", err)
	}
}

// dropLogPartitions drops every partition of the (empty) log but the
// default one, as if no instance had run for a while.
func dropLogPartitions(t *testing.T, ctx context.Context, pool *pgxpool.Pool) {
	t.Helper()
	for _, p := range logPartitions(t, ctx, pool) {
		exec(t, ctx, pool, `DROP TABLE `+p)
	}
}

func logPartitions(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT rel::text FROM pgpush.log_partitions() ORDER BY lower`)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return parts
}

// partitionOf is where an event created at would be stored.
func partitionOf(t *testing.T, ctx context.Context, pool *pgxpool.Pool, at time.Time) string {
	t.Helper()
	tx := begin(t, ctx, pool)
	defer tx.Rollback(ctx)
	var part string
	if err := tx.QueryRow(ctx, `
		INSERT INTO pgpush.events (channel, event, data, created_at) VALUES ('probe', 'e', '{}', $1)
		RETURNING tableoid::regclass::text`, at).Scan(&part); err != nil {
		t.Fatal(err)
	}
	return part
}
