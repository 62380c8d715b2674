package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/triggers"
)

// PoolStore is the EventStore backed by pgpush.events.
type PoolStore struct {
	DB db.Querier
	// PageSize bounds one read of a replay. 0 means 500.
	PageSize int
}

// PositionOf implements EventStore.
func (s PoolStore) PositionOf(ctx context.Context, id int64) (Position, error) {
	seq, err := db.PositionOf(ctx, s.DB, id)
	if errors.Is(err, db.ErrEventExpired) {
		return Position{}, ErrResyncRequired
	}
	if err != nil {
		return Position{}, err
	}
	return Position{Seq: seq, ID: id}, nil
}

// replayPageBytes bounds the event data one replay holds at a time: a
// page of 500 rows of 900 KB each, held while a client that stopped
// reading drains, took hundreds of MB per socket.
const replayPageBytes = 4 << 20

// Replay implements EventStore, reading the channels page by page, each at
// most PageSize rows and about replayPageBytes of data.
func (s PoolStore) Replay(ctx context.Context, channels []string, from, to Position, fn func(*Event) error) error {
	page := s.PageSize
	if page <= 0 {
		page = 500
	}
	for to.After(from) {
		rows, err := db.ChannelEventsBetween(ctx, s.DB, channels, from.Seq, from.ID, to.Seq, to.ID, page, replayPageBytes)
		if err != nil {
			return err
		}
		size := 0
		for i, r := range rows {
			size += len(r.Data)
			from = Position{Seq: r.Seq, ID: r.ID}
			err := fn(EventFromRow(r))
			rows[i] = db.EventRow{} // sent: let the queue hold it, not the page
			if err != nil {
				return err
			}
		}
		if len(rows) < page && size < replayPageBytes {
			return nil // the last page, not one cut short by its size
		}
	}
	return nil
}

// Publish implements EventStore.
func (s PoolStore) Publish(ctx context.Context, channel, event string, data json.RawMessage) (int64, error) {
	return db.Publish(ctx, s.DB, channel, event, data)
}

// Announce implements EventStore.
func (s PoolStore) Announce(ctx context.Context, channel, event string, frame json.RawMessage, origin string) error {
	return db.Announce(ctx, s.DB, channel, event, frame, origin)
}

// SendRoomMessage implements EventStore.
func (s PoolStore) SendRoomMessage(ctx context.Context, room, sender, message, origin string, authenticated bool) error {
	_, err := db.SendRoomMessage(ctx, s.DB, room, sender, message, origin, authenticated)
	return err
}

// SendNotification implements EventStore.
func (s PoolStore) SendNotification(ctx context.Context, channel string, frame json.RawMessage, origin string) (int64, error) {
	return db.SendNotification(ctx, s.DB, channel, frame, origin)
}

// Snapshot implements EventStore: one read-only REPEATABLE READ
// transaction, so that every scan, and the snapshot returned, agree.
func (s PoolStore) Snapshot(ctx context.Context, channel string, eqs []triggers.Equal, read func(scan func(func(json.RawMessage) error) error) error) (string, error) {
	beginner, ok := s.DB.(interface {
		BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
	})
	if !ok {
		return "", errors.New("snapshot: the store cannot open transactions")
	}
	tx, err := beginner.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return "", fmt.Errorf("snapshot of %q: %w", channel, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// The transaction's snapshot is taken by its first statement: this one.
	var snap string
	if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snap); err != nil {
		return "", fmt.Errorf("snapshot of %q: %w", channel, err)
	}
	query, args, err := triggers.SnapshotQuery(ctx, tx, channel, eqs)
	if err != nil {
		return "", err
	}
	err = read(func(fn func(json.RawMessage) error) error {
		rows, err := tx.Query(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("snapshot of %q: %w", channel, err)
		}
		defer rows.Close()
		for rows.Next() {
			var row string
			if err := rows.Scan(&row); err != nil {
				return fmt.Errorf("snapshot of %q: %w", channel, err)
			}
			if err := fn(json.RawMessage(row)); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("snapshot of %q: %w", channel, err)
		}
		return nil
	})
	return snap, err
}

// ClaimPending implements EventStore.
func (s PoolStore) ClaimPending(ctx context.Context, channel string, retention time.Duration, visible func(frame json.RawMessage) bool) ([]db.PendingNotification, error) {
	return db.ClaimPendingNotifications(ctx, s.DB, channel, retention, db.MaxPendingNotifications, visible)
}
