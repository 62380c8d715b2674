package db

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Announce records a room or notification-channel event whose data is the
// frame members receive; origin names the sending socket.
func Announce(ctx context.Context, q Querier, channel, event string, frame json.RawMessage, origin string) error {
	if _, err := q.Exec(ctx, `SELECT pgpush.emit($1, $2, $3::jsonb, $4)`, channel, event, string(frame), origin); err != nil {
		return fmt.Errorf("announce on %q: %w", channel, err)
	}
	return nil
}

// SendRoomMessage stores a chat message and, in the same statement (so the
// same transaction), emits the receive-message frame to the room's channel.
// authenticated says whether sender is a logged-in user's e-mail rather
// than a name an anonymous client gave.
func SendRoomMessage(ctx context.Context, q Querier, room, sender, message, origin string, authenticated bool) (time.Time, error) {
	var sentAt time.Time
	err := q.QueryRow(ctx, `
		WITH m AS (
			INSERT INTO pgpush.room_messages (room_id, sender, message) VALUES ($1, $2, $3)
			RETURNING room_id, sender, message, sent_at
		)
		SELECT sent_at FROM m, LATERAL (SELECT pgpush.emit('room:' || m.room_id, 'receive-message',
			jsonb_build_object('type', 'receive-message', 'room_id', m.room_id, 'from', m.sender,
				'message', m.message, 'sent_at', extract(epoch FROM m.sent_at)::float8,
				'authenticated', $5::boolean), $4)) e`,
		room, sender, message, origin, authenticated).Scan(&sentAt)
	if err != nil {
		return time.Time{}, fmt.Errorf("send message to room %q: %w", room, err)
	}
	return sentAt, nil
}

// RecentRooms lists up to limit rooms that hold messages, the most
// recently active first, keeping only those keep accepts (the rooms the
// caller may join). Rooms are read as they are needed, so a caller who may
// join few rooms does not make it hold every room in memory.
func RecentRooms(ctx context.Context, q Querier, limit int, keep func(room string) bool) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT room_id FROM pgpush.room_messages
		GROUP BY room_id ORDER BY max(sent_at) DESC, room_id`)
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	defer rows.Close()
	rooms := []string{}
	for len(rooms) < limit && rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("list rooms: %w", err)
		}
		if keep(r) {
			rooms = append(rooms, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	return rooms, nil
}

// MaxPendingNotifications is how many undelivered notifications a channel
// keeps: sending one more drops the oldest (SPEC §4).
const MaxPendingNotifications = 100

// SendNotification records a notification frame for channel and emits it,
// in one statement; it stays pending until some socket receives it. Of
// the channel's pending notifications only the MaxPendingNotifications
// newest are kept, so a channel nobody joins cannot grow without bound.
func SendNotification(ctx context.Context, q Querier, channel string, frame json.RawMessage, origin string) (int64, error) {
	var id int64
	// The statement's parts see one snapshot: the DELETE does not see the
	// new row, so it keeps the newest MaxPendingNotifications-1 others.
	err := q.QueryRow(ctx, `
		WITH e AS (SELECT pgpush.emit($1, 'notification-received', $2::jsonb, $3) AS id),
		kept AS (
			INSERT INTO pgpush.notifications (event_id, channel, frame)
			SELECT id, $1, $2::jsonb FROM e RETURNING event_id
		),
		dropped AS (
			DELETE FROM pgpush.notifications WHERE event_id IN (
				SELECT event_id FROM pgpush.notifications
				WHERE channel = $1 AND delivered_at IS NULL
				ORDER BY event_id DESC OFFSET $4)
		)
		SELECT event_id FROM kept`, channel, string(frame), origin, MaxPendingNotifications-1).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("send notification on %q: %w", channel, err)
	}
	return id, nil
}

// PendingNotification is a notification no socket has received yet.
type PendingNotification struct {
	EventID int64
	Frame   json.RawMessage
}

// ClaimPendingNotifications marks as delivered, and returns in order, the
// channel's undelivered notifications younger than retention (at most
// limit) that visible accepts: the ones the joining socket may see. The
// others stay pending for a member who may. Each row is claimed by one
// conditional UPDATE, so two sockets joining at once never both get one.
func ClaimPendingNotifications(ctx context.Context, q Querier, channel string, retention time.Duration, limit int, visible func(frame json.RawMessage) bool) ([]PendingNotification, error) {
	rows, err := q.Query(ctx, `
		SELECT event_id, frame::text FROM pgpush.notifications
		WHERE channel = $1 AND delivered_at IS NULL AND sent_at > now() - $2::interval
		ORDER BY event_id LIMIT $3`, channel, retention, limit)
	if err != nil {
		return nil, fmt.Errorf("claim pending notifications of %q: %w", channel, err)
	}
	candidates, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (PendingNotification, error) {
		var p PendingNotification
		var f string
		err := row.Scan(&p.EventID, &f)
		p.Frame = json.RawMessage(f)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim pending notifications of %q: %w", channel, err)
	}
	var ids []int64
	frames := make(map[int64]json.RawMessage)
	for _, p := range candidates {
		if visible == nil || visible(p.Frame) {
			ids = append(ids, p.EventID)
			frames[p.EventID] = p.Frame
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err = q.Query(ctx, `
		UPDATE pgpush.notifications SET delivered_at = now()
		WHERE event_id IN (
			-- Rows another joiner is claiming right now are its own: skip
			-- them rather than wait for its transaction.
			SELECT event_id FROM pgpush.notifications
			WHERE event_id = ANY($1) AND delivered_at IS NULL
			FOR UPDATE SKIP LOCKED)
		RETURNING event_id`, ids)
	if err != nil {
		return nil, fmt.Errorf("claim pending notifications of %q: %w", channel, err)
	}
	claimed, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("claim pending notifications of %q: %w", channel, err)
	}
	slices.Sort(claimed)
	out := make([]PendingNotification, len(claimed))
	for i, id := range claimed {
		out[i] = PendingNotification{EventID: id, Frame: frames[id]}
	}
	return out, nil
}

// MarkNotificationsDelivered records that the notification events ids
// reached at least one member.
func MarkNotificationsDelivered(ctx context.Context, q Querier, ids []int64) error {
	if _, err := q.Exec(ctx, `UPDATE pgpush.notifications SET delivered_at = now() WHERE event_id = ANY($1) AND delivered_at IS NULL`, ids); err != nil {
		return fmt.Errorf("mark notifications delivered: %w", err)
	}
	return nil
}

// PruneNotifications drops notifications, delivered or not, past retention.
func PruneNotifications(ctx context.Context, q Querier, retention time.Duration) error {
	if _, err := q.Exec(ctx, `DELETE FROM pgpush.notifications WHERE sent_at < now() - $1::interval`, retention); err != nil {
		return fmt.Errorf("prune notifications: %w", err)
	}
	return nil
}

// PruneRoomMessages drops chat messages past retention, batchSize rows per
// statement so that no statement holds many locks or runs long, and
// returns how many it dropped.
func PruneRoomMessages(ctx context.Context, q Querier, retention time.Duration, batchSize int) (int64, error) {
	var total int64
	for {
		tag, err := q.Exec(ctx, `
			DELETE FROM pgpush.room_messages WHERE id IN (
				SELECT id FROM pgpush.room_messages WHERE sent_at < now() - $1::interval
				ORDER BY sent_at LIMIT $2)`, retention, batchSize)
		if err != nil {
			return total, fmt.Errorf("prune room messages: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batchSize) {
			return total, nil
		}
	}
}
