package db_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
)

func TestAnnounce(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	frame := json.RawMessage(`{"type":"join-room","room_id":"r1","from":"Will"}`)
	if err := db.Announce(ctx, pool, "room:r1", "join-room", frame, "i1:7"); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	rows := eventsAfter(t, ctx, pool, 0, 0, 10)
	if len(rows) != 1 {
		t.Fatalf("EventsAfter = %d rows, want 1", len(rows))
	}
	if r := rows[0]; r.Channel != "room:r1" || r.Event != "join-room" || r.Origin != "i1:7" || !jsonEqual(t, r.Data, frame) {
		t.Errorf("event = %+v data %s, want join-room on room:r1 from i1:7 with data %s", r, r.Data, frame)
	}
}

// roomFrame is the receive-message frame SendRoomMessage emits.
type roomFrame struct {
	Type    string  `json:"type"`
	RoomID  string  `json:"room_id"`
	From    string  `json:"from"`
	Message string  `json:"message"`
	SentAt  float64 `json:"sent_at"`
}

func TestSendRoomMessage(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	sentAt, err := db.SendRoomMessage(ctx, pool, "general", "Will", "hi \"all\"", "i1:7", false)
	if err != nil {
		t.Fatalf("SendRoomMessage: %v", err)
	}
	var stored time.Time
	var sender, message string
	if err := pool.QueryRow(ctx, `SELECT sender, message, sent_at FROM pgpush.room_messages WHERE room_id = 'general'`).Scan(&sender, &message, &stored); err != nil {
		t.Fatalf("read stored message: %v", err)
	}
	if sender != "Will" || message != `hi "all"` || !stored.Equal(sentAt) {
		t.Errorf("stored (%q, %q, %v), want (Will, hi \"all\", %v)", sender, message, stored, sentAt)
	}

	rows := eventsAfter(t, ctx, pool, 0, 0, 10)
	if len(rows) != 1 {
		t.Fatalf("EventsAfter = %d rows, want 1", len(rows))
	}
	r := rows[0]
	if r.Channel != "room:general" || r.Event != "receive-message" || r.Origin != "i1:7" {
		t.Errorf("event = %+v, want receive-message on room:general from i1:7", r)
	}
	var got roomFrame
	if err := json.Unmarshal(r.Data, &got); err != nil {
		t.Fatalf("frame %s: %v", r.Data, err)
	}
	want := roomFrame{Type: "receive-message", RoomID: "general", From: "Will", Message: `hi "all"`}
	wantSentAt := float64(sentAt.UnixMicro()) / 1e6
	if diff := math.Abs(got.SentAt - wantSentAt); diff > 1e-3 {
		t.Errorf("frame sent_at = %f, want %f (unix seconds of the stored sent_at)", got.SentAt, wantSentAt)
	}
	got.SentAt = 0
	if got != want {
		t.Errorf("frame = %+v, want %+v", got, want)
	}
}

// TestChatWritesAreAtomic: a stored message or notification and its
// event share the caller's transaction, so a rollback takes back both.
func TestChatWritesAreAtomic(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	tx := begin(t, ctx, pool)
	if _, err := db.SendRoomMessage(ctx, tx, "general", "Will", "hi", "", false); err != nil {
		t.Fatal(err)
	}
	sendNotification(t, ctx, tx, "notify:devops", 1)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"pgpush.room_messages", "pgpush.notifications", "pgpush.events"} {
		if n := count(t, ctx, pool, `SELECT count(*) FROM `+table); n != 0 {
			t.Errorf("%d rows in %s after rollback, want 0", n, table)
		}
	}
}

