package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EventsChannel is the writers' doorbell: a transaction with events
// NOTIFYs it when it commits while the sequencer sleeps. Only the
// sequencer listens to it.
const EventsChannel = "pgpush_events"

// SequencedChannel is where the sequencer announces numbered commits,
// with the highest new sequence number as payload (or ResignPayload). The
// events themselves are read from pgpush.events, so no row size is too
// large.
const SequencedChannel = "pgpush_sequenced"

// ResignPayload on SequencedChannel says the sequencer gave up its role.
const ResignPayload = "resign"

// ErrEventExpired means an event id is not (or no longer) in the event log,
// so a resuming client must resync.
var ErrEventExpired = errors.New("event is older than the retention or unknown")

// Querier is what the event queries need: a *pgx.Conn, a pool or a tx.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// EventRow is one committed event in delivery order position (Seq, ID).
type EventRow struct {
	Seq       int64
	ID        int64
	Channel   string
	Event     string
	Data      []byte
	CreatedAt time.Time
	Origin    string // the socket that sent a room or notification event, if any
	// Xid is the writing transaction's id (xid8): whether a snapshot
	// already reflects the event.
	Xid uint64
	// Old holds, for an update, the old values of the changed fields
	// (server-side only: it tells whether the row left a user's view).
	Old []byte
}

const selectEvents = `
	SELECT c.seq, e.id, e.channel, e.event, e.data::text, e.created_at, coalesce(e.origin, ''), e.xid::text, e.old_data::text
	FROM pgpush.commits c JOIN pgpush.events e ON e.xid = c.xid`

// EventsAfter returns up to limit committed events after position
// (seq, id), in delivery order. The rest of transaction seq is read on
// its own, by id, so that paging through a large transaction reads each
// page from the (xid, id) index instead of sorting the whole transaction.
func EventsAfter(ctx context.Context, q Querier, seq, id int64, limit int) ([]EventRow, error) {
	rows, err := q.Query(ctx, `
		(SELECT $1::bigint, e.id, e.channel, e.event, e.data::text, e.created_at, coalesce(e.origin, ''), e.xid::text, e.old_data::text
		 FROM pgpush.events e
		 WHERE e.xid = (SELECT xid FROM pgpush.commits WHERE seq = $1) AND e.id > $2
		 ORDER BY e.id LIMIT $3)
		UNION ALL
		(SELECT c.seq, e.id, e.channel, e.event, e.data::text, e.created_at, coalesce(e.origin, ''), e.xid::text, e.old_data::text
		 FROM (SELECT seq, xid FROM pgpush.commits WHERE seq > $1 ORDER BY seq LIMIT $3) c
		 CROSS JOIN LATERAL (
			SELECT * FROM pgpush.events e WHERE e.xid = c.xid ORDER BY e.id LIMIT $3) e
		 ORDER BY c.seq, e.id LIMIT $3)
		ORDER BY 1, 2 LIMIT $3`, seq, id, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return collectEvents(rows)
}

// ChannelEventsBetween returns up to limit events of one channel after
// (fromSeq, fromID) and at most (toSeq, toID), in delivery order.
func ChannelEventsBetween(ctx context.Context, q Querier, channel string, fromSeq, fromID, toSeq, toID int64, limit int) ([]EventRow, error) {
	rows, err := q.Query(ctx, selectEvents+`
		WHERE c.seq >= $2 AND c.seq <= $4 AND e.channel = $1
		  AND (c.seq, e.id) > ($2, $3) AND (c.seq, e.id) <= ($4, $5)
		ORDER BY c.seq, e.id LIMIT $6`, channel, fromSeq, fromID, toSeq, toID, limit)
	if err != nil {
		return nil, fmt.Errorf("read events of %q: %w", channel, err)
	}
	return collectEvents(rows)
}

func collectEvents(rows pgx.Rows) ([]EventRow, error) {
	var out []EventRow
	for rows.Next() {
		var r EventRow
		var data, xid string
		var old *string
		if err := rows.Scan(&r.Seq, &r.ID, &r.Channel, &r.Event, &data, &r.CreatedAt, &r.Origin, &xid, &old); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		r.Data = []byte(data)
		if old != nil {
			r.Old = []byte(*old)
		}
		var err error
		if r.Xid, err = strconv.ParseUint(xid, 10, 64); err != nil {
			return nil, fmt.Errorf("read events: xid %q: %w", xid, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, nil
}

// PositionOf returns the delivery position of event id, or ErrEventExpired
// when it is not in the log (pruned, rolled back, or never existed).
func PositionOf(ctx context.Context, q Querier, id int64) (seq int64, err error) {
	err = q.QueryRow(ctx, `
		SELECT c.seq FROM pgpush.events e JOIN pgpush.commits c ON c.xid = e.xid
		WHERE e.id = $1`, id).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrEventExpired
	}
	if err != nil {
		return 0, fmt.Errorf("look up event %d: %w", id, err)
	}
	return seq, nil
}

// LastPosition is the position of the newest committed event, where a
// listener that starts now begins.
func LastPosition(ctx context.Context, q Querier) (seq, id int64, err error) {
	err = q.QueryRow(ctx, `
		SELECT c.seq, coalesce(max(e.id), 0)
		FROM (SELECT seq, xid FROM pgpush.commits ORDER BY seq DESC LIMIT 1) c
		LEFT JOIN pgpush.events e ON e.xid = c.xid
		GROUP BY c.seq`).Scan(&seq, &id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read last event position: %w", err)
	}
	return seq, id, nil
}

// Publish records a custom event; it reaches subscribers on every instance
// when the surrounding transaction (or the statement) commits.
func Publish(ctx context.Context, q Querier, channel, event string, data json.RawMessage) (int64, error) {
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	var id int64
	if err := q.QueryRow(ctx, `SELECT pgpush.publish($1, $2, $3::jsonb)`, channel, event, string(data)).Scan(&id); err != nil {
		return 0, fmt.Errorf("publish on %q: %w", channel, err)
	}
	return id, nil
}

// ChannelHasEvents reports whether any retained event was sent on channel,
// which is how custom channels become known.
func ChannelHasEvents(ctx context.Context, q Querier, channel string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pgpush.events WHERE channel = $1)`, channel).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up channel %q: %w", channel, err)
	}
	return ok, nil
}

// PruneEvents deletes events and commits older than retention in batches of
// batchSize rows, each in its own short transaction, so that writers are
// never blocked for long. It returns the number of events deleted.
func PruneEvents(ctx context.Context, q Querier, retention time.Duration, batchSize int) (int64, error) {
	var total int64
	for {
		tag, err := q.Exec(ctx, `
			DELETE FROM pgpush.events WHERE id IN (
				SELECT id FROM pgpush.events WHERE created_at < now() - $1::interval
				ORDER BY id LIMIT $2)`, retention, batchSize)
		if err != nil {
			return total, fmt.Errorf("prune events: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batchSize) {
			break
		}
	}
	for {
		// A commit row is kept while any of its events is, so positions of
		// retained events can always be looked up.
		tag, err := q.Exec(ctx, `
			DELETE FROM pgpush.commits WHERE seq IN (
				SELECT c.seq FROM pgpush.commits c
				WHERE c.committed_at < now() - $1::interval
				  AND NOT EXISTS (SELECT 1 FROM pgpush.events e WHERE e.xid = c.xid)
				ORDER BY c.seq LIMIT $2)`, retention, batchSize)
		if err != nil {
			return total, fmt.Errorf("prune commits: %w", err)
		}
		if tag.RowsAffected() < int64(batchSize) {
			return total, nil
		}
	}
}
