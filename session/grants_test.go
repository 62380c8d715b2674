package session

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
)

// TestAccessDecidingGrant: a role's most specific grant decides; a
// logged-in user whose role holds none on a channel has role anonymous's
// rights there; --match takes the user's attributes. Only built-in and
// watched channels are asked for, so no database is needed.
func TestAccessDecidingGrant(t *testing.T) {
	t.Parallel()
	p := NewPolicy(nil)
	p.watched["order_changes"] = true
	p.grants = []Grant{
		{Channel: "room:*", Role: RoleAnonymous, Publish: true},
		{Channel: "notify:*", Role: RoleAnonymous, Publish: true},
		{Channel: "room:vip-*", Role: "customer"}, // read-only for customers
		{Channel: "order_changes", Role: "customer", Match: map[string]string{"customer_id": "customer_id"}},
	}
	anon := &Principal{Role: RoleAnonymous}
	ana := &Principal{UserID: 1, Role: "customer", SessionID: "s1", Attrs: map[string]string{"customer_id": "45"}}
	ops := &Principal{UserID: 2, Role: "ops", SessionID: "s2"}
	root := &Principal{UserID: 3, Role: RoleAdmin, SessionID: "s3"}
	tests := []struct {
		name    string
		who     *Principal
		channel string
		want    Access
		wantErr error
	}{
		{"anonymous in a room", anon, "room:general", Access{Publish: true}, nil},
		{"customer falls back to anonymous's room grant", ana, "room:general", Access{Publish: true}, nil},
		{"role without grants falls back too", ops, "notify:devops", Access{Publish: true}, nil},
		{"customer's own grant wins over anonymous's", ana, "room:vip-lounge", Access{}, nil},
		{"customer's match", ana, "order_changes", Access{Match: map[string]string{"customer_id": "45"}}, nil},
		{"no fallback where anonymous has nothing", ops, "order_changes", Access{}, ErrForbidden},
		{"anonymous on a table", anon, "order_changes", Access{}, ErrForbidden},
		{"admin", root, "order_changes", Access{Publish: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := p.Access(context.Background(), tt.who, tt.channel)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Access(%s, %s) error = %v, want %v", tt.who.Role, tt.channel, err, tt.wantErr)
			}
			if got.Publish != tt.want.Publish || !maps.Equal(got.Match, tt.want.Match) {
				t.Errorf("Access(%s, %s) = %+v, want %+v", tt.who.Role, tt.channel, got, tt.want)
			}
		})
	}

	visible := []struct {
		who  *Principal
		want []string
	}{
		{anon, []string{"notify:*", "room:*"}},
		{ana, []string{"notify:*", "order_changes", "room:*", "room:vip-*"}},
		{ops, []string{"notify:*", "room:*"}},
		// Without customer_id the customer could match no order: not listed.
		{&Principal{UserID: 4, Role: "customer", SessionID: "s4"}, []string{"notify:*", "room:*", "room:vip-*"}},
	}
	for _, tt := range visible {
		if got := p.VisibleChannels(tt.who); !slices.Equal(got, tt.want) {
			t.Errorf("VisibleChannels(%s %v) = %v, want %v", tt.who.Role, tt.who.Attrs, got, tt.want)
		}
	}
}
