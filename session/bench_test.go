package session

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkPolicyAccess evaluates grants for a customer among many grants
// and watched channels, as every subscribe and re-authorization does. No
// database is touched: watched channels and grants are cached.
func BenchmarkPolicyAccess(b *testing.B) {
	p := NewPolicy(nil)
	for i := range 200 {
		p.watched[fmt.Sprintf("table%d_changes", i)] = true
		p.grants = append(p.grants, Grant{Channel: fmt.Sprintf("table%d_changes", i), Role: fmt.Sprintf("role%d", i)})
	}
	p.watched["order_changes"] = true
	p.grants = append(p.grants,
		Grant{Channel: "order_*", Role: "customer"},
		Grant{Channel: "order_changes", Role: "customer", Match: map[string]string{"customer_id": "customer_id"}})
	pr := &Principal{UserID: 7, Role: "customer", Attrs: map[string]string{"customer_id": "45"}, SessionID: "s"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		a, err := p.Access(ctx, pr, "order_changes")
		if err != nil || a.Match["customer_id"] != "45" {
			b.Fatalf("Access = %+v, %v", a, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
}
