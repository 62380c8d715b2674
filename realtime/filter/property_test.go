package filter

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Pools are small so that random filters and events meet often. Numbers
// come in several spellings of one value, strings look like numbers and
// bools, objects differ only in key order.
var (
	poolNames  = []string{"a", "b", "customer_id", "status"}
	poolValues = []string{
		`45`, `45.0`, `4.5e1`, `450E-1`, `46`, `-3`, `-3.00`, `-45`, `-0.5`, `-1e21`, `-9007199254740993`, `0`, `-0`, `0.0`, `0.5`, `5e-1`,
		`99.99`, `9.999e1`, `100`, `1e2`, `9007199254740993`, `9007199254740992`, `9.007199254740993e15`,
		`1e21`, `1000000000000000000000`, `1e-30`, `1.0e-30`,
		`"45"`, `"a"`, `"ab"`, `"b"`, `""`, `"é"`, `"true"`, `"null"`, `"A"`, `"a\"b"`,
		`true`, `false`, `null`,
		`{"a":1,"b":[1,2]}`, `{"b":[1.0,2],"a":1e0}`, `{"a":1}`, `{"a":2,"a":1}`, `{}`,
		`[1,2]`, `[2,1]`, `[1.0,2.0]`, `[]`,
	}
	// poolAttrs leaves out 9007199254740992: matchesAttr compared it with
	// 9.007199254740993e15 as float64 and called them equal; MatchAttrs is
	// exact.
	poolAttrs = []string{"45", "45.0", "046", "true", "false", "a", "0", "-0", "", "9007199254740993", "null", "0.5"}
	poolOps   = []string{"eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "prefix", "exists"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// randomFilter writes a random filter object at level (1 at the top).
func randomFilter(r *rand.Rand, level int) string {
	used := map[string]bool{}
	var members []string
	for range r.IntN(4) {
		switch k := r.IntN(10); {
		case k < 2 && level < maxLevels && !used["or"] && !used["and"]:
			name := pick(r, []string{"or", "and"})
			used[name] = true
			var kids []string
			for range 1 + r.IntN(3) {
				kids = append(kids, randomFilter(r, level+1))
			}
			members = append(members, fmt.Sprintf(`%q:[%s]`, name, strings.Join(kids, ",")))
		case k < 3 && level < maxLevels && !used["not"]:
			used["not"] = true
			members = append(members, `"not":`+randomFilter(r, level+1))
		default:
			name := pick(r, poolNames)
			if used[name] {
				continue
			}
			used[name] = true
			members = append(members, fmt.Sprintf("%q:%s", name, randomCondition(r)))
		}
	}
	return "{" + strings.Join(members, ",") + "}"
}

// randomCondition writes a field's value or operator object.
func randomCondition(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		v := pick(r, poolValues)
		if strings.HasPrefix(v, "{") {
			return `{"eq":` + v + `}`
		}
		return v
	}
	var ops []string
	for _, op := range poolOps {
		if r.IntN(len(poolOps)) != 0 {
			continue
		}
		var arg string
		switch op {
		case "in", "nin":
			var vs []string
			n := r.IntN(4)
			if r.IntN(5) == 0 {
				n = maxScanValues + 1 + r.IntN(4) // looked up in a map
			}
			for range n {
				vs = append(vs, pick(r, poolValues))
			}
			arg = "[" + strings.Join(vs, ",") + "]"
		case "exists":
			arg = pick(r, []string{"true", "false"})
		case "prefix":
			arg = pick(r, []string{`""`, `"a"`, `"4"`, `"é"`})
		case "lt", "lte", "gt", "gte":
			for arg == "" || strings.ContainsAny(arg[:1], "tfn{[") {
				arg = pick(r, poolValues) // a number or a string
			}
		default:
			arg = pick(r, poolValues)
		}
		ops = append(ops, fmt.Sprintf("%q:%s", op, arg))
	}
	if len(ops) == 0 {
		return `{"eq":` + pick(r, poolValues) + `}`
	}
	return "{" + strings.Join(ops, ",") + "}"
}

func randomEvent(r *rand.Rand) string {
	var members []string
	for _, name := range poolNames {
		if r.IntN(4) != 0 {
			members = append(members, fmt.Sprintf("%q:%s", name, pick(r, poolValues)))
		}
	}
	return "{" + strings.Join(members, ",") + "}"
}

// event is one random event in the forms the two sides of the test read.
type event struct {
	data   string
	fields *Fields
	ref    map[string]any             // encoding/json, numbers as json.Number
	raw    map[string]json.RawMessage // for matchesAttr
}

func newEvent(tb testing.TB, data string) event {
	e := event{data: data, fields: Decode([]byte(data)), ref: decodeRef(tb, data)}
	if err := json.Unmarshal([]byte(data), &e.raw); err != nil {
		tb.Fatalf("event %s: %v", data, err)
	}
	return e
}

func decodeRef(tb testing.TB, s string) map[string]any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("decode %s: %v", s, err)
	}
	return m
}

