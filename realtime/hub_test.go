package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/triggers"
)

// Hub tests run without PostgreSQL or sockets: a fake transport stands for
// each socket, a map of grants for the policy and a slice for the log.

// grantTable is an Authorizer whose answers a test changes at will.
type grantTable struct {
	mu     sync.Mutex
	access map[string]session.Access // by channel; absent: forbidden
}

func newGrantTable() *grantTable { return &grantTable{access: map[string]session.Access{}} }

func (g *grantTable) set(channel string, a session.Access) {
	g.mu.Lock()
	g.access[channel] = a
	g.mu.Unlock()
}

func (g *grantTable) revoke(channel string) {
	g.mu.Lock()
	delete(g.access, channel)
	g.mu.Unlock()
}

func (g *grantTable) Access(_ context.Context, p *session.Principal, channel string) (session.Access, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.access[channel]
	if !ok {
		return session.Access{}, session.ErrForbidden
	}
	// Match values name user attributes, as a grant's --match does.
	if len(a.Match) > 0 {
		resolved := map[string]string{}
		for field, attr := range a.Match {
			resolved[field] = p.Attrs[attr]
		}
		a.Match = resolved
	}
	return a, nil
}

// memoryLog is an EventStore over a slice; Replay pauses before its first
// event until release is closed, when set, so a test can dispatch live
// events while a subscription replays.
type memoryLog struct {
	mu      sync.Mutex
	events  []*Event
	release chan struct{}
}

func (m *memoryLog) add(ev *Event) {
	m.mu.Lock()
	m.events = append(m.events, ev)
	m.mu.Unlock()
}

func (m *memoryLog) PositionOf(_ context.Context, id int64) (Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range m.events {
		if ev.Pos.ID == id {
			return ev.Pos, nil
		}
	}
	return Position{}, ErrResyncRequired
}

