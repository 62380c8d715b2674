package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/triggers"
)

// Roles with a meaning of their own.
const (
	RoleAdmin     = "admin"     // sees and publishes on every channel
	RoleAnonymous = "anonymous" // sockets without a session
)

// Grant lets a role subscribe to (and maybe publish on) channels matching
// Channel, which may end in '*'. Match maps an event data field to the
// user attribute it must equal.
type Grant struct {
	Channel string            `json:"channel"`
	Role    string            `json:"role"`
	Publish bool              `json:"publish"`
	Match   map[string]string `json:"match,omitempty"`
}

// ErrGrantNotFound is returned by RevokeGrant when there was nothing to revoke.
var ErrGrantNotFound = errors.New("no such grant")

// ParseMatch parses --match FIELD=ATTR.
func ParseMatch(s string) (field, attr string, err error) {
	field, attr, ok := strings.Cut(s, "=")
	if !ok || !db.ValidName(field) || !db.ValidName(attr) {
		return "", "", fmt.Errorf("invalid --match %q: want FIELD=ATTRIBUTE (letters, digits, _ . -)", s)
	}
	return field, attr, nil
}

// PatternMatches reports whether channel falls under pattern: equal, or
// pattern ends in '*' and channel starts with what comes before it.
func PatternMatches(pattern, channel string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(channel, prefix)
	}
	return pattern == channel
}

// AddGrant creates or replaces the grant for (g.Channel, g.Role) and tells
// running instances to reload.
func AddGrant(ctx context.Context, q db.Querier, g Grant) error {
	if !db.ValidChannelPattern(g.Channel) {
		return fmt.Errorf("invalid channel %q: use letters, digits, _ . : - and an optional trailing *", g.Channel)
	}
	if err := ValidateRole(g.Role); err != nil {
		return err
	}
	match := g.Match
	if match == nil {
		match = map[string]string{}
	}
	_, err := q.Exec(ctx, `
		WITH upsert AS (
			INSERT INTO pgpush.grants (channel, role, can_publish, match) VALUES ($1, $2, $3, $4)
			ON CONFLICT (channel, role) DO UPDATE SET can_publish = EXCLUDED.can_publish, match = EXCLUDED.match
		)
		SELECT pg_notify($5, $6)`, g.Channel, g.Role, g.Publish, match, db.ControlChannel, db.ReloadPayload)
	if err != nil {
		return fmt.Errorf("grant %q to %q: %w", g.Channel, g.Role, err)
	}
	return nil
}

// RevokeGrant removes the grant; open subscriptions it allowed end on
// every instance.
func RevokeGrant(ctx context.Context, q db.Querier, channel, role string) error {
	var n int
	err := q.QueryRow(ctx, `
		WITH gone AS (DELETE FROM pgpush.grants WHERE channel = $1 AND role = $2 RETURNING 1)
		SELECT count(*), pg_notify($3, $4)::text FROM gone`, channel, role, db.ControlChannel, db.ReloadPayload).Scan(&n, new(string))
	if err != nil {
		return fmt.Errorf("revoke %q from %q: %w", channel, role, err)
	}
	if n == 0 {
		return fmt.Errorf("revoke %q from %q: %w", channel, role, ErrGrantNotFound)
	}
	return nil
}

// ListGrants returns all grants ordered by channel and role.
func ListGrants(ctx context.Context, q db.Querier) ([]Grant, error) {
	rows, err := q.Query(ctx, `SELECT channel, role, can_publish, match FROM pgpush.grants ORDER BY channel, role`)
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	grants, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Grant])
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	return grants, nil
}

// Policy answers who may do what, from grants and watched tables cached in
// memory. Reload refreshes the cache; instances call it when the control
// channel says "reload".
type Policy struct {
	q db.Querier

	mu      sync.RWMutex
	grants  []Grant
	watched map[string]bool
	known   map[string]bool // custom channels seen in the event log
}

// NewPolicy makes a policy; call Reload before use.
func NewPolicy(q db.Querier) *Policy {
	return &Policy{q: q, watched: map[string]bool{}, known: map[string]bool{}}
}

// Reload reads grants and watched channels again.
func (p *Policy) Reload(ctx context.Context) error {
	grants, err := ListGrants(ctx, p.q)
	if err != nil {
		return err
	}
	tables, err := triggers.List(ctx, p.q)
	if err != nil {
		return err
	}
	watched := make(map[string]bool, len(tables))
	for _, t := range tables {
		watched[t.Channel] = true
	}
	p.mu.Lock()
	p.grants = grants
	p.watched = watched
	p.mu.Unlock()
	return nil
}

