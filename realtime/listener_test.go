package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/dbtest"
	"github.com/pgpush/pgpush/triggers"
)

// waitTimeout bounds every wait for something that must happen; generous
// because fault tests restart PostgreSQL.
const waitTimeout = 60 * time.Second

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// collector gathers dispatched events and lets a test wait for a count.
type collector struct {
	mu      sync.Mutex
	events  []*Event
	changed chan struct{}
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

func (c *collector) dispatch(evs []*Event) {
	c.mu.Lock()
	c.events = append(c.events, evs...)
	c.mu.Unlock()
	signal(c.changed)
}

func (c *collector) snapshot() []*Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Event(nil), c.events...)
}

// waitFor blocks until cond holds over the events so far.
func (c *collector) waitFor(t *testing.T, what string, cond func([]*Event) bool) []*Event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		evs := c.snapshot()
		if cond(evs) {
			return evs
		}
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s (have %d events)", what, len(evs))
		}
	}
}

type listenerBundle struct {
	pool      *pgxpool.Pool
	listener  *Listener
	collected *collector
	start     Position // what StartFunc received
	stop      func()   // cancels Run and waits for it; also run at cleanup
}

// init makes the signal record what production code signals.
func (s *testSignal[T]) init() { s.ch = make(chan T, 1000) }

// waitOrTimeout returns the next signalled value.
func (s *testSignal[T]) waitOrTimeout(t *testing.T) T {
	t.Helper()
	select {
	case v := <-s.ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for a test signal")
		panic("unreachable")
	}
}