func TestRooms(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	rooms, err := db.RecentRooms(ctx, pool, 1000, func(string) bool { return true })
	// Not nil: GET /rooms answers {"rooms":[]}, not null.
	if err != nil || rooms == nil || len(rooms) != 0 {
		t.Fatalf("RecentRooms of an empty database = %#v, %v, want []string{}", rooms, err)
	}
	for _, room := range []string{"b", "a", "b", "c d"} {
		if _, err := db.SendRoomMessage(ctx, pool, room, "Will", "hi", "", false); err != nil {
			t.Fatal(err)
		}
	}
	// Announcements alone do not make a room.
	if err := db.Announce(ctx, pool, "room:e", "join-room", json.RawMessage(`{}`), ""); err != nil {
		t.Fatal(err)
	}
	rooms, err = db.RecentRooms(ctx, pool, 1000, func(string) bool { return true })
	if want := []string{"c d", "b", "a"}; err != nil || !slices.Equal(rooms, want) { // most recently active first
		t.Fatalf("RecentRooms = %q, %v, want %q", rooms, err, want)
	}
}

// sendNotification sends notification n on channel and returns its id.
func sendNotification(t *testing.T, ctx context.Context, q db.Querier, channel string, n int) int64 {
	t.Helper()
	id, err := db.SendNotification(ctx, q, channel, notificationFrame(n), "i1:7")
	if err != nil {
		t.Fatalf("SendNotification(%q): %v", channel, err)
	}
	return id
}

