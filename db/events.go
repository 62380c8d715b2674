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

// eventColumns are what collectEvents scans, after the commit's seq.
const eventColumns = `e.id, e.channel, e.event, e.data::text, e.created_at, coalesce(e.origin, ''), e.xid::text, e.old_data::text`

// eventsOf reads the events of commit c, by xid, from the partitions
// that hold them (c.first_at and c.last_at bound their created_at), in id
// order; extra is a further condition on e.
func eventsOf(extra string) string {
	return `SELECT ` + eventColumns + ` FROM pgpush.events e
		WHERE e.xid = c.xid AND e.created_at BETWEEN c.first_at AND c.last_at` + extra + `
		ORDER BY e.id LIMIT $3`
}

// EventsAfter returns up to limit committed events after position
// (seq, id), in delivery order. The rest of transaction seq is read on
// its own, by id, so that paging through a large transaction reads each
// page from the (xid, id) index instead of sorting the whole transaction.
func EventsAfter(ctx context.Context, q Querier, seq, id int64, limit int) ([]EventRow, error) {
	rows, err := q.Query(ctx, `
		(SELECT c.seq, e.* FROM (SELECT * FROM pgpush.commits WHERE seq = $1) c
		 CROSS JOIN LATERAL (`+eventsOf(` AND e.id > $2`)+`) e)
		UNION ALL
		(SELECT c.seq, e.* FROM (SELECT * FROM pgpush.commits WHERE seq > $1 ORDER BY seq LIMIT $3) c
		 CROSS JOIN LATERAL (`+eventsOf(``)+`) e
		 ORDER BY c.seq, e.id LIMIT $3)
		ORDER BY 1, 2 LIMIT $3`, seq, id, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return collectEvents(rows)
}

// ChannelEventsBetween returns up to limit events of the given channels
// after (fromSeq, fromID) and at most (toSeq, toID), in delivery order.
// Only transactions that wrote to one of them are read (pgpush.commits
// lists their channels).
//
// maxBytes, when positive, bounds the data kept of one call: reading stops
// after the row that reaches it (one row is always read), so that a page
// of large rows does not sit in memory while a slow client drains it.
func ChannelEventsBetween(ctx context.Context, q Querier, channels []string, fromSeq, fromID, toSeq, toID int64, limit, maxBytes int) ([]EventRow, error) {
	rows, err := q.Query(ctx, `
		(SELECT c.seq, e.* FROM (SELECT * FROM pgpush.commits WHERE seq = $1 AND seq <= $5) c
		 CROSS JOIN LATERAL (`+eventsOf(` AND e.channel = ANY ($4) AND e.id > $2 AND (c.seq < $5 OR e.id <= $6)`)+`) e)
		UNION ALL
		(SELECT c.seq, e.* FROM (
			SELECT * FROM pgpush.commits WHERE seq > $1 AND seq <= $5 AND channels && $4::text[]
			ORDER BY seq LIMIT $3) c
		 CROSS JOIN LATERAL (`+eventsOf(` AND e.channel = ANY ($4) AND (c.seq < $5 OR e.id <= $6)`)+`) e
		 ORDER BY c.seq, e.id LIMIT $3)
		ORDER BY 1, 2 LIMIT $3`, fromSeq, fromID, limit, channels, toSeq, toID)
	if err != nil {
		return nil, fmt.Errorf("read events of %q: %w", channels, err)
	}
	return collectEventsWithin(rows, maxBytes)
}

func collectEvents(rows pgx.Rows) ([]EventRow, error) { return collectEventsWithin(rows, 0) }

// collectEventsWithin scans rows until maxBytes of data are read (0: all).
func collectEventsWithin(rows pgx.Rows, maxBytes int) ([]EventRow, error) {
	defer rows.Close()
	var out []EventRow
	size := 0
	for (maxBytes <= 0 || size < maxBytes) && rows.Next() {
		var r EventRow
		var data, xid string
		var old *string
		if err := rows.Scan(&r.Seq, &r.ID, &r.Channel, &r.Event, &data, &r.CreatedAt, &r.Origin, &xid, &old); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		r.Data = []byte(data)
		size += len(data)
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
// when it is not in the log (pruned, rolled back, or never existed) or
// when events numbered after it may have been pruned (a replay from it
// could not be whole).
func PositionOf(ctx context.Context, q Querier, id int64) (int64, error) {
	var found, horizon *int64
	if err := q.QueryRow(ctx, `SELECT seq, horizon FROM pgpush.position_of($1)`, id).Scan(&found, &horizon); err != nil {
		return 0, fmt.Errorf("look up event %d: %w", id, err)
	}
	if found == nil || *found <= *horizon {
		return 0, ErrEventExpired
	}
	return *found, nil
}

// LastPosition is the position of the newest numbered event, where a
// listener that starts now begins.
func LastPosition(ctx context.Context, q Querier) (seq, id int64, err error) {
	err = q.QueryRow(ctx, `SELECT seq, coalesce(last_id, 0) FROM pgpush.commits ORDER BY seq DESC LIMIT 1`).Scan(&seq, &id)
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

// ChannelHasEvents reports whether any retained event was sent on channel
// (or is being published there), which is how custom channels become
// known.
func ChannelHasEvents(ctx context.Context, q Querier, channel string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pgpush.channels WHERE channel = $1)`, channel).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up channel %q: %w", channel, err)
	}
	return ok, nil
}

// PruneEvents applies the retention to the event log: it creates the
// partitions of the coming hours, drops those whose events are all older
// than retention (see pgpush.maintain_log), then forgets, batchSize rows
// per short transaction, the commits and channels at or below the
// horizon. It returns the number of partitions dropped. Only one caller
// at a time does the work; the others return 0 at once.
func PruneEvents(ctx context.Context, q Querier, retention time.Duration, batchSize int) (int, error) {
	var dropped int
	if err := q.QueryRow(ctx, `SELECT pgpush.maintain_log($1)`, retention).Scan(&dropped); err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	for {
		// A commit at or below the horizon can no longer be resumed
		// from, and every listener has read past it.
		tag, err := q.Exec(ctx, `
			DELETE FROM pgpush.commits WHERE seq IN (
				SELECT seq FROM pgpush.commits WHERE seq <= (SELECT horizon FROM pgpush.sequencer)
				ORDER BY seq LIMIT $1)`, batchSize)
		if err != nil {
			return dropped, fmt.Errorf("prune commits: %w", err)
		}
		if tag.RowsAffected() < int64(batchSize) {
			break
		}
	}
	if _, err := q.Exec(ctx, `DELETE FROM pgpush.channels WHERE last_seq <= (SELECT horizon FROM pgpush.sequencer)`); err != nil {
		return dropped, fmt.Errorf("prune channels: %w", err)
	}
	return dropped, nil
}
