package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pgpush/pgpush/realtime/filter"
	"github.com/pgpush/pgpush/triggers"
)

// A snapshot subscription (SPEC §3.2) gives the rows a user may see, then
// every change after them, with nothing missed and nothing twice. How:
//
//  1. The subscription is registered first, pending: from position P on,
//     live events are held for it. Every event up to P was dispatched, so
//     it was committed, before step 2.
//  2. The rows are read in one REPEATABLE READ transaction, whose snapshot
//     S is taken after step 1: S reflects every event up to P, and the
//     rows are exactly the state S shows.
//  3. An event after P is delivered unless its transaction is visible in S
//     (its change is already in the rows). Every event carries its
//     transaction id, so that is a comparison, not a query.

// snapshotFrameRows and snapshotFrameBytes bound one snapshot frame; a
// frame always holds at least one row, whatever its size.
const (
	snapshotFrameRows  = 500
	snapshotFrameBytes = 1 << 20
)

// errSnapshotTooLarge stops the counting pass as soon as it is known.
var errSnapshotTooLarge = errors.New("snapshot too large")

// pgSnapshot is a PostgreSQL snapshot (pg_current_snapshot()): which
// transactions had committed when it was taken.
type pgSnapshot struct {
	xmin, xmax uint64
	xip        []uint64 // in progress then, sorted
}

// parsePgSnapshot reads pg_snapshot's text form "xmin:xmax:xip,xip,…".
func parsePgSnapshot(s string) (*pgSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("snapshot %q: want xmin:xmax:xip", s)
	}
	var snap pgSnapshot
	var err error
	if snap.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if snap.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if parts[2] != "" {
		for x := range strings.SplitSeq(parts[2], ",") {
			xid, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("snapshot %q: %w", s, err)
			}
			snap.xip = append(snap.xip, xid)
		}
		slices.Sort(snap.xip)
	}
	return &snap, nil
}

// visible reports whether transaction xid had committed when the snapshot
// was taken, as pg_visible_in_snapshot does for a committed transaction
// (events of aborted ones are never read, so they never ask).
func (s *pgSnapshot) visible(xid uint64) bool {
	if xid < s.xmin {
		return true
	}
	if xid >= s.xmax {
		return false
	}
	_, inProgress := slices.BinarySearch(s.xip, xid)
	return !inProgress
}

// snapshotSubscribe is subscribe with "snapshot": true.
func (c *Client) snapshotSubscribe(ctx context.Context, channel string, f *filter.Filter) {
	// A snapshot starts a subscription afresh, whatever was there.
	c.leave(channel)
	s, upTo, _, err := c.addSub(ctx, channel, f, nil)
	if err != nil {
		c.send(channelErrorFrame(channel, accessMessage(err, channel)))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.hub.opts.ReplayTimeout)
	defer cancel()
	// The rules as they stand now; a grant reload meanwhile ends or
	// re-rules s, and the rows already sent stay as they were judged.
	pred := s.pred.Load()
	var eqs []triggers.Equal
	for _, e := range pred.Equalities() {
		if !e.Others {
			eqs = append(eqs, triggers.Equal{Column: e.Field, Numbers: e.Numbers, Strings: e.Strings})
		}
	}
	maxRows := c.hub.opts.SnapshotMaxRows
	snapText, err := c.hub.store.Snapshot(ctx, channel, eqs, func(scan func(func(json.RawMessage) error) error) error {
		// Count first, so that a snapshot too large sends no row at all.
		n := 0
		err := scan(func(row json.RawMessage) error {
			if pred.Match(filter.Decode(row)) {
				if n++; n > maxRows {
					return errSnapshotTooLarge
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return c.sendSnapshotRows(ctx, s, pred, scan)
	})
	var snap *pgSnapshot
	if err == nil {
		snap, err = parsePgSnapshot(snapText)
	}
	if err != nil {
		c.leave(channel)
		switch {
		case errors.Is(err, errSnapshotTooLarge):
			c.send(channelErrorFrame(channel, fmt.Sprintf("snapshot of %q has more than %d rows: narrow it with a filter", channel, maxRows)))
		case errors.Is(err, triggers.ErrNoTable):
			c.send(channelErrorFrame(channel, fmt.Sprintf("channel %q has no table behind it: a snapshot needs a watched table", channel)))
		case errors.Is(err, triggers.ErrNoPrimaryKey):
			c.send(channelErrorFrame(channel, fmt.Sprintf("the table behind %q has no primary key: a snapshot needs one", channel)))
		case errors.Is(err, errClientClosing), errors.Is(err, errSubscriptionEnded):
		default:
			c.log.Error("snapshot", "channel", channel, "err", err)
			c.send(channelErrorFrame(channel, "cannot take the snapshot right now, try again"))
		}
		return
	}
	s.mu.Lock()
	s.reflected = snap
	s.mu.Unlock()
	c.send(subscribedFrame(channel, upTo))
	s.activate()
}

// sendSnapshotRows sends the rows pred lets through in snapshot frames,
// paced on the client's queue as a replay is.
func (c *Client) sendSnapshotRows(ctx context.Context, s *subscription, pred *filter.Filter, scan func(func(json.RawMessage) error) error) error {
	var rows []json.RawMessage
	size := 0
	flush := func(more bool) error {
		frame := c.wire.control(snapshotFrame(s.channel, rows, more))
		rows, size = rows[:0], 0
		_, err := c.pushPaced(ctx, s, func() []byte { return frame })
		return err
	}

	err := scan(func(row json.RawMessage) error {
		if !pred.Match(filter.Decode(row)) {
			return nil
		}
		if len(rows) > 0 && (len(rows) == snapshotFrameRows || size+len(row) > snapshotFrameBytes) {
			if err := flush(true); err != nil {
				return err
			}
		}
		rows = append(rows, row)
		size += len(row)
		return nil
	})
	if err != nil {
		return err
	}
	return flush(false)
}

func snapshotFrame(channel string, rows []json.RawMessage, more bool) []byte {
	if rows == nil {
		rows = []json.RawMessage{}
	}
	b, _ := json.Marshal(struct {
		Type    string            `json:"type"`
		Channel string            `json:"channel"`
		Rows    []json.RawMessage `json:"rows"`
		More    bool              `json:"more"`
	}{"snapshot", channel, rows, more})
	return b
}
