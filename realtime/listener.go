package realtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgpush/pgpush/db"
)

// Listener owns pgpush's one LISTEN connection per instance. It treats a
// notification as a doorbell: on each ring it reads every event numbered
// after its cursor from pgpush.events, in commit order, and dispatches
// them. Because the cursor, not the notification, decides what is read,
// a lost connection loses nothing: after reconnecting and listening again,
// the same query delivers what was committed meanwhile, once.
//
// The listener of one instance is also the sequencer (migration 00006):
// writers only append events, and the sequencer numbers the transactions
// that committed since it last looked, then tells every instance on
// db.SequencedChannel. Its connection holds the leader advisory lock; the
// other listeners try to take it every second, so one of them takes over
// when the sequencer's session ends. Writers ring the sequencer's
// doorbell, db.EventsChannel, only while it sleeps: while it reads, it
// keeps the "awake" flag up and polls instead (see sequence).
//
// Start connects once, so that a wrong URL fails at start-up; Run then
// owns that connection, and every later one, until its context ends.
type Listener struct {
	// ConnConfig is used for every (re)connect. Required.
	ConnConfig *pgx.ConnConfig
	// StartFunc receives, from Start, the position the stream begins at:
	// the last event already in the log. (A listener that starts as the
	// sequencer numbers what committed before; on another instance, the
	// few commits its sequencer has not numbered yet come after it.) It is
	// called before any DispatchFunc. Optional.
	StartFunc func(Position)
	// DispatchFunc receives events in delivery order, from Run's
	// goroutine. Required.
	DispatchFunc func([]*Event)
	// ControlFunc receives payloads from ControlChannel (db.ReloadPayload,
	// db.LogoutPayloadPrefix+session), from Run's goroutine; after every
	// (re)connect it also receives db.ReloadPayload, since announcements
	// made while disconnected were missed. Optional.
	ControlFunc func(payload string)
	// ControlChannel is the NOTIFY channel for ControlFunc.
	ControlChannel string
	Logger         *slog.Logger
	// BatchSize bounds one read of the event log. 0 means 1000.
	BatchSize int
	// IdleCheck is how long to wait for a notification before checking
	// the connection (and the log) anyway. 0 means 5s.
	IdleCheck time.Duration
	// MaxBackoff caps the reconnect delay. 0 means 5s.
	MaxBackoff time.Duration

	// newConn makes the listening connection; nil means pgx with
	// ConnConfig. Tests replace it to inject faults.
	newConn func(*pgx.ConnConfig) listenConn
	// testSignals do nothing unless a test initialises them.
	testSignals listenerTestSignals

	// Only Start, then the Run goroutine, touch conn, cursor, following
	// (conn holds the follower lock) and rung (a doorbell was taken from
	// the connection while reading, and is still to be answered).
	conn      listenConn
	cursor    Position
	following bool
	rung      bool

	leader     atomic.Bool // conn holds the sequencer's lock
	ready      atomic.Bool
	reconnects atomic.Int64
	lag        atomic.Int64
}

const (
	// electEvery is how often a listener that is not the sequencer tries
	// to become it: the longest a dead sequencer's role stays vacant.
	electEvery = time.Second
	// Bounds of the sequencer's poll while writers that skipped the
	// doorbell are still committing: a commit takes about one WAL flush.
	minPoll = time.Millisecond
	maxPoll = 100 * time.Millisecond
	// While writers keep committing, the sequencer's rounds start every
	// roundEvery up to paceFrom commits/s, and further apart as the rate
	// grows, up to maxRoundEvery from paceTo on: see roundPeriod. The
	// first commit after a quiet period is numbered at once.
	roundEvery    = time.Millisecond
	maxRoundEvery = 4 * time.Millisecond
	paceFrom      = 1500.0
	paceTo        = 3000.0
)

