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
	"github.com/pgpush/pgpush/db"
)

// Listener owns pgpush's one LISTEN connection per instance. It treats a
// notification as a doorbell: on each ring it reads every event committed
// after its cursor from pgpush.events, in commit order, and dispatches
// them. Because the cursor, not the notification, decides what is read,
// a lost connection loses nothing: after reconnecting and listening again,
// the same query delivers what was committed meanwhile, once.
//
// Only the Run goroutine touches the connection.
type Listener struct {
	// ConnConfig is used for every (re)connect. Required.
	ConnConfig *pgx.ConnConfig
	// Dispatch receives events in delivery order. Required.
	Dispatch func([]*Event)
	// Control receives payloads from the control channel ("reload",
	// "logout:<session>"). Optional.
	Control func(payload string)
	// ControlChannel is the NOTIFY channel for Control.
	ControlChannel string
	// OnCaughtUp is called after each (re)connect once the backlog is
	// delivered, with the number of reconnects so far. Optional; tests use it.
	OnCaughtUp func(reconnects int64)
	Logger     *slog.Logger
	// BatchSize bounds one read of the event log. 0 means 1000.
	BatchSize int
	// IdleCheck is how long to wait for a notification before checking
	// the connection (and the log) anyway. 0 means 5s.
	IdleCheck time.Duration
	// MaxBackoff caps the reconnect delay. 0 means 5s.
	MaxBackoff time.Duration

	ready      atomic.Bool
	reconnects atomic.Int64
	cursor     Position // only the Run goroutine reads or writes it
	lag        atomic.Int64
}

// Ready reports whether the listener is connected and has delivered
// everything committed before its last (re)connect.
func (l *Listener) Ready() bool { return l.ready.Load() }

// Reconnects is the number of times the connection was re-established.
func (l *Listener) Reconnects() int64 { return l.reconnects.Load() }

// LagMillis is the age of the newest event at the time it was dispatched:
// how far behind commit the listener runs.
func (l *Listener) LagMillis() int64 { return l.lag.Load() }

// Start connects once, so that a wrong URL fails at start-up, and returns
// the position the stream begins at; Run then owns the connection.
func (l *Listener) Start(ctx context.Context) (*pgx.Conn, Position, error) {
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, Position{}, err
	}
	seq, id, err := db.LastPosition(ctx, conn)
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, Position{}, err
	}
	l.cursor = Position{Seq: seq, ID: id}
	return conn, l.cursor, nil
}

// Run listens until ctx ends, reconnecting with capped, jittered backoff
// after any error. conn is the connection Start returned.
func (l *Listener) Run(ctx context.Context, conn *pgx.Conn) error {
	attempt := 0
	for {
		if conn != nil {
			err := l.serve(ctx, conn)
			l.ready.Store(false)
			conn.Close(context.WithoutCancel(ctx))
			conn = nil
			if ctx.Err() != nil {
				return nil
			}
			l.Logger.Warn("listener connection lost", "err", err)
			attempt = 0
		}
		attempt++
		if !sleepCtx(ctx, backoff(attempt, l.maxBackoff())) {
			return nil
		}
		var err error
		conn, err = l.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.Logger.Warn("listener reconnect", "attempt", attempt, "err", err)
			continue
		}
		l.reconnects.Add(1)
		l.Logger.Info("listener reconnected", "attempt", attempt)
	}
}

func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := l.ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = db.ListenerApplicationName
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(connectCtx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect listener: %w", err)
	}
	return conn, nil
}

// serve runs one connection: LISTEN first, then read the backlog, so that
// nothing committed in between is missed; then wait for doorbells.
func (l *Listener) serve(ctx context.Context, conn *pgx.Conn) error {
	channels := []string{db.EventsChannel}
	if l.ControlChannel != "" {
		channels = append(channels, l.ControlChannel)
	}
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("listen %q: %w", ch, err)
		}
	}
	if err := l.sequencePrepared(ctx, conn); err != nil {
		return err
	}
	if err := l.catchUp(ctx, conn); err != nil {
		return err
	}
	l.ready.Store(true)
	if l.OnCaughtUp != nil {
		l.OnCaughtUp(l.reconnects.Load())
	}
	if l.Control != nil {
		// Grants or sessions may have changed while we were away.
		l.Control("reload")
	}
	lastSweep := time.Now()
	for {
		if time.Since(lastSweep) >= l.idleCheck() {
			// Also under steady traffic, when the idle branch never runs.
			if err := l.sequencePrepared(ctx, conn); err != nil {
				return err
			}
			lastSweep = time.Now()
		}
		waitCtx, cancel := context.WithTimeout(ctx, l.idleCheck())
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Idle: reading the log doubles as the connection check, and
			// catches any doorbell that was never rung. Two-phase
			// transactions committed since the last look get their commit
			// numbers here.
			if err := l.sequencePrepared(ctx, conn); err != nil {
				return err
			}
			lastSweep = time.Now()
			if err := l.catchUp(ctx, conn); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("wait for notification: %w", err)
		}
		switch n.Channel {
		case db.EventsChannel:
			seq, perr := strconv.ParseInt(n.Payload, 10, 64)
			if perr == nil && seq <= l.cursor.Seq {
				continue // already read with an earlier batch
			}
			if err := l.catchUp(ctx, conn); err != nil {
				return err
			}
		case l.ControlChannel:
			if l.Control != nil {
				l.Control(n.Payload)
			}
		}
	}
}

// sequencePrepared numbers committed two-phase transactions (see
// migration 00005), whose events carry no commit number of their own.
func (l *Listener) sequencePrepared(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, `SELECT pgpush.sequence_prepared()`); err != nil {
		return fmt.Errorf("sequence prepared transactions: %w", err)
	}
	return nil
}

// catchUp reads and dispatches everything after the cursor.
func (l *Listener) catchUp(ctx context.Context, conn *pgx.Conn) error {
	batchSize := l.BatchSize
	if batchSize <= 0 {
		batchSize = 1000
	}
	for {
		rows, err := db.EventsAfter(ctx, conn, l.cursor.Seq, l.cursor.ID, batchSize)
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
		l.Dispatch(events)
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
