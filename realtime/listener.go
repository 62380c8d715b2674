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
// notification as a doorbell: on each ring it reads every event committed
// after its cursor from pgpush.events, in commit order, and dispatches
// them. Because the cursor, not the notification, decides what is read,
// a lost connection loses nothing: after reconnecting and listening again,
// the same query delivers what was committed meanwhile, once.
//
// Start connects once, so that a wrong URL fails at start-up; Run then
// owns that connection, and every later one, until its context ends.
type Listener struct {
	// ConnConfig is used for every (re)connect. Required.
	ConnConfig *pgx.ConnConfig
	// StartFunc receives, from Start, the position the stream begins at:
	// the last event already in the log. It is called before any
	// DispatchFunc. Optional.
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

	// Only Start, then the Run goroutine, touch conn, cursor and lastCheck.
	conn      listenConn
	cursor    Position
	lastCheck time.Time

	ready      atomic.Bool
	reconnects atomic.Int64
	lag        atomic.Int64
}

// listenConn is the listening connection: the seam between the Listener
// and PostgreSQL (river's riverdriver.Listener). Only one goroutine at a
// time uses it.
type listenConn interface {
	// Connect opens the connection; after Close it may be called again.
	Connect(ctx context.Context) error
	Listen(ctx context.Context, channel string) error
	// WaitForNotification blocks until a notification arrives, ctx ends,
	// or the connection fails.
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

// LagMillis is the age of the newest event at the time it was dispatched:
// how far behind commit the listener runs.
func (l *Listener) LagMillis() int64 { return l.lag.Load() }

// Start connects once, so that a wrong URL fails here, records where the
// stream begins and hands it to StartFunc. Run then continues on the
// same connection.
func (l *Listener) Start(ctx context.Context) error {
	if l.newConn == nil {
		l.newConn = newPgxListenConn
	}
	l.conn = l.newConn(l.ConnConfig)
	if err := l.connect(ctx); err != nil {
		return err
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
	return nil
}

// Run listens until ctx ends, reconnecting with capped, jittered backoff
// after any error. It must follow a successful Start.
func (l *Listener) Run(ctx context.Context) error {
	defer l.conn.Close(context.WithoutCancel(ctx))
	attempt := 0
	connected := true // by Start
	for {
		if connected {
			err := l.serve(ctx)
			l.ready.Store(false)
			l.conn.Close(context.WithoutCancel(ctx))
			if ctx.Err() != nil {
				return nil
			}
			l.Logger.Warn("listener connection lost", "err", err)
			l.testSignals.connError.signal(err)
			attempt = 0
		}
		attempt++
		if !sleepCtx(ctx, backoff(attempt, l.maxBackoff())) {
			return nil
		}
		if err := l.connect(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.Logger.Warn("listener reconnect", "attempt", attempt, "err", err)
			l.testSignals.connError.signal(err)
			connected = false
			continue
		}
		connected = true
		l.reconnects.Add(1)
		l.Logger.Info("listener reconnected", "attempt", attempt)
	}
}

func (l *Listener) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := l.conn.Connect(ctx); err != nil {
		return fmt.Errorf("connect listener: %w", err)
	}
	return nil
}

// serve runs one connection: LISTEN first, then read the backlog, so
// that nothing committed in between is missed; then answer doorbells
// until the connection fails or ctx ends.
func (l *Listener) serve(ctx context.Context) error {
	if err := l.listen(ctx); err != nil {
		return err
	}
	if err := l.checkLog(ctx); err != nil {
		return err
	}
	l.ready.Store(true)
	l.testSignals.caughtUp.signal(l.reconnects.Load())
	if l.ControlFunc != nil {
		// Grants or sessions may have changed while we were away.
		l.ControlFunc(db.ReloadPayload)
	}
	for {
		n, err := l.wait(ctx)
		if err != nil {
			return err
		}
		if err := l.handle(ctx, n); err != nil {
			return err
		}
	}
}

func (l *Listener) listen(ctx context.Context) error {
	channels := []string{db.EventsChannel}
	if l.ControlChannel != "" {
		channels = append(channels, l.ControlChannel)
	}
	for _, ch := range channels {
		if err := l.conn.Listen(ctx, ch); err != nil {
			return fmt.Errorf("listen %q: %w", ch, err)
		}
	}
	return nil
}

// wait returns the next notification, or nil when none came within
// IdleCheck.
func (l *Listener) wait(ctx context.Context) (*pgconn.Notification, error) {
	waitCtx, cancel := context.WithTimeout(ctx, l.idleCheck())
	defer cancel()
	n, err := l.conn.WaitForNotification(waitCtx)
	switch {
	case err == nil:
		return n, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		// Idle. A timed-out wait leaves the connection usable; if it is
		// dead after all, the log check that follows says so.
		return nil, nil
	default:
		return nil, fmt.Errorf("wait for notification: %w", err)
	}
}

// handle acts on one notification, or on an idle period (n is nil).
func (l *Listener) handle(ctx context.Context, n *pgconn.Notification) error {
	switch {
	case n == nil:
		// Reading the log doubles as the connection check, and catches
		// any doorbell that was never rung.
		return l.checkLog(ctx)
	case n.Channel == db.EventsChannel:
		if time.Since(l.lastCheck) >= l.idleCheck() {
			// Also under steady traffic, when no idle period comes.
			return l.checkLog(ctx)
		}
		seq, err := strconv.ParseInt(n.Payload, 10, 64)
		if err == nil && seq <= l.cursor.Seq {
			return nil // already read with an earlier batch
		}
		return l.catchUp(ctx)
	case n.Channel == l.ControlChannel:
		if l.ControlFunc != nil {
			l.ControlFunc(n.Payload)
		}
	}
	return nil
}

// checkLog gives committed two-phase transactions their commit numbers
// (see migration 00005: they have none of their own), then reads the
// backlog.
func (l *Listener) checkLog(ctx context.Context) error {
	if _, err := l.conn.Exec(ctx, `SELECT pgpush.sequence_prepared()`); err != nil {
		return fmt.Errorf("sequence prepared transactions: %w", err)
	}
	l.lastCheck = time.Now()
	return l.catchUp(ctx)
}

// catchUp reads and dispatches everything after the cursor.
func (l *Listener) catchUp(ctx context.Context) error {
	batchSize := l.BatchSize
	if batchSize <= 0 {
		batchSize = 1000
	}
	for {
		rows, err := db.EventsAfter(ctx, l.conn, l.cursor.Seq, l.cursor.ID, batchSize)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		events := make([]*Event, len(rows))
		for i, r := range rows {
			events[i] = EventFromRow(r)
		}
		l.DispatchFunc(events)
		last := events[len(events)-1]
		l.cursor = last.Pos
		l.lag.Store(time.Since(last.Time).Milliseconds())
		if len(rows) < batchSize {
			return nil
		}
	}
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
