package db_test

import (
	"context"
	"fmt"
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
		{"4 days", "24:00:00"},
		{"7 days", "24:00:00"},
		{"8 days", "48:00:00"},
		{"30 days", "168:00:00"},
		{"365 days", "168:00:00"},
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
// makes partitions one span long, aligned on midnight UTC, that cover
// this hour and the coming two, whatever the retention and the session's
// time zone and DateStyle: a month of retention needs a handful of
// partitions, not 720. Running it again adds nothing.
func TestLogPartitionsFollowRetention(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	for _, c := range []struct {
		retention time.Duration
		span      time.Duration
		settings  string
	}{
		{24 * time.Hour, 6 * time.Hour, ""},
		{30 * 24 * time.Hour, 168 * time.Hour, ""},
		{2 * time.Hour, time.Hour, ""},
		// IST is printed with DateStyle SQL, and read back as Israel's.
		{24 * time.Hour, 6 * time.Hour, "SET TimeZone = 'Asia/Kolkata'; SET DateStyle = 'SQL, DMY'"},
		{8 * 24 * time.Hour, 48 * time.Hour, "SET TimeZone = 'America/New_York'"},
	} {
		withinOneHour(t, func(this time.Time, errorf func(string, ...any)) {
			dropLogPartitions(t, ctx, pool)
			conn, closeConn := session(t, ctx, pool, c.settings)
			prune(t, ctx, conn, c.retention)
			before := logPartitions(t, ctx, pool)
			prune(t, ctx, conn, c.retention)
			if got, want := logBounds(t, ctx, conn), logBounds(t, ctx, pool); got != want {
				errorf("%s: log_partitions reads bounds %s, want %s", c.settings, got, want)
			}
			closeConn()
			after := logPartitions(t, ctx, pool)
			if len(after) != len(before) {
				errorf("retention %v: a second prune went from %v to %v", c.retention, before, after)
			}
			if len(after) == 0 || len(after) > 3 {
				errorf("retention %v: partitions %v, want one to three", c.retention, after)
			}
			for _, at := range []time.Time{this, this.Add(3*time.Hour - time.Second)} {
				from, to := boundsOf(t, ctx, pool, at)
				if want := spanStart(at, c.span); !from.Equal(want) || to.Sub(from) != c.span {
					errorf("retention %v (%s): a row of %v goes to [%v, %v), want [%v, %v)",
						c.retention, c.settings, at, from, to, want, want.Add(c.span))
				}
			}
		})
	}
}

// TestLogPartitionsFillAroundOtherSpans: partitions of other lengths, as
// made before migration 00014 (hourly, or on the half hour in a time zone
// such as India's) or by an instance with a shorter retention, stay, and
// what they leave uncovered of the coming three hours gets partitions of
// its own rather than going to the default partition.
func TestLogPartitionsFillAroundOtherSpans(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	withinOneHour(t, func(this time.Time, errorf func(string, ...any)) {
		dropLogPartitions(t, ctx, pool)
		addPartition(t, ctx, pool, this.Add(time.Hour), this.Add(2*time.Hour))
		addPartition(t, ctx, pool, this.Add(150*time.Minute), this.Add(210*time.Minute))
		prune(t, ctx, pool, 24*time.Hour)
		for _, m := range []time.Duration{0, 59, 60, 119, 120, 149, 150, 179} {
			if from, _ := boundsOf(t, ctx, pool, this.Add(m*time.Minute)); from.IsZero() {
				errorf("a row of %v goes to the default partition; partitions %v", this.Add(m*time.Minute), logPartitions(t, ctx, pool))
			}
		}
		if from, to := boundsOf(t, ctx, pool, this.Add(90*time.Minute)); !from.Equal(this.Add(time.Hour)) || !to.Equal(this.Add(2*time.Hour)) {
			errorf("the partition made first no longer takes its rows (they go to [%v, %v))", from, to)
		}
	})
	// A partition made by hand with the name an hour's partition would
	// get does not stand in for it.
	withinOneHour(t, func(this time.Time, errorf func(string, ...any)) {
		dropLogPartitions(t, ctx, pool)
		name := "events_" + this.Add(2*time.Hour).Format("20060102h15")
		exec(t, ctx, pool, fmt.Sprintf(`CREATE TABLE pgpush.%s PARTITION OF pgpush.events FOR VALUES FROM ('%s') TO ('%s')`,
			name, this.Add(5*time.Hour).Format(time.RFC3339), this.Add(6*time.Hour).Format(time.RFC3339)))
		prune(t, ctx, pool, 2*time.Hour)
		if from, _ := boundsOf(t, ctx, pool, this.Add(2*time.Hour+time.Minute)); !from.Equal(this.Add(2 * time.Hour)) {
			errorf("with %s taken, a row of %v goes to a partition from %v; partitions %v", name, this.Add(2*time.Hour), from, logPartitions(t, ctx, pool))
		}
	})
	// After an upgrade from hourly partitions, the rest of the span is one
	// partition, not an hourly one at a time.
	withinOneHour(t, func(this time.Time, errorf func(string, ...any)) {
		dropLogPartitions(t, ctx, pool)
		addPartition(t, ctx, pool, this, this.Add(time.Hour))
		addPartition(t, ctx, pool, this.Add(time.Hour), this.Add(2*time.Hour))
		prune(t, ctx, pool, 30*24*time.Hour)
		at := this.Add(2*time.Hour + time.Minute)
		if _, to := boundsOf(t, ctx, pool, at); !to.Equal(spanStart(at, 168*time.Hour).Add(168 * time.Hour)) {
			errorf("after hourly partitions, a row of %v goes to a partition ending %v, want the end of its span; partitions %v",
				at, to, logPartitions(t, ctx, pool))
		}
	})
}

// TestLogPartitionsBesideDefaultRows: rows written while no partition
// covered their time wait in the default partition, which keeps a
// partition from being made over them; the rest of their span still gets
// one partition.
func TestLogPartitionsBesideDefaultRows(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	withinOneHour(t, func(this time.Time, errorf func(string, ...any)) {
		dropLogPartitions(t, ctx, pool)
		exec(t, ctx, pool, `DELETE FROM pgpush.events_default`)
		exec(t, ctx, pool, `INSERT INTO pgpush.events (channel, event, data, created_at) VALUES ('c', 'e', '{}', $1)`, this)
		prune(t, ctx, pool, 30*24*time.Hour)
		if from, _ := boundsOf(t, ctx, pool, this); !from.IsZero() {
			errorf("a row of this hour goes to a partition from %v, want the default one where its hour's rows are", from)
		}
		for _, at := range []time.Time{this.Add(time.Hour), this.Add(3*time.Hour - time.Second)} {
			from, to := boundsOf(t, ctx, pool, at)
			if from.IsZero() {
				errorf("a row of %v goes to the default partition; partitions %v", at, logPartitions(t, ctx, pool))
			} else if want := spanStart(at, 168*time.Hour).Add(168 * time.Hour); !to.Equal(want) {
				errorf("a row of %v goes to a partition ending %v, want one to the end of its span, %v", at, to, want)
			}
		}
	})
}

// spanStart is the start of the span that holds at: spans are aligned on
// 2000-01-01 00:00 UTC.
func spanStart(at time.Time, span time.Duration) time.Time {
	origin := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	return origin.Add(at.Sub(origin).Truncate(span))
}

// withinOneHour runs f with the start of the current hour (UTC), and
// again if the hour turned meanwhile: pruning makes partitions for the
// hour it runs in, so only a run within one hour counts. f reports what
// is wrong through errorf; only the counted run's reports fail the test.
func withinOneHour(t *testing.T, f func(this time.Time, errorf func(format string, args ...any))) {
	t.Helper()
	for {
		this := time.Now().UTC().Truncate(time.Hour)
		var errs []string
		f(this, func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) })
		if time.Now().UTC().Truncate(time.Hour).Equal(this) {
			for _, e := range errs {
				t.Error(e)
			}
			return
		}
	}
}