func (m *memoryLog) Replay(ctx context.Context, channels []string, from, to Position, fn func(*Event) error) error {
	if m.release != nil {
		select {
		case <-m.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	events := slices.Clone(m.events)
	m.mu.Unlock()
	for _, ev := range events {
		if slices.Contains(channels, ev.Channel) && ev.Pos.After(from) && !ev.Pos.After(to) {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memoryLog) Publish(context.Context, string, string, json.RawMessage) (int64, error) {
	return 0, fmt.Errorf("not in hub tests")
}

func (m *memoryLog) Announce(context.Context, string, string, json.RawMessage, string) error {
	return fmt.Errorf("not in hub tests")
}

func (m *memoryLog) SendRoomMessage(context.Context, string, string, string, string, bool) error {
	return fmt.Errorf("not in hub tests")
}

func (m *memoryLog) SendNotification(context.Context, string, json.RawMessage, string) (int64, error) {
	return 0, fmt.Errorf("not in hub tests")
}

func (m *memoryLog) Snapshot(context.Context, string, []triggers.Equal, func(func(func(json.RawMessage) error) error) error) (string, error) {
	return "", triggers.ErrNoTable
}

func (m *memoryLog) ClaimPending(context.Context, string, time.Duration, func(json.RawMessage) bool) ([]db.PendingNotification, error) {
	return nil, nil
}

type hubBundle struct {
	hub    *Hub
	grants *grantTable
	log    *memoryLog
	seq    int64
}

func setupHub(t *testing.T, opts Options) *hubBundle {
	t.Helper()
	b := &hubBundle{grants: newGrantTable(), log: &memoryLog{}}
	b.hub = NewHub(opts, b.grants, b.log, discard())
	t.Cleanup(func() {
		if err := b.hub.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return b
}

// connect registers a socket for p on a fake transport and returns it with
// the connected frame already taken.
func (b *hubBundle) connect(t *testing.T, p *session.Principal) (*Client, *fakeTransport) {
	t.Helper()
	ft := newFakeTransport()
	c := b.hub.newClient(p, ft, wireWS)
	c.refreshAccess(context.Background())
	if !b.hub.register(c) {
		t.Fatal("register refused")
	}
	t.Cleanup(func() {
		c.closeWith(CloseNormal, "")
		c.dropSubscriptions()
		b.hub.unregister(c)
	})
	return c, ft
}

// event makes the next event on channel with data, logged and ready to
// dispatch.
func (b *hubBundle) event(channel, name, data string) *Event {
	b.seq++
	ev := &Event{Pos: Position{Seq: b.seq, ID: b.seq}, Channel: channel, Name: name, Data: json.RawMessage(data), Time: time.Now()}
	b.log.add(ev)
	return ev
}

// send runs one client message through the protocol.
func send(c *Client, msg string) {
	c.handle(context.Background(), []byte(msg))
}

// frames decodes what the fake transport holds (WebSocket frames, header
// stripped) and empties it.
func frames(t *testing.T, ft *fakeTransport) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, f := range ft.take() {
		payload := wsPayload(t, f)
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatalf("frame %q is not a JSON object: %v", payload, err)
		}
		out = append(out, m)
	}
	return out
}

// wsPayload strips the header of an unmasked WebSocket frame.
func wsPayload(t *testing.T, f []byte) []byte {
	t.Helper()
	if len(f) < 2 {
		t.Fatalf("frame too short: %q", f)
	}
	switch n := f[1] & 0x7f; n {
	case 126:
		return f[4:]
	case 127:
		return f[10:]
	default:
		return f[2:]
	}
}

// summary lists frames as "type channel" or "event id" for comparison.
func summary(fs []map[string]any) []string {
	var out []string
	for _, m := range fs {
		switch {
		case m["event"] != nil:
			out = append(out, fmt.Sprintf("%v %v", m["event"], m["id"]))
		case m["channel"] != nil:
			out = append(out, fmt.Sprintf("%v %v", m["type"], m["channel"]))
		default:
			out = append(out, fmt.Sprint(m["type"]))
		}
	}
	return out
}

func customer(id int64, attrs string) *session.Principal {
	p := &session.Principal{UserID: id, Role: "customer", SessionID: fmt.Sprintf("s%d", id), Attrs: map[string]string{}}
	for kv := range strings.SplitSeq(attrs, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			p.Attrs[k] = v
		}
	}
	return p
}

func TestHubDispatchReachesSubscribersOnly(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{})
	b.grants.set("product_changes", session.Access{})
	orders, ordersT := b.connect(t, customer(1, ""))
	products, productsT := b.connect(t, customer(2, ""))
	send(orders, `{"type":"subscribe","channel":"order_changes"}`)
	send(products, `{"type":"subscribe","channel":"product_changes"}`)
	frames(t, ordersT)
	frames(t, productsT)

	b.hub.Dispatch([]*Event{
		b.event("order_changes", "order:created", `{"id":1}`),
		b.event("product_changes", "product:created", `{"id":7}`),
		b.event("order_changes", "order:updated", `{"id":1}`),
	})
	if got, want := summary(frames(t, ordersT)), []string{"order:created 1", "order:updated 3"}; !slices.Equal(got, want) {
		t.Errorf("orders socket got %q, want %q", got, want)
	}
	if got, want := summary(frames(t, productsT)), []string{"product:created 2"}; !slices.Equal(got, want) {
		t.Errorf("products socket got %q, want %q", got, want)
	}

	send(orders, `{"type":"unsubscribe","channel":"order_changes"}`)
	frames(t, ordersT)
	b.hub.Dispatch([]*Event{b.event("order_changes", "order:deleted", `{"id":1}`)})
	if got := summary(frames(t, ordersT)); len(got) != 0 {
		t.Errorf("after unsubscribe got %q, want nothing", got)
	}
}

func TestHubMatchAndFilter(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{Match: map[string]string{"customer_id": "customer_id"}})
	c45, t45 := b.connect(t, customer(45, "customer_id=45"))
	c46, t46 := b.connect(t, customer(46, "customer_id=46"))
	send(c45, `{"type":"subscribe","channel":"order_changes"}`)
	send(c46, `{"type":"subscribe","channel":"order_changes","filter":{"status":"paid"}}`)
	frames(t, t45)
	frames(t, t46)

	b.hub.Dispatch([]*Event{
		b.event("order_changes", "order:created", `{"id":1,"customer_id":45,"status":"new"}`),
		b.event("order_changes", "order:created", `{"id":2,"customer_id":46,"status":"new"}`),
		b.event("order_changes", "order:updated", `{"id":2,"customer_id":46.0,"status":"paid"}`),
		b.event("order_changes", "order:updated", `{"id":1,"customer_id":"45","status":"paid"}`),
	})
	if got, want := summary(frames(t, t45)), []string{"order:created 1", "order:updated 4"}; !slices.Equal(got, want) {
		t.Errorf("customer 45 got %q, want %q", got, want)
	}
	if got, want := summary(frames(t, t46)), []string{"order:updated 3"}; !slices.Equal(got, want) {
		t.Errorf("customer 46 (filter status=paid) got %q, want %q", got, want)
	}
}

func TestHubSlowSocketClosedOthersServed(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{})
	slow, slowT := b.connect(t, customer(1, ""))
	fast, fastT := b.connect(t, customer(2, ""))
	send(slow, `{"type":"subscribe","channel":"order_changes"}`)
	send(fast, `{"type":"subscribe","channel":"order_changes"}`)
	frames(t, slowT)
	frames(t, fastT)
	slowT.capacity = 3 // set before any concurrent push: no lock needed

	var events []*Event
	for i := range 10 {
		events = append(events, b.event("order_changes", "order:created", fmt.Sprintf(`{"id":%d}`, i)))
	}
	b.hub.Dispatch(events)
	select {
	case <-slowT.closed:
	default:
		t.Fatal("slow socket not closed")
	}
	if slow.closeCode != CloseTryAgainLater {
		t.Errorf("slow socket closed with %d, want %d", slow.closeCode, CloseTryAgainLater)
	}
	if got := len(frames(t, fastT)); got != 10 {
		t.Errorf("healthy socket got %d events, want 10", got)
	}
	if got := b.hub.Stats().SlowDisconnects.Load(); got != 1 {
		t.Errorf("SlowDisconnects = %d, want 1", got)
	}
}