func notificationFrame(n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"type":"notification-received","data":{"n":%d}}`, n))
}

func claim(t *testing.T, ctx context.Context, q db.Querier, channel string, limit int) []db.PendingNotification {
	t.Helper()
	got, err := db.ClaimPendingNotifications(ctx, q, channel, retention, limit, nil)
	if err != nil {
		t.Fatalf("ClaimPendingNotifications(%q): %v", channel, err)
	}
	return got
}

func pendingIDs(ps []db.PendingNotification) []int64 {
	out := []int64{}
	for _, p := range ps {
		out = append(out, p.EventID)
	}
	return out
}

// ageNotifications makes notifications look older than they are.
func ageNotifications(t *testing.T, ctx context.Context, q db.Querier, by time.Duration, ids ...int64) {
	t.Helper()
	if n := exec(t, ctx, q, `UPDATE pgpush.notifications SET sent_at = sent_at - $1::interval WHERE event_id = ANY($2)`, by, ids); n != int64(len(ids)) {
		t.Fatalf("aged %d notifications, want %d", n, len(ids))
	}
}

func TestSendNotification(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	id := sendNotification(t, ctx, pool, "notify:devops", 1)
	rows := eventsAfter(t, ctx, pool, 0, 0, 10)
	if len(rows) != 1 {
		t.Fatalf("EventsAfter = %d rows, want 1", len(rows))
	}
	// The notification's id is its event's id: a member that got the
	// event live marks the same id delivered.
	if r := rows[0]; r.ID != id || r.Channel != "notify:devops" || r.Event != "notification-received" || r.Origin != "i1:7" || !jsonEqual(t, r.Data, notificationFrame(1)) {
		t.Errorf("event = %+v data %s, want id %d, notification-received on notify:devops from i1:7 with data %s", r, r.Data, id, notificationFrame(1))
	}
	got := claim(t, ctx, pool, "notify:devops", 10)
	if len(got) != 1 || got[0].EventID != id || !jsonEqual(t, got[0].Frame, notificationFrame(1)) {
		t.Errorf("claimed %+v, want event %d with frame %s", got, id, notificationFrame(1))
	}
}

// TestClaimPendingNotifications: its subtests share a database, as claims
// only touch their own channel.
func TestClaimPendingNotifications(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	t.Run("steps", func(t *testing.T) {
		t.Parallel()
		claimSteps(t, ctx, pool)
	})
	t.Run("concurrently", func(t *testing.T) {
		t.Parallel()
		claimConcurrently(t, ctx, pool)
	})
}

func claimSteps(t *testing.T, ctx context.Context, pool *pgxpool.Pool) {
	var a []int64
	for i := range 5 {
		a = append(a, sendNotification(t, ctx, pool, "notify:a", i))
	}
	b := sendNotification(t, ctx, pool, "notify:b", 9)
	expired := sendNotification(t, ctx, pool, "notify:c", 0)
	ageNotifications(t, ctx, pool, past, expired)
	c := sendNotification(t, ctx, pool, "notify:c", 1)

	// Each step runs on the state the previous ones left.
	steps := []struct {
		name    string
		channel string
		limit   int
		want    []int64
	}{
		{"up to the limit, in order", "notify:a", 2, a[:2]},
		{"the rest", "notify:a", 10, a[2:]},
		{"claimed once", "notify:a", 10, []int64{}},
		{"other channel untouched", "notify:b", 10, []int64{b}},
		{"not past the retention", "notify:c", 10, []int64{c}},
		{"unknown channel", "notify:none", 10, []int64{}},
	}
	for _, st := range steps {
		got := claim(t, ctx, pool, st.channel, st.limit)
		if !slices.Equal(pendingIDs(got), st.want) {
			t.Fatalf("%s: ClaimPendingNotifications(%q, %d) = %v, want %v", st.name, st.channel, st.limit, pendingIDs(got), st.want)
		}
	}
	if n := count(t, ctx, pool, `SELECT count(*) FROM pgpush.notifications WHERE delivered_at IS NULL AND channel LIKE 'notify:_'`); n != 1 {
		t.Errorf("%d notifications undelivered, want 1 (the expired one)", n)
	}
}

// claimConcurrently: two sockets joining at once never both get a
// notification; one that claimed and then failed (its transaction rolled
// back) leaves them for the next.
func claimConcurrently(t *testing.T, ctx context.Context, pool *pgxpool.Pool) {
	want := []int64{sendNotification(t, ctx, pool, "notify:concurrent", 1), sendNotification(t, ctx, pool, "notify:concurrent", 2)}

	first := begin(t, ctx, pool)
	if got := pendingIDs(claim(t, ctx, first, "notify:concurrent", 10)); !slices.Equal(got, want) {
		t.Fatalf("first claim = %v, want %v", got, want)
	}
	// The rows are locked by the first claim's open transaction: the second
	// skips them rather than waiting (ctx's deadline would fail it).
	if got := pendingIDs(claim(t, ctx, pool, "notify:concurrent", 10)); len(got) != 0 {
		t.Fatalf("concurrent claim = %v, want nothing", got)
	}
	if err := first.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	second := begin(t, ctx, pool)
	if got := pendingIDs(claim(t, ctx, second, "notify:concurrent", 10)); !slices.Equal(got, want) {
		t.Fatalf("claim after rollback = %v, want %v", got, want)
	}
	commit(t, ctx, second)
	if got := pendingIDs(claim(t, ctx, pool, "notify:concurrent", 10)); len(got) != 0 {
		t.Fatalf("claim after commit = %v, want nothing", got)
	}
}

func TestMarkNotificationsDelivered(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	var ids []int64
	for i := range 3 {
		ids = append(ids, sendNotification(t, ctx, pool, "notify:a", i))
	}
	deliveredAt := func(id int64) *time.Time {
		t.Helper()
		var at *time.Time
		if err := pool.QueryRow(ctx, `SELECT delivered_at FROM pgpush.notifications WHERE event_id = $1`, id).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}

	for _, batch := range [][]int64{nil, {}, {ids[0] + 1000}} {
		if err := db.MarkNotificationsDelivered(ctx, pool, batch); err != nil {
			t.Errorf("MarkNotificationsDelivered(%v): %v", batch, err)
		}
	}
	if err := db.MarkNotificationsDelivered(ctx, pool, []int64{ids[0], ids[2]}); err != nil {
		t.Fatal(err)
	}
	first := deliveredAt(ids[0])
	if first == nil {
		t.Fatalf("delivered_at of %d = NULL after marking", ids[0])
	}
	if got, want := pendingIDs(claim(t, ctx, pool, "notify:a", 10)), []int64{ids[1]}; !slices.Equal(got, want) {
		t.Errorf("claimed after marking = %v, want %v", got, want)
	}
	// Marking again keeps the first delivery time; now() of a later
	// transaction would differ.
	if err := db.MarkNotificationsDelivered(ctx, pool, ids); err != nil {
		t.Fatal(err)
	}
	if again := deliveredAt(ids[0]); again == nil || !again.Equal(*first) {
		t.Errorf("delivered_at of %d = %v after marking again, want %v", ids[0], again, *first)
	}
}

// TestPruneNotifications: notifications and room messages past the
// retention go, delivered or not (room messages in batches).
func TestPruneNotifications(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t)
	old := sendNotification(t, ctx, pool, "notify:a", 1)
	oldDelivered := sendNotification(t, ctx, pool, "notify:a", 2)
	fresh := sendNotification(t, ctx, pool, "notify:a", 3)
	if err := db.MarkNotificationsDelivered(ctx, pool, []int64{oldDelivered}); err != nil {
		t.Fatal(err)
	}
	ageNotifications(t, ctx, pool, past, old, oldDelivered)
	for _, room := range []string{"old", "mixed", "mixed", "fresh"} {
		if _, err := db.SendRoomMessage(ctx, pool, room, "Will", "hi", "", false); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, ctx, pool, `
		UPDATE pgpush.room_messages SET sent_at = sent_at - $1::interval
		WHERE id IN (SELECT min(id) FROM pgpush.room_messages WHERE room_id IN ('old', 'mixed') GROUP BY room_id)`, past)

	if err := db.PruneNotifications(ctx, pool, retention); err != nil {
		t.Fatalf("PruneNotifications: %v", err)
	}
	if n, err := db.PruneRoomMessages(ctx, pool, retention, 1); err != nil || n != 2 {
		t.Fatalf("PruneRoomMessages = %d, %v; want 2 (one batch at a time)", n, err)
	}
	var left []int64
	rows, err := pool.Query(ctx, `SELECT event_id FROM pgpush.notifications ORDER BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	left, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{fresh}; !slices.Equal(left, want) {
		t.Errorf("notifications left = %v, want %v", left, want)
	}
	if n := count(t, ctx, pool, `SELECT count(*) FROM pgpush.room_messages`); n != 2 {
		t.Errorf("room messages left = %d, want 2 (mixed's newer one and fresh's)", n)
	}
	if rooms, err := db.RecentRooms(ctx, pool, 1000, func(string) bool { return true }); err != nil || !slices.Equal(rooms, []string{"fresh", "mixed"}) {
		t.Errorf("RecentRooms = %q, %v, want [fresh mixed]", rooms, err)
	}
	if err := db.PruneNotifications(ctx, pool, retention); err != nil {
		t.Errorf("PruneNotifications again: %v", err)
	}
}