// sub is a subscription: a grant's match and a client filter, compiled,
// and the same as the reference reads them.
type sub struct {
	grant  map[string]string
	filter string
	ref    map[string]any
	f      *Filter
}

func (s sub) refMatch(e event) bool {
	for name, attr := range s.grant {
		raw, ok := e.raw[name]
		if !ok || !matchesAttr(raw, attr) {
			return false
		}
	}
	return refFilter(s.ref, e.ref)
}

// refFilter is SPEC §3.1 read as plainly as possible, on encoding/json's
// values with big.Rat numbers: the reference the compiled filters must
// agree with.
func refFilter(filter, data map[string]any) bool {
	for key, want := range filter {
		var ok bool
		switch key {
		case "or":
			ok = slices.ContainsFunc(want.([]any), func(f any) bool { return refFilter(f.(map[string]any), data) })
		case "and":
			ok = !slices.ContainsFunc(want.([]any), func(f any) bool { return !refFilter(f.(map[string]any), data) })
		case "not":
			ok = !refFilter(want.(map[string]any), data)
		default:
			got := data[key] // absent reads as nil, like null
			ops, isOps := want.(map[string]any)
			if !isOps {
				ops = map[string]any{"eq": want}
			}
			ok = true
			for op, arg := range ops {
				ok = ok && refOp(op, got, arg)
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func refOp(op string, got, arg any) bool {
	switch op {
	case "eq":
		return refEqual(got, arg)
	case "ne":
		return !refEqual(got, arg)
	case "in":
		return slices.ContainsFunc(arg.([]any), func(v any) bool { return refEqual(got, v) })
	case "nin":
		return !slices.ContainsFunc(arg.([]any), func(v any) bool { return refEqual(got, v) })
	case "exists":
		return (got != nil) == arg.(bool)
	case "prefix":
		s, ok := got.(string)
		return ok && strings.HasPrefix(s, arg.(string))
	}
	var c int
	switch g := got.(type) {
	case json.Number:
		a, ok := arg.(json.Number)
		if !ok {
			return false
		}
		c = rat(g).Cmp(rat(a))
	case string:
		a, ok := arg.(string)
		if !ok {
			return false
		}
		c = strings.Compare(g, a)
	default:
		return false
	}
	switch op {
	case "lt":
		return c < 0
	case "lte":
		return c <= 0
	case "gt":
		return c > 0
	}
	return c >= 0
}

func refEqual(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		return ok && rat(x).Cmp(rat(y)) == 0
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !refEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		return ok && slices.EqualFunc(x, y, refEqual)
	}
	return a == b // string, bool, nil
}

// rat is exact, and safe here: pool numbers have small exponents.
func rat(n json.Number) *big.Rat {
	r, ok := new(big.Rat).SetString(string(n))
	if !ok {
		panic("bad number " + n)
	}
	return r
}

func randomSub(tb testing.TB, r *rand.Rand) sub {
	var s sub
	if r.IntN(2) == 0 {
		s.grant = map[string]string{"customer_id": pick(r, poolAttrs)}
		if r.IntN(4) == 0 {
			s.grant["status"] = pick(r, poolAttrs)
		}
	}
	for {
		s.filter = randomFilter(r, 1)
		f, err := Compile(json.RawMessage(s.filter))
		if err != nil {
			if strings.Contains(err.Error(), "more than 64 conditions") {
				continue // rare with these sizes; draw another
			}
			tb.Fatalf("Compile(%s): %v", s.filter, err)
		}
		s.f = And(MatchAttrs(s.grant), f)
		s.ref = decodeRef(tb, s.filter)
		return s
	}
}

// TestIndexProperty checks, on random subscriptions and events, that
//   - Match agrees with refFilter and matchesAttr, and
//   - the subscriptions Candidates offers that then Match are exactly those
//     that Match when every subscription is tried,
//
// while subscriptions come and go.
func TestIndexProperty(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	const nSubs, rounds, eventsPerRound = 150, 200, 20
	subs := make([]sub, nSubs)
	var ix Index[int]
	for i := range subs {
		subs[i] = randomSub(t, r)
		ix.Add(i, subs[i].f)
	}
	removed := map[int]bool{}
	matches, checks := 0, 0
	for range rounds {
		// Some subscriptions leave, some come back with a new filter.
		for range 10 {
			i := r.IntN(nSubs)
			if removed[i] {
				subs[i] = randomSub(t, r)
				ix.Add(i, subs[i].f)
				delete(removed, i)
			} else if r.IntN(2) == 0 {
				ix.Remove(i)
				removed[i] = true
			} else {
				subs[i] = randomSub(t, r)
				ix.Add(i, subs[i].f) // replaces
			}
		}
		if got, want := ix.Len(), nSubs-len(removed); got != want {
			t.Fatalf("Len() = %d, want %d", got, want)
		}
		for range eventsPerRound {
			e := newEvent(t, randomEvent(r))
			var want []int
			for i, s := range subs {
				got := s.f.Match(e.fields)
				if ref := s.refMatch(e); got != ref {
					t.Fatalf("grant %v filter %s on %s: Match = %t, reference = %t (compiled: %s)", s.grant, s.filter, e.data, got, ref, s.f)
				}
				checks++
				if got && !removed[i] {
					want = append(want, i)
				}
			}
			matches += len(want)
			var got []int
			seen := map[int]bool{}
			ix.Candidates(e.fields, func(i int) bool {
				if seen[i] {
					t.Fatalf("event %s: Candidates offers %d twice", e.data, i)
				}
				seen[i] = true
				if subs[i].f.Match(e.fields) {
					got = append(got, i)
				}
				return true
			})
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("event %s: indexed matches %v, want %v", e.data, got, want)
			}
		}
	}
	// The pools are meant to make matches common; make sure they do.
	if matches < checks/50 {
		t.Errorf("only %d matches in %d checks: the random pools hardly ever match", matches, checks)
	}
	t.Logf("%d checks, %d matches", checks, matches)
}

// TestDecodeAgreesWithEncodingJSON checks that two pool values get equal
// keys exactly when the reference calls them equal.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, a := range poolValues {
		for _, b := range poolValues {
			va := Decode([]byte(`{"x":` + a + `}`)).get("x")
			vb := Decode([]byte(`{"x":` + b + `}`)).get("x")
			ra := decodeRef(t, `{"x":`+a+`}`)["x"]
			rb := decodeRef(t, `{"x":`+b+`}`)["x"]
			if got, want := va == vb, refEqual(ra, rb); got != want {
				t.Errorf("%s and %s: equal keys %t (%v, %v), reference says %t", a, b, got, va, vb, want)
			}
		}
	}
}