// TestHubReplayThenLive: events dispatched while a subscription replays
// follow the replay, in order, with no gap and no duplicate.
func TestHubReplayThenLive(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{})
	var logged []*Event
	for i := range 5 {
		logged = append(logged, b.event("order_changes", "order:created", fmt.Sprintf(`{"id":%d}`, i)))
	}
	b.hub.Dispatch(logged) // before anyone listens: only the log has them
	b.log.release = make(chan struct{})
	c, ct := b.connect(t, customer(1, ""))

	done := make(chan struct{})
	go func() {
		defer close(done)
		send(c, `{"type":"subscribe","channel":"order_changes","since":"2"}`)
	}()
	// The subscription is registered before its replay starts; dispatch
	// live events as soon as it is, while the replay is held.
	b.waitRegistered(t, ct, "order_changes")
	b.hub.Dispatch([]*Event{
		b.event("order_changes", "order:updated", `{"id":1}`),
		b.event("order_changes", "order:updated", `{"id":2}`),
	})
	close(b.log.release)
	<-done

	got := summary(frames(t, ct))
	want := []string{"subscribed order_changes", "order:created 3", "order:created 4", "order:created 5", "order:updated 6", "order:updated 7"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestHubGrantReload(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{})
	c, ct := b.connect(t, customer(45, "customer_id=45"))
	send(c, `{"type":"subscribe","channel":"order_changes"}`)
	frames(t, ct)

	// Narrowed: from now on only customer 45's rows.
	b.grants.set("order_changes", session.Access{Match: map[string]string{"customer_id": "customer_id"}})
	b.hub.Reauthorize(context.Background())
	b.hub.Dispatch([]*Event{
		b.event("order_changes", "order:created", `{"id":1,"customer_id":46}`),
		b.event("order_changes", "order:created", `{"id":2,"customer_id":45}`),
	})
	if got, want := summary(frames(t, ct)), []string{"order:created 2"}; !slices.Equal(got, want) {
		t.Errorf("after narrowing got %q, want %q", got, want)
	}

	// Revoked: the subscription ends with an error, and nothing follows.
	b.grants.revoke("order_changes")
	b.hub.Reauthorize(context.Background())
	b.hub.Dispatch([]*Event{b.event("order_changes", "order:created", `{"id":3,"customer_id":45}`)})
	if got, want := summary(frames(t, ct)), []string{"error order_changes", "unsubscribed order_changes"}; !slices.Equal(got, want) {
		t.Errorf("after revoke got %q, want %q", got, want)
	}
	if n := b.hub.channelCount("order_changes"); n != 0 {
		t.Errorf("channelCount after revoke = %d, want 0", n)
	}
}