// roundPeriod is the time from one round's start to the next while
// commits keep coming at rate per second. A round costs the database
// about the same whatever it numbers (0.25-0.3 ms of CPU on the reference
// box, mostly executor start-up, then a WAL flush), so every round is a
// fixed cost taken from the writers: measured with one writer at full
// speed (2,600-3,500 commits/s), rounds every millisecond let it commit
// 0.63-0.67 times the relay trigger's rows/s, every 3 ms 0.82-0.84. Up
// to paceFrom, where the database has room and latency is what a
// subscriber notices, rounds stay a millisecond apart (the rate is
// estimated over a few rounds, so the margin above 1,000 commits/s keeps
// a steady 1,000 from spacing them: the bench's latency-100 rose from
// 1.76 to 2.25 ms median when pacing began at 1,000); above, the period
// grows with the rate, so each round numbers more commits, and the wait
// a commit may add stays under maxRoundEvery.
func roundPeriod(rate float64) time.Duration {
	f := min(max((rate-paceFrom)/(paceTo-paceFrom), 0), 1)
	return roundEvery + time.Duration(f*float64(maxRoundEvery-roundEvery))
}

// listenConn is the listening connection: the seam between the Listener
// and PostgreSQL (river's riverdriver.Listener). Only one goroutine at a
// time uses it.
type listenConn interface {
	// Connect opens the connection; after Close it may be called again.
	Connect(ctx context.Context) error
	Listen(ctx context.Context, channel string) error
	// WaitForNotification returns a notification received earlier (with
	// a query's answer) at once, whatever ctx; otherwise it blocks until
	// one arrives, ctx ends, or the connection fails.
	WaitForNotification(ctx context.Context) (*pgconn.Notification, error)
	Close(ctx context.Context) error
	db.Querier
}

// listenerTestSignals let tests wait for what the Run goroutine did.
type listenerTestSignals struct {
	// caughtUp: the backlog is delivered after a (re)connect; the value
	// is the number of reconnects so far.
	caughtUp testSignal[int64]
	// connError: a connection failed or could not be opened.
	connError testSignal[error]
	// leading: this listener became the sequencer.
	leading testSignal[struct{}]
}

// testSignal is a hook for tests whose zero value does nothing, so that
// production code signals for free (river's testsignal).
type testSignal[T any] struct{ ch chan T }

func (s *testSignal[T]) signal(v T) {
	if s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
		panic("test signal buffer full: a test is not draining it")
	}
}

// Ready reports whether the listener is connected and has delivered
// everything committed before its last (re)connect.
func (l *Listener) Ready() bool { return l.ready.Load() }

// Reconnects is the number of times the connection was re-established.
func (l *Listener) Reconnects() int64 { return l.reconnects.Load() }

// Sequencer reports whether this instance numbers the commits of the
// whole cluster right now.
func (l *Listener) Sequencer() bool { return l.leader.Load() }

// LagMillis is the age of the newest event at the time it was dispatched:
// how far behind commit the listener runs.
func (l *Listener) LagMillis() int64 { return l.lag.Load() }

// Start connects once, so that a wrong URL fails here, starts listening,
// records where the stream begins and hands it to StartFunc. Run then
// continues on the same connection.
func (l *Listener) Start(ctx context.Context) error {
	if l.newConn == nil {
		l.newConn = newPgxListenConn
	}
	l.conn = l.newConn(l.ConnConfig)
	if err := l.open(ctx); err != nil {
		return err
	}
	if l.leader.Load() {
		// What committed while no sequencer ran is older than this start:
		// number it first, so that it comes before the start position
		// rather than as new events.
		if _, err := db.Sequence(ctx, l.conn); err != nil {
			l.conn.Close(context.WithoutCancel(ctx))
			return err
		}
	}
	seq, id, err := db.LastPosition(ctx, l.conn)
	if err != nil {
		l.conn.Close(context.WithoutCancel(ctx))
		return err
	}
	l.cursor = Position{Seq: seq, ID: id}
	if l.StartFunc != nil {
		l.StartFunc(l.cursor)
	}
	l.ready.Store(true) // nothing before the start position is owed
	return nil
}

