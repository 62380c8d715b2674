package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The sequencer numbers committed transactions after the fact (migration
// 00006): writers only append events, and one connection in the cluster,
// the leader, calls Sequence whenever it is woken. Every function here
// needs one connection, not a pool: the advisory locks are the session's,
// and Sequence runs a transaction over several calls.

// errPoolNotConn is returned when a pool is passed where the sequencer
// needs its own connection.
var errPoolNotConn = errors.New("sequencer: needs a connection, not a pool")

// Sequence numbers every transaction whose events became visible since
// the last call, in one REPEATABLE READ transaction, and returns how many
// it numbered. When it numbers any, it notifies SequencedChannel.
func Sequence(ctx context.Context, conn Querier) (int64, error) {
	if _, ok := conn.(*pgxpool.Pool); ok {
		return 0, errPoolNotConn
	}
	// The lock comes before any query, so the transaction's snapshot is
	// taken after the previous sequence() committed.
	if _, err := conn.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ; LOCK TABLE pgpush.sequencer IN EXCLUSIVE MODE`); err != nil {
		return 0, rollback(ctx, conn, fmt.Errorf("sequence commits: %w", err))
	}
	var n int64
	if err := conn.QueryRow(ctx, `SELECT pgpush.sequence()`).Scan(&n); err != nil {
		return 0, rollback(ctx, conn, fmt.Errorf("sequence commits: %w", err))
	}
	if _, err := conn.Exec(ctx, `COMMIT`); err != nil {
		return 0, rollback(ctx, conn, fmt.Errorf("sequence commits: %w", err))
	}
	return n, nil
}

// rollback ends a failed transaction so the connection stays usable, and
// returns err.
func rollback(ctx context.Context, conn Querier, err error) error {
	_, _ = conn.Exec(context.WithoutCancel(ctx), `ROLLBACK`)
	return err
}

// SequencerLead tries to make conn the sequencer; it stays the sequencer
// until it resigns or its session ends.
func SequencerLead(ctx context.Context, conn Querier) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pgpush.sequencer_lead()`).Scan(&ok); err != nil {
		return false, fmt.Errorf("elect sequencer: %w", err)
	}
	return ok, nil
}

// SequencerWake raises the flag that tells committing writers the
// sequencer is reading, so that they skip the doorbell.
func SequencerWake(ctx context.Context, conn Querier) error {
	if _, err := conn.Exec(ctx, `SELECT pgpush.sequencer_wake()`); err != nil {
		return fmt.Errorf("wake sequencer: %w", err)
	}
	return nil
}

// SequencerRest lowers the flag. It reports true when every writer that
// could have skipped the doorbell has finished committing: one more
// Sequence then covers them all, and the sequencer may sleep until the
// next doorbell. On false, some are still committing.
func SequencerRest(ctx context.Context, conn Querier) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pgpush.sequencer_rest()`).Scan(&ok); err != nil {
		return false, fmt.Errorf("rest sequencer: %w", err)
	}
	return ok, nil
}

// SequencerResign gives the role up and tells the other instances, so one
// of them takes it at once.
func SequencerResign(ctx context.Context, conn Querier) error {
	if _, err := conn.Exec(ctx, `SELECT pgpush.sequencer_resign()`); err != nil {
		return fmt.Errorf("resign sequencer: %w", err)
	}
	return nil
}