func TestHubBroadcastReachesEverySocket(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	_, t1 := b.connect(t, customer(1, ""))
	_, t2 := b.connect(t, customer(2, ""))
	b.hub.Dispatch([]*Event{b.event(db.BroadcastChannel, "new_product", `{"id":9}`)})
	for i, ft := range []*fakeTransport{t1, t2} {
		fs := frames(t, ft)
		if len(fs) != 1 || fs[0]["type"] != "new_product" {
			t.Errorf("socket %d got %v, want one new_product frame", i+1, fs)
		}
	}
}

func TestHubSubscribeAgainReplacesFilter(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{})
	c, ct := b.connect(t, customer(1, ""))
	send(c, `{"type":"subscribe","channel":"order_changes","filter":{"status":"paid"}}`)
	send(c, `{"type":"subscribe","channel":"order_changes","filter":{"status":{"in":["shipped","delivered"]}}}`)
	if got, want := summary(frames(t, ct)), []string{"subscribed order_changes", "subscribed order_changes"}; !slices.Equal(got, want) {
		t.Fatalf("answers %q, want %q", got, want)
	}
	b.hub.Dispatch([]*Event{
		b.event("order_changes", "order:updated", `{"id":1,"status":"paid"}`),
		b.event("order_changes", "order:updated", `{"id":1,"status":"shipped"}`),
	})
	if got, want := summary(frames(t, ct)), []string{"order:updated 2"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want only the event the new filter passes: %q", got, want)
	}
	if n := b.hub.channelCount("order_changes"); n != 1 {
		t.Errorf("channelCount = %d, want 1 (one subscription, never two deliveries)", n)
	}
}

func TestHubBadFilterMakesNoSubscription(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{})
	c, ct := b.connect(t, customer(1, ""))
	for _, f := range []string{
		`{"status":{"like":"x"}}`,
		`{"customer_id":{"in":5}}`,
		`{"or":[]}`,
		`[1]`,
		`{"a":` + strings.Repeat(`{"not":`, 9) + `{}` + strings.Repeat(`}`, 9) + `}`,
	} {
		send(c, `{"type":"subscribe","channel":"order_changes","filter":`+f+`}`)
		fs := frames(t, ct)
		if len(fs) != 1 || fs[0]["type"] != "error" || !strings.Contains(fmt.Sprint(fs[0]["message"]), "filter") {
			t.Errorf("filter %s: got %v, want one error frame naming the filter", f, fs)
		}
		if n := b.hub.channelCount("order_changes"); n != 0 {
			t.Errorf("filter %s: channelCount = %d, want 0", f, n)
		}
	}
}