// AnonymousAllowed reports whether role anonymous holds any grant, which
// is what lets a socket without a session stay open.
func (p *Policy) AnonymousAllowed() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.ContainsFunc(p.grants, func(g Grant) bool { return g.Role == RoleAnonymous })
}

// Access is what realtime consults on subscribe, on publish and when
// grants change.
func (p *Policy) Access(ctx context.Context, pr *Principal, channel string) (Access, error) {
	if !db.ValidChannel(channel) && channel != db.NotifyEveryoneChannel {
		return Access{}, ErrUnknownChannel
	}
	p.mu.RLock()
	known := p.watched[channel] || p.known[channel] || db.BuiltinChannel(channel)
	best, granted := p.decidingGrantLocked(pr, channel)
	p.mu.RUnlock()

	if !known && !granted {
		seen, err := db.ChannelHasEvents(ctx, p.q, channel)
		if err != nil {
			return Access{}, err
		}
		if !seen {
			return Access{}, ErrUnknownChannel
		}
		p.mu.Lock()
		p.known[channel] = true
		p.mu.Unlock()
	}
	return resolve(pr, best)
}

// bestGrantLocked returns the grant that decides role's rights on channel,
// the most specific of role's grants matching it (nil: none), and whether
// any grant of any role matches channel, which makes it a known channel.
// Callers hold p.mu.
func (p *Policy) bestGrantLocked(role, channel string) (best *Grant, anyGrant bool) {
	for i := range p.grants {
		g := &p.grants[i]
		if !PatternMatches(g.Channel, channel) {
			continue
		}
		anyGrant = true
		if g.Role == role && (best == nil || moreSpecific(g.Channel, best.Channel)) {
			best = g
		}
	}
	return best, anyGrant
}

// decidingGrantLocked returns the grant that decides pr's rights on
// channel: its role's most specific one, or, for a logged-in user whose
// role holds none there, role anonymous's. What a socket without a session
// may do, a logged-in user may do too, unless the operator gave the role a
// grant of its own there (the demo grants rooms and notifications to
// anonymous only, and a logged-in customer could join no room). anyGrant
// is as for bestGrantLocked. Callers hold p.mu.
func (p *Policy) decidingGrantLocked(pr *Principal, channel string) (best *Grant, anyGrant bool) {
	best, anyGrant = p.bestGrantLocked(pr.Role, channel)
	if best == nil && pr.Role != RoleAnonymous && pr.Role != RoleAdmin {
		best, _ = p.bestGrantLocked(RoleAnonymous, channel)
	}
	return best, anyGrant
}

// resolve turns the deciding grant into pr's Access: admin may do
// anything, no grant is ErrForbidden, and --match rules take their values
// from pr's attributes.
func resolve(pr *Principal, best *Grant) (Access, error) {
	if pr.Role == RoleAdmin {
		return Access{Publish: true}, nil
	}
	if best == nil {
		return Access{}, ErrForbidden
	}
	access := Access{Publish: best.Publish}
	if len(best.Match) > 0 {
		access.Match = make(map[string]string, len(best.Match))
		for field, attr := range best.Match {
			v, ok := pr.Attrs[attr]
			if !ok {
				// Without the attribute the user could only ever match
				// nothing; say so rather than subscribe to silence.
				return Access{}, fmt.Errorf("attribute %q missing: %w", attr, ErrForbidden)
			}
			access.Match[field] = v
		}
	}
	return access, nil
}

// VisibleChannels lists the channels known by name that a principal may
// subscribe to: watched tables and the names of grants (a pattern such as
// "room:*" is listed as is, meaning any room). Each is listed only when
// Access would allow it, so a grant whose --match needs an attribute the
// user lacks lists nothing.
func (p *Policy) VisibleChannels(pr *Principal) []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []string
	add := func(ch string) {
		if slices.Contains(out, ch) {
			return
		}
		best, _ := p.decidingGrantLocked(pr, ch)
		if _, err := resolve(pr, best); err == nil {
			out = append(out, ch)
		}
	}
	for ch := range p.watched {
		add(ch)
	}
	for _, g := range p.grants {
		// add decides whether an anonymous grant applies to pr.
		if pr.Role == RoleAdmin || g.Role == pr.Role || g.Role == RoleAnonymous {
			add(g.Channel)
		}
	}
	slices.Sort(out)
	return out
}

// moreSpecific prefers an exact name, then the longer prefix.
func moreSpecific(a, b string) bool {
	aWild, bWild := strings.HasSuffix(a, "*"), strings.HasSuffix(b, "*")
	if aWild != bWild {
		return !aWild
	}
	return len(a) > len(b)
}
