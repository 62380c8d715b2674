package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/realtime/filter"
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
		_ = ev.encoded()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// subscribeBench subscribes n sockets on fake transports to
// order_changes; each socket i is customer i.
func subscribeBench(b *testing.B, hub *Hub, n int) []*Client {
	b.Helper()
	clients := make([]*Client, n)
	for i := range clients {
		p := &session.Principal{UserID: int64(i + 1), SessionID: "s", Attrs: map[string]string{"customer_id": strconv.Itoa(i)}}
		c := hub.newClient(p, newFakeTransport(), wireWS)
		s, _, _, err := c.addSub(context.Background(), "order_changes", nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		s.activate()
		clients[i] = c
	}
	return clients
}

// BenchmarkDispatch fans one event out to N subscribers that all see it,
// and reports the allocations per delivery (the frame is encoded once per
// event, so this is the queue's share only) and deliveries per second.
// Queues are drained as a writer would, outside the timing's hot loop.
func BenchmarkDispatch(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			grants := newGrantTable()
			grants.set("order_changes", session.Access{})
			hub := NewHub(Options{QueueMessages: 1 << 20, QueueBytes: 1 << 30}, grants, nil, discard())
			clients := subscribeBench(b, hub, n)
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
						c.t.(*fakeTransport).take()
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

// BenchmarkDispatchPerUser is the shop of issue 14: N customers each see
// only their own orders (grant --match customer_id=customer_id), and each
// event is one random customer's. Time per event must not grow with N.
func BenchmarkDispatchPerUser(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			grants := newGrantTable()
			grants.set("order_changes", session.Access{Match: map[string]string{"customer_id": "customer_id"}})
			hub := NewHub(Options{QueueMessages: 1 << 20, QueueBytes: 1 << 30}, grants, nil, discard())
			clients := subscribeBench(b, hub, n)
			rows := make([]db.EventRow, 1024)
			for i := range rows {
				rows[i] = benchRow
				rows[i].Data = []byte(strings.Replace(string(benchRow.Data), `"customer_id":45`, `"customer_id":`+strconv.Itoa(rand.IntN(n)), 1))
			}
			var seq int64
			for b.Loop() {
				row := rows[seq%int64(len(rows))]
				seq++
				row.Seq, row.ID = seq, seq
				hub.Dispatch([]*Event{EventFromRow(row)})
				if seq%1024 == 0 {
					for _, c := range clients {
						c.t.(*fakeTransport).take()
					}
				}
			}
			if got := hub.Stats().Delivered.Load(); got != seq {
				b.Fatalf("delivered %d of %d events: each must reach exactly its customer", got, seq)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(seq), "ns/event")
		})
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
		ev := &Event{Channel: db.NotifyEveryoneChannel, Name: notificationEvent, Data: frame}
		rule := filter.MatchAttrs(match)
		for range sockets {
			if !rule.Match(ev.fields()) {
				b.Fatal("no match")
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sockets), "ns/socket")
}