func TestHubNotificationToEveryoneAppliesMatch(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set(db.NotifyEveryoneChannel, session.Access{Match: map[string]string{"customer_id": "customer_id"}})
	_, t45 := b.connect(t, customer(45, "customer_id=45"))
	_, t46 := b.connect(t, customer(46, "customer_id=46"))
	frame := func(customer int) string {
		return fmt.Sprintf(`{"type":"notification-received","data":{"id":"1","type":"info","title":"t","message":"m","data":{"customer_id":%d}}}`, customer)
	}
	b.hub.Dispatch([]*Event{b.event(db.NotifyEveryoneChannel, notificationEvent, frame(46))})
	if got := frames(t, t45); len(got) != 0 {
		t.Errorf("customer 45 got %v of customer 46's notification", got)
	}
	if got := frames(t, t46); len(got) != 1 || got[0]["type"] != "notification-received" {
		t.Errorf("customer 46 got %v, want its notification", got)
	}
}

// TestHubIndexedDispatchAgreesWithScan is the property of issue 14: for
// random grants, filters and events (updates among them, which may move a
// row out of view), Dispatch (through the index) reaches exactly the
// sockets, with exactly the events, that judging every subscription would.
func TestHubIndexedDispatchAgreesWithScan(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(14, 14))
	values := []string{`1`, `1.0`, `2`, `"1"`, `"2"`, `"a"`, `null`, `true`}
	pick := func() string { return values[rng.IntN(len(values))] }
	condition := func() string {
		field := []string{"customer_id", "status", "region"}[rng.IntN(3)]
		switch rng.IntN(6) {
		case 0:
			return fmt.Sprintf(`"%s":%s`, field, pick())
		case 1:
			return fmt.Sprintf(`"%s":{"in":[%s,%s]}`, field, pick(), pick())
		case 2:
			return fmt.Sprintf(`"%s":{"ne":%s}`, field, pick())
		case 3:
			return fmt.Sprintf(`"%s":{"gte":%s}`, field, pick())
		case 4:
			return fmt.Sprintf(`"or":[{"%s":%s},{"%s":{"exists":false}}]`, field, pick(), field)
		default:
			return fmt.Sprintf(`"not":{"%s":%s}`, field, pick())
		}
	}
	for round := range 20 {
		b := setupHub(t, Options{})
		b.grants.set("order_changes", session.Access{Match: map[string]string{"customer_id": "customer_id"}})
		b.grants.set("open_changes", session.Access{})
		type sock struct {
			c  *Client
			ft *fakeTransport
		}
		var socks []sock
		for i := range 40 {
			c, ft := b.connect(t, customer(int64(i), "customer_id="+[]string{"1", "2", "a", "true"}[rng.IntN(4)]))
			channel := []string{"order_changes", "open_changes"}[rng.IntN(2)]
			var conds []string
			for range rng.IntN(3) {
				conds = append(conds, condition())
			}
			send(c, fmt.Sprintf(`{"type":"subscribe","channel":%q,"filter":{%s}}`, channel, strings.Join(conds, ",")))
			if rng.IntN(4) == 0 { // subscribe again: the filter is replaced
				send(c, fmt.Sprintf(`{"type":"subscribe","channel":%q,"filter":{%s}}`, channel, condition()))
			}
			frames(t, ft)
			socks = append(socks, sock{c, ft})
		}
		for range 50 {
			channel := []string{"order_changes", "open_changes"}[rng.IntN(2)]
			data := fmt.Sprintf(`{"customer_id":%s,"status":%s}`, pick(), pick())
			var ev *Event
			if rng.IntN(2) == 0 {
				ev = b.event(channel, "order:created", data)
			} else { // an update: the row before it had other values
				ev = b.updated(channel, data, fmt.Sprintf(`{"customer_id":%s,"status":%s}`, pick(), pick()))
			}
			var want []string
			for i, s := range socks {
				b.hub.mu.RLock()
				sub := s.c.subs[channel]
				b.hub.mu.RUnlock()
				if sub == nil {
					continue
				}
				if out := sub.judge(ev); out != nil {
					want = append(want, fmt.Sprintf("%d %s", i, out.Name))
				}
			}
			b.hub.Dispatch([]*Event{ev})
			var got []string
			for i, s := range socks {
				for _, m := range frames(t, s.ft) {
					got = append(got, fmt.Sprintf("%d %s", i, m["event"]))
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, event %s (old %s) on %s: reached %v, judging every subscription gives %v", round, data, ev.Old, channel, got, want)
			}
		}
	}
}

