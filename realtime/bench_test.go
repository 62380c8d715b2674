package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/session"
)

// allowAll is an Authorizer for benchmarks: every channel, no match rule.
type allowAll struct{}

func (allowAll) Access(context.Context, *session.Principal, string) (session.Access, error) {
	return session.Access{}, nil
}

var benchRow = db.EventRow{
	Seq: 1, ID: 1842, Channel: "order_changes", Event: "order:updated",
	Data:      []byte(`{"id":123,"order_number":"ORD-1234567890","status":"processing","payment_status":"paid","total":99.99,"customer_id":45,"currency":"USD","changed_fields":{"status":"processing","payment_status":"paid"}}`),
	CreatedAt: time.Date(2026, 1, 25, 10, 30, 0, 0, time.UTC),
}

// BenchmarkDecodeEvent: a row of the event log to the frame sent to
// subscribers (the listener's work per event).
func BenchmarkDecodeEvent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ev := EventFromRow(benchRow)
		_ = ev.Encoded()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDispatch fans one event out to N subscribers and reports the
// allocations per subscriber (the frame is encoded once per event, so this
// is the queue's share only) and deliveries per second. Queues are drained
// as a write pump would, outside the timing's hot loop.
func BenchmarkDispatch(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			hub := NewHub(Options{QueueMessages: 1 << 20, QueueBytes: 1 << 30}, allowAll{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			clients := make([]*Client, n)
			for i := range clients {
				c := hub.newClient(&session.Principal{UserID: int64(i + 1), SessionID: "s"}, false)
				s := newSubscription(c, "order_changes", session.Access{})
				s.pending = false
				c.subs["order_changes"] = s
				hub.addSubscription(s)
				clients[i] = c
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var seq int64
			for b.Loop() {
				seq++
				row := benchRow
				row.Seq, row.ID = seq, seq
				hub.Dispatch([]*Event{EventFromRow(row)})
				if seq%64 == 0 {
					for _, c := range clients {
						c.queue.drain(nil)
					}
				}
			}
			runtime.ReadMemStats(&after)
			deliveries := float64(b.N) * float64(n)
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
			b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkMatchAndFilter: a grant's match rule plus a client filter,
// evaluated on a fresh event (the first evaluation decodes data once).
func BenchmarkMatchAndFilter(b *testing.B) {
	s := &subscription{filter: map[string]json.RawMessage{"status": json.RawMessage(`"processing"`)}}
	access := session.Access{Match: map[string]string{"customer_id": "45"}}
	b.ReportAllocs()
	for b.Loop() {
		ev := EventFromRow(benchRow)
		if !s.visible(ev, access) {
			b.Fatal("event not visible")
		}
	}
}

// BenchmarkNotificationMatch: one notification to everyone, with 16 KiB
// of data, checked against the --match rule of 1,000 sockets, as Dispatch
// does for each of them.
func BenchmarkNotificationMatch(b *testing.B) {
	const sockets = 1000
	data := fmt.Sprintf(`{"customer_id":45,"pad":"%0*d"}`, 16<<10-40, 0)
	frame := json.RawMessage(`{"type":"notification-received","data":{"id":"x","title":"t","message":"m","data":` + data + `}}`)
	match := map[string]string{"customer_id": "45"}
	b.ReportAllocs()
	for b.Loop() {
		ev := &Event{Channel: db.NotifyEveryoneChannel, Name: NotificationEvent, Data: frame}
		for range sockets {
			if !matchVisible(ev, match) {
				b.Fatal("no match")
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sockets), "ns/socket")
}