// session is a connection of its own with the given settings, and the
// function that closes it (it does not go back to the pool with them).
func session(t *testing.T, ctx context.Context, pool *pgxpool.Pool, settings string) (*pgx.Conn, func()) {
	t.Helper()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn := c.Hijack()
	if settings != "" {
		exec(t, ctx, conn, settings)
	}
	return conn, func() { conn.Close(context.Background()) }
}

func prune(t *testing.T, ctx context.Context, q db.Querier, retention time.Duration) {
	t.Helper()
	if _, err := db.PruneEvents(ctx, q, retention, 100); err != nil {
		t.Fatalf("PruneEvents: %v", err)
	}
}

func addPartition(t *testing.T, ctx context.Context, pool *pgxpool.Pool, from, to time.Time) {
	t.Helper()
	var made *bool
	if err := pool.QueryRow(ctx, `SELECT pgpush.add_log_partition($1, $2)`, from, to).Scan(&made); err != nil || made == nil || !*made {
		t.Fatalf("add_log_partition(%v, %v) = %v, %v", from, to, made, err)
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

// logBounds is every partition's bounds, as log_partitions reads them.
func logBounds(t *testing.T, ctx context.Context, q db.Querier) string {
	t.Helper()
	var bounds string
	if err := q.QueryRow(ctx, `
		SELECT coalesce(string_agg(extract(epoch FROM lower) || '-' || extract(epoch FROM upper), ' ' ORDER BY lower), '')
		FROM pgpush.log_partitions()`).Scan(&bounds); err != nil {
		t.Fatal(err)
	}
	return bounds
}

// boundsOf is the partition where an event created at would be stored;
// zero times for the default partition.
func boundsOf(t *testing.T, ctx context.Context, pool *pgxpool.Pool, at time.Time) (from, to time.Time) {
	t.Helper()
	tx := begin(t, ctx, pool)
	defer tx.Rollback(ctx)
	var part string
	if err := tx.QueryRow(ctx, `
		INSERT INTO pgpush.events (channel, event, data, created_at) VALUES ('probe', 'e', '{}', $1)
		RETURNING tableoid::regclass::text`, at).Scan(&part); err != nil {
		t.Fatal(err)
	}
	if part == "pgpush.events_default" {
		return time.Time{}, time.Time{}
	}
	if err := tx.QueryRow(ctx, `SELECT lower, upper FROM pgpush.log_partitions() WHERE rel = $1::regclass`, part).Scan(&from, &to); err != nil {
		t.Fatalf("bounds of %s: %v", part, err)
	}
	if !strings.HasPrefix(part, "pgpush.events_") {
		t.Fatalf("a row goes to %s", part)
	}
	return from.UTC(), to.UTC()
}