// updated makes an update event whose changed fields had the old values in
// old (what the trigger logs beside the event).
func (b *hubBundle) updated(channel, data, old string) *Event {
	ev := b.event(channel, "order:updated", data)
	ev.Old = json.RawMessage(old)
	return ev
}

func TestHubRowLeavesView(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{Match: map[string]string{"customer_id": "customer_id"}})
	c45, t45 := b.connect(t, customer(45, "customer_id=45"))
	c46, t46 := b.connect(t, customer(46, "customer_id=46"))
	send(c45, `{"type":"subscribe","channel":"order_changes"}`)
	send(c46, `{"type":"subscribe","channel":"order_changes","filter":{"status":{"ne":"cancelled"}}}`)
	frames(t, t45)
	frames(t, t46)

	// The order moves from customer 45 to 46: 45 is told it left, with
	// the row as it was (never the new values); 46 gets the whole new row.
	b.hub.Dispatch([]*Event{b.updated("order_changes",
		`{"id":1,"customer_id":46,"status":"paid","total":5,"changed_fields":{"customer_id":46}}`, `{"customer_id":45}`)})
	got45 := frames(t, t45)
	if len(got45) != 1 || got45[0]["event"] != "order:left" {
		t.Fatalf("customer 45 got %v, want one order:left", got45)
	}
	if data := got45[0]["data"].(map[string]any); data["customer_id"] != 45.0 || data["status"] != "paid" || data["changed_fields"] != nil {
		t.Errorf("left data = %v, want the row before the update, without changed_fields", data)
	}
	if got := summary(frames(t, t46)); !slices.Equal(got, []string{"order:updated 1"}) {
		t.Errorf("customer 46 got %q, want the update (the row moved into view)", got)
	}

	// Leaving a filter's view: 46 no longer sees cancelled orders.
	b.hub.Dispatch([]*Event{b.updated("order_changes",
		`{"id":1,"customer_id":46,"status":"cancelled","total":5,"changed_fields":{"status":"cancelled"}}`, `{"status":"paid"}`)})
	got46 := frames(t, t46)
	if len(got46) != 1 || got46[0]["event"] != "order:left" || got46[0]["data"].(map[string]any)["status"] != "paid" {
		t.Errorf("customer 46 got %v, want order:left with status paid", got46)
	}
	if got := frames(t, t45); len(got) != 0 {
		t.Errorf("customer 45 got %v of a row it no longer saw", got)
	}
}

func TestHubTruncateReachesEverySubscriber(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{Match: map[string]string{"customer_id": "customer_id"}})
	c, ct := b.connect(t, customer(45, "customer_id=45"))
	send(c, `{"type":"subscribe","channel":"order_changes","filter":{"status":"paid"}}`)
	frames(t, ct)
	b.hub.Dispatch([]*Event{
		b.event("order_changes", "order:truncated", `{}`),
		// Named like one but carrying data: judged like any event.
		b.event("order_changes", "order:truncated", `{"customer_id":46,"status":"paid"}`),
	})
	if got := summary(frames(t, ct)); !slices.Equal(got, []string{"order:truncated 1"}) {
		t.Errorf("got %q, want the one empty truncated event", got)
	}
}

func TestHubReplaySendsLeft(t *testing.T) {
	t.Parallel()
	b := setupHub(t, Options{})
	b.grants.set("order_changes", session.Access{Match: map[string]string{"customer_id": "customer_id"}})
	first := b.event("order_changes", "order:created", `{"id":1,"customer_id":45}`)
	moved := b.updated("order_changes", `{"id":1,"customer_id":46,"changed_fields":{"customer_id":46}}`, `{"customer_id":45}`)
	b.hub.Dispatch([]*Event{first, moved})
	c, ct := b.connect(t, customer(45, "customer_id=45"))
	send(c, fmt.Sprintf(`{"type":"subscribe","channel":"order_changes","since":"%d"}`, first.Pos.ID))
	if got := summary(frames(t, ct)); !slices.Equal(got, []string{"subscribed order_changes", "order:left 2"}) {
		t.Errorf("replay gave %q, want order:left for the move", got)
	}
}

