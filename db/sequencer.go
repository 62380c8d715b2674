package db

import (
	"context"
	"fmt"
)

// The sequencer numbers committed transactions after the fact (migration
// 00006): writers only append events, and one listener in the cluster,
// the leader, numbers what committed whenever it is woken. The functions
// with Sequencer in their name act on advisory locks of the session, so
// they need the listener's own connection, not a pool.

// Sequence numbers every transaction whose events became visible since
// the last call, and returns how many it numbered. It is one statement,
// so any Querier will do; the listeners of other instances are told on
// SequencedChannel.
func Sequence(ctx context.Context, q Querier) (int64, error) {
	return sequence(ctx, q, nil)
}

// SequencerRest lowers the "awake" flag that a waking SequenceEvents
// raised (while it is up, committing writers skip the doorbell: the
// sequencer is reading anyway). When every writer that could have seen it
// up has finished committing, it does one more Sequence, which covers them
// all, and reports idle: the sequencer may sleep until the next doorbell
// if nothing was numbered. Otherwise some are still committing and it
// numbers nothing.
func SequencerRest(ctx context.Context, conn Querier) (n int64, idle bool, err error) {
	lower := false
	n, err = sequence(ctx, conn, &lower)
	if n < 0 {
		return 0, false, err
	}
	return n, true, err
}

// SequenceEvents does a Sequence (raising the "awake" flag first when
// wake is true) and returns up to limit events of the transactions it
// numbered, in delivery order: the sequencer's round in one statement,
// so that it does not read the log a second time. No event means nothing
// was numbered. limit events may mean more were numbered, which EventsAfter
// reads. The events are returned only once the statement has committed,
// so their positions are durable: a crash cannot number them again
// differently.
func SequenceEvents(ctx context.Context, conn Querier, wake bool, limit int) ([]EventRow, error) {
	var flag *bool
	if wake {
		flag = &wake
	}
	rows, err := conn.Query(ctx, `SELECT * FROM pgpush.sequence_events($1, $2)`, flag, limit)
	if err != nil {
		return nil, fmt.Errorf("sequence commits: %w", err)
	}
	// collectEvents reads to the end of the result, and pgx reports the
	// statement's outcome, its commit included, only there.
	events, err := collectEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("sequence commits: %w", err)
	}
	return events, nil
}

func sequence(ctx context.Context, q Querier, flag *bool) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT pgpush.sequence($1)`, flag).Scan(&n); err != nil {
		return 0, fmt.Errorf("sequence commits: %w", err)
	}
	return n, nil
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

// SequencerFollow says whether conn's listener wants to be told of new
// numbers on SequencedChannel: every listener but the sequencer does.
// With no follower the sequencer sends no NOTIFY.
func SequencerFollow(ctx context.Context, conn Querier, on bool) error {
	if _, err := conn.Exec(ctx, `SELECT pgpush.sequencer_follow($1)`, on); err != nil {
		return fmt.Errorf("follow sequencer: %w", err)
	}
	return nil
}

// SequencerResign gives the role up and tells the other instances, so one
// of them takes it at once.
func SequencerResign(ctx context.Context, conn Querier) error {
	if _, err := conn.Exec(ctx, `SELECT pgpush.sequencer_resign()`); err != nil {
		return fmt.Errorf("resign sequencer: %w", err)
	}
	return nil
}
