package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// bulkTimeout bounds the bulk scenario's wait for the last event.
const bulkTimeout = 15 * time.Minute

// bulk is issue 15's bulk write: one transaction updates --bulk-rows rows
// of a watched table, and one subscriber must get every row's event once,
// in the order of the update, while the server's memory stays bounded.
func bulk(ctx context.Context, b *bench) error {
	n := b.opts.BulkRows
	r := &result{runSpec: b.spec("bulk", kindPgpush, func(s *runSpec) {
		s.Instances, s.Writers, s.Subscribers, s.Mode, s.Rate, s.Duration = 1, 1, 1, "update", 0, 0
	})}
	err := b.measureBulk(ctx, r, n)
	if err != nil {
		r.Error = err.Error()
	}
	b.results = append(b.results, r)
	fmt.Fprintln(b.out, r.bulkLine(n))
	return err
}

func (b *bench) measureBulk(ctx context.Context, r *result, n int) error {
	if err := b.prepareTable(ctx, kindNone, "insert", 1); err != nil {
		return err
	}
	if err := b.exec(ctx, `INSERT INTO `+benchTable+` (bench_k, status, total, customer_id, payload)
		SELECT -1, 'paid', 99.99, g, repeat('x', $2) FROM generate_series(1, $1) g`, n, b.opts.Payload); err != nil {
		return err
	}
	if err := b.exec(ctx, `VACUUM ANALYZE `+benchTable); err != nil {
		return err
	}
	if err := b.pgpush(ctx, nil, "watch", benchTable, "--entity", "order", "--channel", "order_changes"); err != nil {
		return err
	}
	b.watched = true
	if err := b.startServers(ctx, 1); err != nil {
		return err
	}
	defer b.stopServers()
	server := b.servers[0]
	sub, err := dial(ctx, b.pgpushTargets()[0])
	if err != nil {
		return err
	}
	defer sub.conn.Close()

	// The reader checks as it goes: each row once, event ids rising.
	var got, dup, outOfOrder atomic.Int64
	var last atomic.Int64 // unix nanoseconds of the newest event received
	seen := make([]bool, n+1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer sub.done.Store(true)
		var prevID int64
		var ev struct {
			ID   string `json:"id"`
			Data struct {
				ID int64 `json:"id"`
			} `json:"data"`
		}
		for {
			_, msg, err := sub.conn.ReadMessage()
			if err != nil {
				sub.closeErr = err
				return
			}
			if json.Unmarshal(msg, &ev) != nil || ev.ID == "" {
				continue
			}
			id, _ := strconv.ParseInt(ev.ID, 10, 64)
			if id <= prevID {
				outOfOrder.Add(1)
			}
			prevID = id
			if ev.Data.ID < 1 || ev.Data.ID > int64(n) {
				continue
			}
			if seen[ev.Data.ID] {
				dup.Add(1)
			}
			seen[ev.Data.ID] = true
			last.Store(time.Now().UnixNano())
			got.Add(1)
		}
	}()

	before, _ := readUsage(server.pid())
	var peak atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() {
		for sleepCtx(sampleCtx, 100*time.Millisecond) {
			if u, err := readUsage(server.pid()); err == nil && u.RSSBytes > peak.Load() {
				peak.Store(u.RSSBytes)
			}
		}
	})
	defer func() { stopSampling(); sampling.Wait() }()

	conn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return fmt.Errorf("connect writer: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	start := time.Now()
	if _, err := conn.Exec(ctx, `UPDATE `+benchTable+` SET status = 'bulk', bench_k = id`); err != nil {
		return fmt.Errorf("bulk update: %w", err)
	}
	committed := time.Now()
	// With --server-profile, the server's CPU while it delivers.
	profiled := b.profileCPU(ctx, runSpec{Scenario: "bulk", Kind: kindPgpush, Duration: 10}, b.servers)
	r.RowsCommitted = int64(n)
	r.CommittedPerSec = float64(n) / committed.Sub(start).Seconds()
	waitFor(ctx, bulkTimeout, func() bool { return got.Load() >= int64(n) || sub.done.Load() })
	r.Profiles = profiled()
	closedEarly := sub.done.Load()
	sub.conn.Close()
	<-readDone
	stopSampling()
	sampling.Wait()

	r.Expected, r.Delivered = int64(n), got.Load()
	r.Lost = max(0, int64(n)-got.Load()+dup.Load())
	r.Duplicated = dup.Load()
	if t := last.Load(); t > 0 {
		r.DrainSeconds = time.Unix(0, t).Sub(committed).Seconds()
		r.DeliveredPerSec = float64(got.Load()) / time.Unix(0, t).Sub(committed).Seconds()
	}
	after, _ := readUsage(server.pid())
	r.ServerRSS = []int64{after.RSSBytes}
	r.ServerPeakRSS = []int64{max(peak.Load(), before.RSSBytes)}
	r.ServerCPUSecs = []float64{after.CPUSecs - before.CPUSecs}
	r.Unknown = outOfOrder.Load() // events whose id did not rise
	switch {
	case got.Load() < int64(n) && closedEarly:
		return fmt.Errorf("socket closed after %d of %d events: %s", got.Load(), n, closeReason(sub.closeErr))
	case got.Load() < int64(n):
		return fmt.Errorf("%d of %d events after %v", got.Load(), n, bulkTimeout)
	case outOfOrder.Load() > 0 || dup.Load() > 0:
		return fmt.Errorf("%d events out of order, %d duplicated", outOfOrder.Load(), dup.Load())
	}
	return nil
}

func (r *result) bulkLine(n int) string {
	line := fmt.Sprintf("[bulk] one UPDATE of %d rows: committed in %.1fs; %d delivered (%d lost, %d duplicated, %d out of order) in %.1fs after the commit (%.0f events/s); server RSS peak %.1f MiB (%.1f MiB after), CPU %.1fs",
		n, float64(n)/max(r.CommittedPerSec, 1), r.Delivered, r.Lost, r.Duplicated, r.Unknown, r.DrainSeconds, r.DeliveredPerSec,
		mib(first(r.ServerPeakRSS)), mib(first(r.ServerRSS)), first(r.ServerCPUSecs))
	if r.Error != "" {
		line += " ERROR: " + r.Error
	}
	return line
}
