package filter

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// benchRow is a typical order row as it comes out of pgpush.events: 12
// fields, changed_fields included, keys in jsonb's order.
const benchRow = `{"id":123,"total":99.99,"status":"processing","currency":"USD","subtotal":89.90,` +
	`"created_at":"2026-01-25T10:30:00.000Z","updated_at":"2026-01-25T10:31:12.345Z","customer_id":45,` +
	`"order_number":"ORD-1234567890","changed_fields":{"status":"processing","payment_status":"paid"},` +
	`"payment_status":"paid","shipping_address_id":null}`

// BenchmarkDecode: once per event, so its cost is the index's floor.
func BenchmarkDecode(b *testing.B) {
	big := `{"id":1,"customer_id":45,"body":"` + strings.Repeat("lorem ipsum ", 1<<20/12) + `"}`
	for _, bc := range []struct{ name, row string }{{"order", benchRow}, {"1MB", big}} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte(bc.row)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if Decode(data).get("customer_id").kind != kindNumber {
					b.Fatal("customer_id not decoded")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkMatch: a grant and a four-condition filter on a decoded row.
func BenchmarkMatch(b *testing.B) {
	f := And(MatchAttrs(map[string]string{"customer_id": "45"}), mustCompile(b,
		`{"status":{"in":["processing","shipped"]},"total":{"gte":10,"lt":1000},"currency":"USD"}`))
	fields := Decode([]byte(benchRow))
	b.ReportAllocs()
	for b.Loop() {
		if !f.Match(fields) {
			b.Fatal("no match")
		}
	}
}

// BenchmarkIndex: n users each watching their own rows (a grant's
// --match customer_id=customer_id), one event for a random customer:
// decode, candidates, match. ns/event must stay flat as n grows; "scan"
// tries every subscription, as the hub did before, for comparison.
func BenchmarkIndex(b *testing.B) {
	for _, n := range []int{100, 10000} {
		var ix Index[int]
		filters := make([]*Filter, n)
		for i := range n {
			filters[i] = MatchAttrs(map[string]string{"customer_id": strconv.Itoa(i)})
			ix.Add(i, filters[i])
		}
		r := rand.New(rand.NewPCG(1, 2))
		events := make([][]byte, 1024)
		for i := range events {
			events[i] = []byte(strings.Replace(benchRow, `"customer_id":45`, fmt.Sprintf(`"customer_id":%d`, r.IntN(n)), 1))
		}
		b.Run(fmt.Sprintf("indexed/subs=%d", n), func(b *testing.B) {
			delivered, i := 0, 0
			for b.Loop() {
				fields := Decode(events[i%len(events)])
				ix.Candidates(fields, func(s int) bool {
					if filters[s].Match(fields) {
						delivered++
					}
					return true
				})
				i++
			}
			reportPerEvent(b, i, delivered)
		})
		b.Run(fmt.Sprintf("scan/subs=%d", n), func(b *testing.B) {
			delivered, i := 0, 0
			for b.Loop() {
				fields := Decode(events[i%len(events)])
				for _, f := range filters {
					if f.Match(fields) {
						delivered++
					}
				}
				i++
			}
			reportPerEvent(b, i, delivered)
		})
	}
}

func reportPerEvent(b *testing.B, events, delivered int) {
	if delivered != events {
		b.Fatalf("%d deliveries for %d events, want one each", delivered, events)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
}