// startListener watches a fresh "items" table and runs a Listener on it.
// adjust, if not nil, changes the Listener before it starts.
func startListener(t *testing.T, adjust func(*Listener)) *listenerBundle {
	t.Helper()
	pool, _ := dbtest.NewPool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE items (id bigserial PRIMARY KEY, writer int NOT NULL, n int NOT NULL, state text NOT NULL DEFAULT 'new', UNIQUE (writer, n))`); err != nil {
		t.Fatal(err)
	}
	if _, err := triggers.Watch(ctx, pool, triggers.Config{Table: "items"}); err != nil {
		t.Fatal(err)
	}
	return startListenerOn(t, pool, adjust)
}

// startListenerOn runs a Listener on an existing database, as one more
// instance would, and waits until it has caught up.
func startListenerOn(t *testing.T, pool *pgxpool.Pool, adjust func(*Listener)) *listenerBundle {
	t.Helper()
	b := &listenerBundle{pool: pool, collected: newCollector()}
	b.listener = &Listener{
		ConnConfig:   pool.Config().ConnConfig.Copy(),
		StartFunc:    func(p Position) { b.start = p },
		DispatchFunc: b.collected.dispatch,
		Logger:       discard(),
		IdleCheck:    time.Second,
		MaxBackoff:   500 * time.Millisecond,
	}
	b.listener.testSignals.caughtUp.init()
	b.listener.testSignals.connError.init()
	if adjust != nil {
		adjust(b.listener)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.listener.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.listener.Run(ctx)
	}()
	var once sync.Once
	b.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(b.stop)
	b.listener.testSignals.caughtUp.waitOrTimeout(t)
	return b
}

// killListenerBackend terminates the listener's server process, as an
// operator's pg_terminate_backend or a proxy dropping the connection would.
// killListenerBackend terminates the listener's backend. A listener still
// reconnecting from an earlier kill has none yet: it polls until there is
// one, within waitTimeout.
func killListenerBackend(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var n int
		err := pool.QueryRow(context.Background(), `
			SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()`, db.ListenerApplicationName).Scan(&n)
		switch {
		case err != nil || n > 1:
			t.Fatalf("terminate listener backend: %d terminated, err %v", n, err)
		case n == 1:
			return
		case time.Now().After(deadline):
			t.Fatal("terminate listener backend: no listener connected")
		}
		time.Sleep(10 * time.Millisecond) // polling for the reconnect, not synchronising on a guess
	}
}

type itemKey struct{ writer, n int }

type itemData struct {
	Writer int    `json:"writer"`
	N      int    `json:"n"`
	State  string `json:"state"`
}

func decodeItem(t *testing.T, ev *Event) itemData {
	t.Helper()
	var d itemData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatalf("event data %s: %v", ev.Data, err)
	}
	return d
}

// writeItems inserts then updates rows (writer, 0..count-1), one
// transaction each, retrying through connection loss. ON CONFLICT makes a
// retry of a commit whose answer was lost harmless (and silent).
func writeItems(ctx context.Context, pool *pgxpool.Pool, writer, count int, progress func()) error {
	retry := func(sql string, args ...any) error {
		for {
			_, err := pool.Exec(ctx, sql, args...)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond) // the database is restarting: back off, not a synchronisation
		}
	}
	for n := range count {
		if err := retry(`INSERT INTO items (writer, n) VALUES ($1, $2) ON CONFLICT DO NOTHING`, writer, n); err != nil {
			return err
		}
		if err := retry(`UPDATE items SET state = 'done' WHERE writer = $1 AND n = $2 AND state <> 'done'`, writer, n); err != nil {
			return err
		}
		progress()
	}
	return nil
}

// checkStream asserts every (writer, n) arrived as exactly one created and
// one updated, in that order, and nothing else.
func checkStream(t *testing.T, evs []*Event, writers, perWriter int) {
	t.Helper()
	type seen struct{ created, updated int }
	got := map[itemKey]*seen{}
	var last Position
	for i, ev := range evs {
		if i > 0 && !ev.Pos.After(last) {
			t.Fatalf("event %d at %v does not come after %v", i, ev.Pos, last)
		}
		last = ev.Pos
		d := decodeItem(t, ev)
		k := itemKey{d.Writer, d.N}
		s := got[k]
		if s == nil {
			s = &seen{}
			got[k] = s
		}
		switch ev.Name {
		case "item:created":
			s.created++
		case "item:updated":
			if s.created == 0 {
				t.Fatalf("%v updated before created", k)
			}
			s.updated++
		default:
			t.Fatalf("unexpected event %s", ev.Name)
		}
	}
	lost, dup := 0, 0
	for w := range writers {
		for n := range perWriter {
			s := got[itemKey{w, n}]
			switch {
			case s == nil:
				lost += 2
			default:
				lost += max(0, 1-s.created) + max(0, 1-s.updated)
				dup += max(0, s.created-1) + max(0, s.updated-1)
			}
		}
	}
	if lost != 0 || dup != 0 || len(got) != writers*perWriter {
		t.Fatalf("lost %d, duplicated %d, rows %d; want 0, 0, %d", lost, dup, len(got), writers*perWriter)
	}
}

// TestListenerSurvivesBackendKill: the listener's backend is terminated
// twice mid-stream; every committed change still arrives once, in order.
func TestListenerSurvivesBackendKill(t *testing.T) {
	t.Parallel()
	b := startListener(t, nil)
	const writers, perWriter = 4, 250
	ctx := context.Background()
	var written sync.WaitGroup
	var mu sync.Mutex
	done := 0
	milestones := make(chan int, 1000)
	for w := range writers {
		written.Go(func() {
			if err := writeItems(ctx, b.pool, w, perWriter, func() {
				mu.Lock()
				done++
				milestones <- done
				mu.Unlock()
			}); err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		})
	}
	killAt := []int{250, 600}
	for d := range milestones {
		if len(killAt) > 0 && d >= killAt[0] {
			killListenerBackend(t, b.pool)
			// Back before the next kill, or there is nothing to kill.
			b.listener.testSignals.caughtUp.waitOrTimeout(t)
			killAt = killAt[1:]
		}
		if d == writers*perWriter {
			break
		}
	}
	written.Wait()
	evs := b.collected.waitFor(t, "all events", func(evs []*Event) bool { return len(evs) >= 2*writers*perWriter })
	checkStream(t, evs, writers, perWriter)
	if got := b.listener.Reconnects(); got < 2 {
		t.Fatalf("Reconnects() = %d, want >= 2", got)
	}
}

// TestOutOfOrderCommitAcrossReconnect is the outbox hazard: T1 writes first
// (lower event id) but commits last, while the listener is disconnected.
// Paging by event id would skip T1 forever; commit sequence does not.
func TestOutOfOrderCommitAcrossReconnect(t *testing.T) {
	t.Parallel()
	b := startListener(t, nil)
	ctx := context.Background()
	t1, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Rollback(ctx)
	if _, err := t1.Exec(ctx, `INSERT INTO items (writer, n) VALUES (1, 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO items (writer, n) VALUES (2, 2)`); err != nil { // T2 commits first
		t.Fatal(err)
	}
	first := b.collected.waitFor(t, "T2's event", func(evs []*Event) bool { return len(evs) == 1 })
	if d := decodeItem(t, first[0]); d.Writer != 2 {
		t.Fatalf("first event from writer %d, want 2", d.Writer)
	}
	killListenerBackend(t, b.pool)
	if err := t1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	evs := b.collected.waitFor(t, "T1's event", func(evs []*Event) bool { return len(evs) == 2 })
	if d := decodeItem(t, evs[1]); d.Writer != 1 {
		t.Fatalf("second event from writer %d, want 1", d.Writer)
	}
	if evs[1].Pos.ID >= evs[0].Pos.ID {
		t.Fatalf("test did not reproduce the hazard: T1 id %d, T2 id %d", evs[1].Pos.ID, evs[0].Pos.ID)
	}
}

// TestListenerSurvivesPostgresRestart restarts the whole server mid-stream.
// Not parallel: the restart drops every connection of the package's cluster,
// so it runs while the parallel tests wait.
func TestListenerSurvivesPostgresRestart(t *testing.T) {
	b := startListener(t, nil)
	const writers, perWriter = 4, 250
	ctx := context.Background()
	var written sync.WaitGroup
	var mu sync.Mutex
	done := 0
	restartAt := make(chan struct{})
	for w := range writers {
		written.Go(func() {
			if err := writeItems(ctx, b.pool, w, perWriter, func() {
				mu.Lock()
				done++
				if done == 400 {
					close(restartAt)
				}
				mu.Unlock()
			}); err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		})
	}
	<-restartAt
	if err := dbtest.Cluster().Restart(ctx); err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	written.Wait()
	evs := b.collected.waitFor(t, "all events", func(evs []*Event) bool { return len(evs) >= 2*writers*perWriter })
	checkStream(t, evs, writers, perWriter)
	if b.listener.Reconnects() < 1 {
		t.Fatal("listener did not reconnect")
	}
	eventuallyReady(t, b.listener)
}

func eventuallyReady(t *testing.T, l *Listener) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !l.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("listener not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListenerStartFailsFast: a wrong database is an error at start.
func TestListenerStartFailsFast(t *testing.T) {
	t.Parallel()
	_, url := dbtest.NewPool(t)
	cfg, err := db.ParseConfig(url+"&dbname=no_such_database", db.ListenerApplicationName)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = "no_such_database"
	l := &Listener{ConnConfig: cfg, DispatchFunc: func([]*Event) {}, Logger: discard()}
	if err := l.Start(context.Background()); err == nil {
		t.Fatal("Start on a missing database succeeded")
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start hung: %v", err)
	}
}

// TestTwoPhaseCommit: a transaction that says it will be prepared can
// PREPARE (no NOTIFY, no commit lock held), its events arrive only after
// COMMIT PREPARED, and never after ROLLBACK PREPARED.
func TestTwoPhaseCommit(t *testing.T) {
	t.Parallel()
	b := startListener(t, nil)
	ctx := context.Background()
	prepare := func(gid string, n int) {
		t.Helper()
		conn, err := b.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		for _, sql := range []string{
			`BEGIN`,
			`SET LOCAL pgpush.two_phase = on`,
			fmt.Sprintf(`INSERT INTO items (writer, n) VALUES (7, %d)`, n),
			`PREPARE TRANSACTION '` + gid + `'`,
		} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
	}
	prepare("pgpush-2pc-commit", 1)
	prepare("pgpush-2pc-rollback", 2)
	// A plain transaction after the prepared ones is not held up by them.
	if _, err := b.pool.Exec(ctx, `INSERT INTO items (writer, n) VALUES (8, 1)`); err != nil {
		t.Fatal(err)
	}
	first := b.collected.waitFor(t, "the plain insert", func(evs []*Event) bool { return len(evs) >= 1 })
	if d := decodeItem(t, first[0]); d.Writer != 8 {
		t.Fatalf("first event from writer %d, want the plain insert (8): prepared work must not arrive", d.Writer)
	}
	if _, err := b.pool.Exec(ctx, `ROLLBACK PREPARED 'pgpush-2pc-rollback'`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `COMMIT PREPARED 'pgpush-2pc-commit'`); err != nil {
		t.Fatal(err)
	}
	// The listener sequences it at its next idle check (1 s here).
	evs := b.collected.waitFor(t, "the prepared insert", func(evs []*Event) bool { return len(evs) >= 2 })
	if d := decodeItem(t, evs[1]); d.Writer != 7 || d.N != 1 {
		t.Fatalf("second event %+v, want the committed prepared row (7, 1)", d)
	}
	// Marker: anything from the rolled-back one would come before it.
	if _, err := b.pool.Exec(ctx, `INSERT INTO items (writer, n) VALUES (8, 2)`); err != nil {
		t.Fatal(err)
	}
	evs = b.collected.waitFor(t, "the marker", func(evs []*Event) bool { return len(evs) >= 3 })
	if d := decodeItem(t, evs[2]); d.Writer != 8 || len(evs) != 3 {
		t.Fatalf("after COMMIT PREPARED got %+v (%d events), want only the marker", d, len(evs))
	}
}

// TestListenerStartPosition: Start hands StartFunc the last event already
// in the log, and Run dispatches only what comes after it.
func TestListenerStartPosition(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.NewPool(t)
	ctx := context.Background()
	if _, err := db.Publish(ctx, pool, "alerts", "before", nil); err != nil {
		t.Fatal(err)
	}
	before, err := db.Publish(ctx, pool, "alerts", "before", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := startListenerOn(t, pool, nil) // the sequencer: it numbers them first
	if !b.listener.Sequencer() {
		t.Fatal("the only listener is not the sequencer")
	}
	if b.start.ID != before {
		t.Fatalf("StartFunc got %+v, want the last event's id %d", b.start, before)
	}
	after, err := db.Publish(ctx, pool, "alerts", "after", nil)
	if err != nil {
		t.Fatal(err)
	}
	evs := b.collected.waitFor(t, "the event after Start", func(evs []*Event) bool { return len(evs) >= 1 })
	if len(evs) != 1 || evs[0].Pos.ID != after || !evs[0].Pos.After(b.start) {
		t.Fatalf("dispatched %d events, first %+v; want only %d, after %+v", len(evs), evs[0].Pos, after, b.start)
	}
}

var errInjected = errors.New("injected connect failure")

// flakyConn refuses as many connects as failConnects says, as a database
// that is still restarting would.
type flakyConn struct {
	listenConn
	failConnects atomic.Int32
}

func (c *flakyConn) Connect(ctx context.Context) error {
	if c.failConnects.Add(-1) >= 0 {
		return errInjected
	}
	return c.listenConn.Connect(ctx)
}

// TestListenerRetriesFailedConnects: after losing its connection the
// listener keeps retrying through failed connects, then delivers what was
// committed meanwhile.
func TestListenerRetriesFailedConnects(t *testing.T) {
	t.Parallel()
	var flaky *flakyConn
	b := startListener(t, func(l *Listener) {
		l.newConn = func(cfg *pgx.ConnConfig) listenConn {
			flaky = &flakyConn{listenConn: newPgxListenConn(cfg)}
			return flaky
		}
	})
	flaky.failConnects.Store(2)
	killListenerBackend(t, b.pool)
	if _, err := b.pool.Exec(context.Background(), `INSERT INTO items (writer, n) VALUES (1, 1)`); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the lost connection, then two refused connects
		if err := b.listener.testSignals.connError.waitOrTimeout(t); i > 0 && !errors.Is(err, errInjected) {
			t.Fatalf("connection error %d = %v, want the injected one", i, err)
		}
	}
	if n := b.listener.testSignals.caughtUp.waitOrTimeout(t); n != 1 {
		t.Fatalf("caught up after %d reconnects, want 1", n)
	}
	evs := b.collected.waitFor(t, "the row committed while disconnected", func(evs []*Event) bool { return len(evs) >= 1 })
	if d := decodeItem(t, evs[0]); d.Writer != 1 || len(evs) != 1 {
		t.Fatalf("got %d events, first %+v; want the one row", len(evs), d)
	}
}

// killSequencerBackend terminates the backend that holds the sequencer's
// lock (migration 00006's leader key).
func killSequencerBackend(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), `
		SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid::bigint = 7370707573680002 >> 32 AND l.objid::bigint = 7370707573680002 & x'ffffffff'::bigint`).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminate the sequencer's backend: %d terminated, err %v", n, err)
	}
}

// TestSequencerFailover: two instances' listeners share a database; one
// numbers commits for both. When its session dies the other takes over,
// and both still get every change once, in order.
func TestSequencerFailover(t *testing.T) {
	t.Parallel()
	a := startListener(t, func(l *Listener) { l.testSignals.leading.init() })
	b := startListenerOn(t, a.pool, func(l *Listener) { l.testSignals.leading.init() })
	if !a.listener.Sequencer() || b.listener.Sequencer() {
		t.Fatalf("Sequencer() = %t, %t; want the first listener only", a.listener.Sequencer(), b.listener.Sequencer())
	}
	// The first listener's election at its start; the one awaited below
	// must be the election after its session ends.
	a.listener.testSignals.leading.waitOrTimeout(t)
	const writers, perWriter = 2, 100
	ctx := context.Background()
	var written sync.WaitGroup
	progress := make(chan struct{}, writers*perWriter)
	for w := range writers {
		written.Go(func() {
			if err := writeItems(ctx, a.pool, w, perWriter, func() { progress <- struct{}{} }); err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		})
	}
	for range writers * perWriter / 2 {
		<-progress
	}
	killSequencerBackend(t, a.pool)
	// The first listener reconnects at once and may win the election
	// again; either way a sequencer must come back.
	select {
	case <-a.listener.testSignals.leading.ch:
	case <-b.listener.testSignals.leading.ch:
	case <-time.After(waitTimeout):
		t.Fatal("no listener became the sequencer after the first one's session ended")
	}
	written.Wait()
	for _, l := range []*listenerBundle{a, b} {
		evs := l.collected.waitFor(t, "all events", func(evs []*Event) bool { return len(evs) >= 2*writers*perWriter })
		checkStream(t, evs, writers, perWriter)
	}
	if a.listener.Sequencer() == b.listener.Sequencer() {
		t.Fatalf("Sequencer() = %t, %t; want exactly one", a.listener.Sequencer(), b.listener.Sequencer())
	}
}

// TestSequencerResignsAtShutdown: a sequencer that stops hands its role
// over, and the other instance goes on numbering commits.
func TestSequencerResignsAtShutdown(t *testing.T) {
	t.Parallel()
	a := startListener(t, nil)
	b := startListenerOn(t, a.pool, func(l *Listener) { l.testSignals.leading.init() })
	if !a.listener.Sequencer() {
		t.Fatal("the first listener is not the sequencer")
	}
	a.stop()
	b.listener.testSignals.leading.waitOrTimeout(t)
	if _, err := a.pool.Exec(context.Background(), `INSERT INTO items (writer, n) VALUES (1, 1)`); err != nil {
		t.Fatal(err)
	}
	b.collected.waitFor(t, "the row inserted after the hand-over", func(evs []*Event) bool { return len(evs) == 1 })
}

// TestNoLostDoorbell: writers commit in bursts while the sequencer goes
// to sleep and wakes up again; with no idle check to fall back on, every
// burst must still arrive whole. A writer that skipped the doorbell while
// the sequencer was awake, and committed as it went to sleep, would be
// stranded here.
func TestNoLostDoorbell(t *testing.T) {
	t.Parallel()
	b := startListener(t, func(l *Listener) { l.IdleCheck = time.Hour })
	const writers, bursts, perBurst = 4, 20, 5
	ctx := context.Background()
	for burst := range bursts {
		var written sync.WaitGroup
		for w := range writers {
			written.Go(func() {
				for i := range perBurst {
					if _, err := b.pool.Exec(ctx, `INSERT INTO items (writer, n) VALUES ($1, $2)`, w, burst*perBurst+i); err != nil {
						t.Errorf("writer %d: %v", w, err)
					}
				}
			})
		}
		written.Wait()
		want := (burst + 1) * writers * perBurst
		b.collected.waitFor(t, fmt.Sprintf("burst %d", burst), func(evs []*Event) bool { return len(evs) >= want })
	}
}

// TestSequencerFilesHoursInUTC: whatever the server's time zone, the
// sequencer files commits under whole UTC hours, the hours the log's
// partitions are cut on.
func TestSequencerFilesHoursInUTC(t *testing.T) {
	t.Parallel()
	b := startListener(t, func(l *Listener) { l.ConnConfig.RuntimeParams["TimeZone"] = "Asia/Kolkata" })
	if _, err := b.pool.Exec(context.Background(), `INSERT INTO items (writer, n) VALUES (1, 1)`); err != nil {
		t.Fatal(err)
	}
	b.collected.waitFor(t, "the event", func(evs []*Event) bool { return len(evs) == 1 })
	var hours, off int
	if err := b.pool.QueryRow(context.Background(), `
		SELECT count(*), count(*) FILTER (WHERE extract(epoch FROM hour)::bigint % 3600 <> 0) FROM pgpush.event_hours`).Scan(&hours, &off); err != nil {
		t.Fatal(err)
	}
	if hours == 0 || off != 0 {
		t.Fatalf("%d hours in event_hours, %d of them not whole UTC hours", hours, off)
	}
}

// TestListenerSessionSettings: the listener's connection, however the
// server is configured, runs in UTC, without JIT, and with generic plans.
func TestListenerSessionSettings(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.NewPool(t)
	cfg := pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["TimeZone"] = "Asia/Kolkata"
	c := newPgxListenConn(cfg).(*pgxListenConn)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close(context.Background())
	var tz, jit, plans string
	if err := c.conn.QueryRow(context.Background(), `SELECT current_setting('TimeZone'), current_setting('jit'), current_setting('plan_cache_mode')`).Scan(&tz, &jit, &plans); err != nil {
		t.Fatal(err)
	}
	if tz != "UTC" || jit != "off" || plans != "force_generic_plan" {
		t.Fatalf("TimeZone %s, jit %s, plan_cache_mode %s; want UTC, off, force_generic_plan", tz, jit, plans)
	}
}

// TestSetConstraintsImmediate: SET CONSTRAINTS ALL IMMEDIATE runs the
// deferred doorbell before commit. The transaction's events still arrive
// after it commits, and a writer committing meanwhile is not held up.
func TestSetConstraintsImmediate(t *testing.T) {
	t.Parallel()
	b := startListener(t, func(l *Listener) { l.IdleCheck = time.Hour })
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, sql := range []string{
		`INSERT INTO items (writer, n) VALUES (1, 1)`,
		`SET CONSTRAINTS ALL IMMEDIATE`,
		`INSERT INTO items (writer, n) VALUES (1, 2)`,
	} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO items (writer, n) VALUES (2, 1)`); err != nil {
		t.Fatal(err)
	}
	evs := b.collected.waitFor(t, "the other writer's row", func(evs []*Event) bool { return len(evs) >= 1 })
	if d := decodeItem(t, evs[0]); d.Writer != 2 || len(evs) != 1 {
		t.Fatalf("got %d events, first %+v; want only writer 2's while the other is open", len(evs), d)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	evs = b.collected.waitFor(t, "the rows of the transaction", func(evs []*Event) bool { return len(evs) >= 3 })
	for i, want := range []itemKey{{2, 1}, {1, 1}, {1, 2}} {
		if d := decodeItem(t, evs[i]); d.Writer != want.writer || d.N != want.n {
			t.Fatalf("event %d is %+v, want %+v", i, d, want)
		}
	}
}

// TestRoundPeriod: rounds a millisecond apart up to 1,500 commits/s,
// then further apart with the rate, never more than 4 ms.
func TestRoundPeriod(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		rate float64
		want time.Duration
	}{
		{0, time.Millisecond},
		{1000, time.Millisecond},
		{1500, time.Millisecond},
		{2250, 2500 * time.Microsecond},
		{3000, 4 * time.Millisecond},
		{1e9, 4 * time.Millisecond},
	} {
		if got := roundPeriod(tt.rate); got != tt.want {
			t.Errorf("roundPeriod(%v) = %v, want %v", tt.rate, got, tt.want)
		}
	}
}