// TestChatErrorsWrap: each function wraps its query's error with %w, so
// that callers can tell a shutdown (context.Canceled) from a failure.
func TestChatErrorsWrap(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	// No database: the pool connects lazily, and a cancelled query never
	// gets that far.
	pool, err := pgxpool.New(ctx, "postgres://u@h/d")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	tests := []struct {
		name string
		call func() error
	}{
		{"Announce", func() error { return db.Announce(ctx, pool, "c", "e", json.RawMessage(`{}`), "") }},
		{"SendRoomMessage", func() error { _, err := db.SendRoomMessage(ctx, pool, "r", "s", "m", "", false); return err }},
		{"Rooms", func() error { _, err := db.RecentRooms(ctx, pool, 1000, func(string) bool { return true }); return err }},
		{"SendNotification", func() error { _, err := db.SendNotification(ctx, pool, "c", json.RawMessage(`{}`), ""); return err }},
		{"ClaimPendingNotifications", func() error { _, err := db.ClaimPendingNotifications(ctx, pool, "c", retention, 1, nil); return err }},
		{"MarkNotificationsDelivered", func() error { return db.MarkNotificationsDelivered(ctx, pool, []int64{1}) }},
		{"PruneNotifications", func() error { return db.PruneNotifications(ctx, pool, retention) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.call(); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a cancelled context = %v, want context.Canceled", tt.name, err)
			}
		})
	}
}