// TestStreamResumeKeepsOrderAcrossChannels: a stream of several channels
// with one resume id (SSE's Last-Event-ID) gets its replayed and its live
// events in position order across the channels, so that resuming after
// any of them has no gap. Subscribed one channel after the other, the
// second channel's replay came after the first one's live events.
func TestStreamResumeKeepsOrderAcrossChannels(t *testing.T) {
	t.Parallel()
	b, ct, done := startHeldStream(t, "a", "b", "a", "b", "a")
	// Live while the replay is held: b's comes first, then a's.
	b.hub.Dispatch([]*Event{b.event("b", "x:updated", `{"id":2}`), b.event("a", "x:updated", `{"id":3}`)})
	close(b.log.release)
	<-done
	b.hub.Dispatch([]*Event{b.event("a", "x:deleted", `{"id":1}`), b.event("b", "x:deleted", `{"id":2}`)})

	got := summary(frames(t, ct))
	want := []string{"subscribed a", "subscribed b",
		"x:created 2", "x:created 3", "x:created 4", "x:created 5",
		"x:updated 6", "x:updated 7", "x:deleted 8", "x:deleted 9"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// startHeldStream logs one x:created event on each of channels (ids 1, 2,
// …), then subscribes a stream to "a" and "b" resuming after event 1 and
// returns once both are registered, with their replay held until
// b.log.release is closed; done closes when the subscribe is over.
func startHeldStream(t *testing.T, channels ...string) (b *hubBundle, ct *fakeTransport, done chan struct{}) {
	t.Helper()
	b = setupHub(t, Options{})
	b.grants.set("a", session.Access{})
	b.grants.set("b", session.Access{})
	var logged []*Event
	for i, ch := range channels {
		logged = append(logged, b.event(ch, "x:created", fmt.Sprintf(`{"id":%d}`, i+1)))
	}
	b.hub.Dispatch(logged) // before anyone listens: only the log has them
	b.log.release = make(chan struct{})
	c, ct := b.connect(t, customer(1, ""))
	done = make(chan struct{})
	go func() {
		defer close(done)
		c.subscribeStream(context.Background(), []string{"a", "b"}, json.RawMessage(`"1"`), nil)
	}()
	b.waitRegistered(t, ct, "a", "b")
	return b, ct, done
}

// waitRegistered waits until each channel has a subscription in the hub,
// looking again whenever ft's client is sent a frame.
func (b *hubBundle) waitRegistered(t *testing.T, ft *fakeTransport, channels ...string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for slices.ContainsFunc(channels, func(ch string) bool { return b.hub.channelCount(ch) == 0 }) {
		select {
		case <-ft.pushed:
		case <-deadline:
			t.Fatalf("%v never registered", channels)
		}
	}
}

// TestStreamReplayGoesOnWhenOneChannelIsRevoked: a revoke of one of a
// stream's channels during the merged replay ends that channel only; the
// others' replay is not cut short.
func TestStreamReplayGoesOnWhenOneChannelIsRevoked(t *testing.T) {
	t.Parallel()
	b, ct, done := startHeldStream(t, "a", "a", "b", "a", "b")
	b.grants.revoke("a")
	b.hub.Reauthorize(context.Background())
	close(b.log.release)
	<-done

	var got []string
	for _, f := range summary(frames(t, ct)) {
		if !strings.HasSuffix(f, " a") { // a's subscribe, error and end
			got = append(got, f)
		}
	}
	if want := []string{"subscribed b", "x:created 3", "x:created 5"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