// Run listens until ctx ends, reconnecting with capped, jittered backoff
// after any error. It must follow a successful Start.
func (l *Listener) Run(ctx context.Context) error {
	defer l.conn.Close(context.WithoutCancel(ctx))
	for {
		err := l.serve(ctx)
		l.ready.Store(false)
		if ctx.Err() != nil && l.leader.Load() {
			l.resign(context.WithoutCancel(ctx))
		}
		l.leader.Store(false)
		l.conn.Close(context.WithoutCancel(ctx))
		if ctx.Err() != nil {
			return nil
		}
		l.Logger.Warn("listener connection lost", "err", err)
		l.testSignals.connError.signal(err)
		if !l.reconnect(ctx) {
			return nil
		}
	}
}

// reconnect opens a new connection, retrying with backoff; it reports
// false when ctx ended first.
func (l *Listener) reconnect(ctx context.Context) bool {
	for attempt := 1; ; attempt++ {
		if !sleepCtx(ctx, backoff(attempt, l.maxBackoff())) {
			return false
		}
		err := l.open(ctx)
		if err == nil {
			l.reconnects.Add(1)
			l.Logger.Info("listener reconnected", "attempt", attempt)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		l.Logger.Warn("listener reconnect", "attempt", attempt, "err", err)
		l.testSignals.connError.signal(err)
	}
}

// open connects, LISTENs, and tries to become the sequencer. LISTEN comes
// before any read of the log, so that nothing committed in between is
// missed.
func (l *Listener) open(ctx context.Context) error {
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l.following, l.rung = false, false
	if err := l.conn.Connect(connectCtx); err != nil {
		return fmt.Errorf("connect listener: %w", err)
	}
	channels := []string{db.SequencedChannel}
	if l.ControlChannel != "" {
		channels = append(channels, l.ControlChannel)
	}
	for _, ch := range channels {
		if err := l.listen(ctx, ch); err != nil {
			l.conn.Close(context.WithoutCancel(ctx))
			return err
		}
	}
	if _, err := l.elect(ctx); err != nil {
		l.conn.Close(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// serve reads the backlog, then answers doorbells until the connection
// fails or ctx ends.
func (l *Listener) serve(ctx context.Context) error {
	if err := l.catchUp(ctx); err != nil {
		return err
	}
	l.ready.Store(true)
	l.testSignals.caughtUp.signal(l.reconnects.Load())
	if l.ControlFunc != nil {
		// Grants or sessions may have changed while we were away.
		l.ControlFunc(db.ReloadPayload)
	}
	var n *pgconn.Notification // none yet: look at the log as after a quiet period
	for {
		if err := l.handle(ctx, n); err != nil {
			return err
		}
		if l.rung && l.leader.Load() {
			l.rung = false
			n = &pgconn.Notification{Channel: db.EventsChannel} // taken while reading
			continue
		}
		timeout := l.idleCheck()
		if !l.leader.Load() {
			timeout = min(timeout, electEvery)
		}
		var err error
		if n, err = l.wait(ctx, timeout); err != nil {
			return err
		}
	}
}

func (l *Listener) listen(ctx context.Context, channel string) error {
	if err := l.conn.Listen(ctx, channel); err != nil {
		return fmt.Errorf("listen %q: %w", channel, err)
	}
	return nil
}

// elect tries to make this listener the sequencer, unless it is already;
// otherwise it makes sure the sequencer tells it of new numbers. It
// reports whether this listener just became the sequencer.
func (l *Listener) elect(ctx context.Context) (bool, error) {
	if l.leader.Load() {
		return false, nil
	}
	lead, err := db.SequencerLead(ctx, l.conn)
	if err != nil {
		return false, err
	}
	if !lead {
		if !l.following {
			if err := db.SequencerFollow(ctx, l.conn, true); err != nil {
				return false, err
			}
			l.following = true
		}
		return false, nil
	}
	if l.following {
		if err := db.SequencerFollow(ctx, l.conn, false); err != nil {
			return false, err
		}
		l.following = false
	}
	// Writers' doorbells go to the sequencer only.
	if err := l.listen(ctx, db.EventsChannel); err != nil {
		return false, err
	}
	l.leader.Store(true)
	l.Logger.Info("listener is the sequencer")
	l.testSignals.leading.signal(struct{}{})
	return true, nil
}

// takeOver tries to become the sequencer on a connection that is already
// reading, then looks at the log.
func (l *Listener) takeOver(ctx context.Context) error {
	promoted, err := l.elect(ctx)
	if err != nil {
		return err
	}
	if promoted {
		// What the previous sequencer numbered last may not have
		// reached us: its notification, or our read of it, may be lost.
		if err := l.catchUp(ctx); err != nil {
			return err
		}
	}
	return l.checkLog(ctx)
}

// resign hands the sequencer's role to another instance at shutdown;
// closing the connection would free it too, but the others would only
// notice at their next election.
func (l *Listener) resign(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := db.SequencerResign(ctx, l.conn); err != nil {
		l.Logger.Warn("resign as sequencer", "err", err)
	}
}

// wait returns the next notification, or nil when none came within
// timeout.
func (l *Listener) wait(ctx context.Context, timeout time.Duration) (*pgconn.Notification, error) {
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n, err := l.conn.WaitForNotification(waitCtx)
	switch {
	case err == nil:
		return n, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		// A timed-out wait leaves the connection usable; if it is dead
		// after all, the query that follows says so.
		return nil, nil
	default:
		return nil, fmt.Errorf("wait for notification: %w", err)
	}
}

// handle acts on one notification, or on a quiet period (n is nil).
func (l *Listener) handle(ctx context.Context, n *pgconn.Notification) error {
	switch {
	case n == nil:
		// Reading the log doubles as the connection check, and catches
		// any doorbell that was never rung: two-phase transactions ring
		// none (PostgreSQL refuses PREPARE after NOTIFY).
		return l.takeOver(ctx)
	case n.Channel == db.EventsChannel:
		return l.checkLog(ctx)
	case n.Channel == db.SequencedChannel:
		if n.Payload == db.ResignPayload {
			return l.takeOver(ctx)
		}
		seq, err := strconv.ParseInt(n.Payload, 10, 64)
		if err == nil && seq <= l.cursor.Seq {
			return nil // already read, or this listener numbered it
		}
		return l.catchUp(ctx)
	default:
		l.control(n)
	}
	return nil
}

// checkLog reads what is new: the sequencer numbers commits first.
func (l *Listener) checkLog(ctx context.Context) error {
	if l.leader.Load() {
		return l.sequence(ctx)
	}
	return l.catchUp(ctx)
}

// sequence numbers and reads commits until none are left, with the
// "awake" flag up so that committing writers skip the doorbell, then
// lowers the flag. It may only sleep once no writer that saw the flag up
// is still committing (SequencerRest): one more round then reads them
// all. Until then it polls, with the flag down so new writers ring.
func (l *Listener) sequence(ctx context.Context) error {
	poll := minPoll
	for {
		began := time.Now()
		numbered := l.cursor.Seq
		more, err := l.round(ctx, true)
		// rate is the commits numbered per second, smoothed over rounds,
		// while they keep coming.
		var rate float64
		for err == nil && more {
			poll = minPoll
			if !sleepCtx(ctx, roundPeriod(rate)-time.Since(began)) {
				return ctx.Err()
			}
			// The commits the last round numbered, per second of its
			// period.
			now := time.Now()
			rate = 0.75*rate + 0.25*float64(l.cursor.Seq-numbered)/now.Sub(began).Seconds()
			began, numbered = now, l.cursor.Seq
			more, err = l.round(ctx, false)
		}
		if err != nil {
			return err
		}
		n, idle, err := db.SequencerRest(ctx, l.conn)
		if err != nil {
			return err
		}
		if idle {
			more, err := l.afterRound(ctx, n)
			if err != nil || !more {
				return err
			}
			continue
		}
		if err := l.pause(ctx, poll); err != nil {
			return err
		}
		poll = min(2*poll, maxPoll)
	}
}

// round numbers what committed since the last one (raising the "awake"
// flag first when wake is true), dispatches it, and reports whether there
// may be more, as afterRound does. The numbering statement returns the
// events it numbered (db.SequenceEvents), so a round is one statement;
// the log is read page by page only when a round numbered more than one
// page, or numbered after commits this listener has not read.
func (l *Listener) round(ctx context.Context, wake bool) (more bool, err error) {
	limit := l.batchSize()
	rows, err := db.SequenceEvents(ctx, l.conn, wake, limit)
	if err != nil {
		return false, err
	}
	if len(rows) > 0 && rows[0].Seq == l.cursor.Seq+1 {
		l.deliver(rows)
	}
	if len(rows) == limit || (len(rows) > 0 && l.cursor.Seq < rows[len(rows)-1].Seq) {
		if err := l.catchUp(ctx); err != nil {
			return false, err
		}
	}
	return l.settle(ctx, len(rows) > 0), nil
}

// afterRound reads the n commits a round numbered, and reports whether
// there may be more: it numbered some, or a doorbell came in with the
// round's answers (rung by a writer that may have committed after the
// round's snapshot). Under steady writes the sequencer goes from round to
// round without waiting for notifications, so it also acts on the control
// messages among them here: a logout must not wait for a quiet moment.
func (l *Listener) afterRound(ctx context.Context, n int64) (more bool, err error) {
	if n > 0 {
		if err := l.catchUp(ctx); err != nil {
			return false, err
		}
	}
	return l.settle(ctx, n > 0), nil
}

// settle ends a round: it acts on the notifications that came with it and
// reports whether there may be more to number, because the round numbered
// something or a doorbell came in meanwhile.
func (l *Listener) settle(ctx context.Context, numbered bool) (more bool) {
	l.drain(ctx)
	more = numbered || l.rung
	l.rung = false
	return more
}

// drain acts on the notifications already received, without waiting for
// more (WaitForNotification returns those first, and fails at once on a
// context that has ended): control messages go to ControlFunc, and a
// doorbell sets rung.
func (l *Listener) drain(ctx context.Context) {
	done, cancel := context.WithCancel(ctx)
	cancel()
	for {
		n, err := l.conn.WaitForNotification(done)
		if err != nil {
			return
		}
		l.rung = l.rung || n.Channel == db.EventsChannel
		l.control(n)
	}
}

// pause waits up to d for a notification, acting on control messages;
// any doorbell just ends the pause.
func (l *Listener) pause(ctx context.Context, d time.Duration) error {
	n, err := l.wait(ctx, d)
	if err != nil || n == nil {
		return err
	}
	l.control(n)
	return nil
}

// control passes n on to ControlFunc if it came on ControlChannel.
func (l *Listener) control(n *pgconn.Notification) {
	if n.Channel == l.ControlChannel && l.ControlFunc != nil {
		l.ControlFunc(n.Payload)
	}
}

// catchUp reads and dispatches everything after the cursor, acting on
// notifications between pages.
func (l *Listener) catchUp(ctx context.Context) error {
	batchSize := l.batchSize()
	for {
		rows, err := db.EventsAfter(ctx, l.conn, l.cursor.Seq, l.cursor.ID, batchSize)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		l.deliver(rows)
		if len(rows) < batchSize {
			return nil
		}
		// A long read (a large transaction) must not hold up a logout.
		l.drain(ctx)
	}
}

// deliver dispatches rows, which follow the cursor, and moves it past them.
func (l *Listener) deliver(rows []db.EventRow) {
	events := make([]*Event, len(rows))
	for i, r := range rows {
		events[i] = EventFromRow(r)
	}
	l.DispatchFunc(events)
	last := events[len(events)-1]
	l.cursor = last.Pos
	l.lag.Store(time.Since(last.Time).Milliseconds())
}

func (l *Listener) batchSize() int {
	if l.BatchSize > 0 {
		return l.BatchSize
	}
	return 1000
}

// EventFromRow converts a row of the event log.
func EventFromRow(r db.EventRow) *Event {
	return &Event{
		Pos:     Position{Seq: r.Seq, ID: r.ID},
		Channel: r.Channel,
		Name:    r.Event,
		Data:    r.Data,
		Time:    r.CreatedAt,
		Origin:  r.Origin,
		Xid:     r.Xid,
		Old:     r.Old,
	}
}

func (l *Listener) idleCheck() time.Duration {
	if l.IdleCheck > 0 {
		return l.IdleCheck
	}
	return 5 * time.Second
}

func (l *Listener) maxBackoff() time.Duration {
	if l.MaxBackoff > 0 {
		return l.MaxBackoff
	}
	return 5 * time.Second
}

// pgxListenConn is the listenConn of production: one *pgx.Conn at a time,
// opened with application_name pgpush-listener.
type pgxListenConn struct {
	config *pgx.ConnConfig
	conn   *pgx.Conn
}

func newPgxListenConn(cfg *pgx.ConnConfig) listenConn {
	cfg = cfg.Copy()
	cfg.RuntimeParams["application_name"] = db.ListenerApplicationName
	return &pgxListenConn{config: cfg}
}

func (c *pgxListenConn) Connect(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, c.config)
	if err != nil {
		return err
	}
	// Settings of this session, set rather than sent as startup
	// parameters, which PgBouncer refuses unless told to drop them.
	//
	// The sequencer's role is a lock of this session: if the instance
	// vanishes without closing the connection, the server must notice
	// within half a minute, not after the default two hours, so another
	// instance can take over (keepalives; no effect on Unix sockets, where
	// the server notices at once).
	//
	// The listener pages through a large transaction with
	// db.EventsAfter: the events of its xid after the cursor, first 1,000
	// by id. PostgreSQL's custom plans for it, estimating a few rows per
	// xid, read every remaining event of the transaction through a bitmap
	// and sort them for each page (37-65 ms a page 150,000 events into a
	// 200,000-event transaction, explained in psql); the generic plan
	// walks the (xid, id) index in order and stops after the page
	// (0.25-0.37 ms). The bench's UPDATE of 1,000,000 rows reached its
	// subscriber 10.7 s after the commit with this, 15.9 s without.
	//
	// The sequencer files each numbered commit under its hour in
	// pgpush.event_hours with date_trunc, which cuts hours in the session's
	// time zone; in UTC they are the hours the log's partitions are cut
	// on (migration 00014), so that dropping a partition moves the resume
	// horizon past exactly the commits it held (in Asia/Kolkata an hour
	// would run from :30 to :30, and up to half an hour of commits whose
	// events are kept would answer resync_required).
	//
	// No JIT: on a large log the generic plan of a page of db.EventsAfter
	// is estimated far past jit_above_cost, and each page was compiled
	// again: 476 ms for a page of 1,000 commits with JIT (383 of them
	// compiling), 152 ms without, on a scratch log of 2.5 million commits
	// (2026-12-01).
	if _, err := conn.Exec(ctx, `SELECT set_config('tcp_keepalives_idle', '10', false),
		set_config('tcp_keepalives_interval', '5', false), set_config('tcp_keepalives_count', '3', false),
		set_config('plan_cache_mode', 'force_generic_plan', false), set_config('TimeZone', 'UTC', false),
		set_config('jit', 'off', false)`); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return err
	}
	c.conn = conn
	return nil
}

func (c *pgxListenConn) Listen(ctx context.Context, channel string) error {
	_, err := c.conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	return err
}

func (c *pgxListenConn) WaitForNotification(ctx context.Context) (*pgconn.Notification, error) {
	return c.conn.WaitForNotification(ctx)
}

func (c *pgxListenConn) Close(ctx context.Context) error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close(ctx)
	c.conn = nil
	return err
}

func (c *pgxListenConn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return c.conn.Exec(ctx, sql, args...)
}

func (c *pgxListenConn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return c.conn.Query(ctx, sql, args...)
}

func (c *pgxListenConn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return c.conn.QueryRow(ctx, sql, args...)
}

// backoff doubles from 100ms up to max, with ±10% jitter so that many
// instances losing the same database do not reconnect in lockstep.
func backoff(attempt int, max time.Duration) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return d + jitter
}

// sleepCtx waits for d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
