package filter

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// order is the SPEC §3 sample row.
const order = `{"id":123,"order_number":"ORD-1234567890","status":"processing","payment_status":"paid",` +
	`"total":99.99,"customer_id":45,"currency":"USD","note":null,"paid":true,"tags":["a","b"],` +
	`"big":9007199254740993,"name":"Zoë","changed_fields":{"status":"processing","payment_status":"paid"}}`

func mustCompile(tb testing.TB, filter string) *Filter {
	tb.Helper()
	f, err := Compile(json.RawMessage(filter))
	if err != nil {
		tb.Fatalf("Compile(%s): %v", filter, err)
	}
	return f
}

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		filter string
		want   bool
	}{
		// Everything.
		{`{}`, true},
		{`null`, true},
		{``, true},

		// Equality, numbers by value.
		{`{"customer_id":45}`, true},
		{`{"customer_id":45.0}`, true},
		{`{"customer_id":4.5e1}`, true},
		{`{"customer_id":450E-1}`, true},
		{`{"customer_id":46}`, false},
		{`{"customer_id":"45"}`, false}, // a number never equals a string
		{`{"total":99.990}`, true},
		{`{"big":9007199254740993}`, true},
		{`{"big":9007199254740992}`, false}, // beyond float64: exact
		{`{"big":9.007199254740993e15}`, true},
		{`{"status":"processing"}`, true},
		{`{"status":"Processing"}`, false},
		{`{"paid":true}`, true},
		{`{"paid":"true"}`, false},
		{`{"paid":1}`, false},
		{`{"status":"processing","customer_id":45}`, true},
		{`{"status":"processing","customer_id":44}`, false},
		{`{"name":"Zo\u00eb"}`, true},

		// null means null or absent.
		{`{"note":null}`, true},
		{`{"missing":null}`, true},
		{`{"status":null}`, false},
		{`{"missing":0}`, false},
		{`{"missing":""}`, false},
		{`{"missing":false}`, false},

		// Deep equality.
		{`{"tags":{"eq":["a","b"]}}`, true},
		{`{"tags":{"eq":["b","a"]}}`, false},
		{`{"tags":["a","b"]}`, true},
		{`{"changed_fields":{"eq":{"payment_status":"paid","status":"processing"}}}`, true},
		{`{"changed_fields":{"eq":{"status":"processing"}}}`, false},
		{`{"changed_fields":{"ne":{}}}`, true},

		// eq, ne.
		{`{"status":{"eq":"processing"}}`, true},
		{`{"status":{"ne":"processing"}}`, false},
		{`{"status":{"ne":"paid"}}`, true},
		{`{"customer_id":{"ne":45.0}}`, false},
		{`{"customer_id":{"ne":"45"}}`, true},
		{`{"missing":{"ne":5}}`, true}, // not (absent = 5)
		{`{"missing":{"eq":null}}`, true},
		{`{"note":{"ne":null}}`, false},
		{`{"status":{"ne":null}}`, true},

		// Ordering: numbers by value.
		{`{"total":{"gt":99}}`, true},
		{`{"total":{"gt":99.99}}`, false},
		{`{"total":{"gte":99.99}}`, true},
		{`{"total":{"gte":9.999e1}}`, true},
		{`{"total":{"lt":100}}`, true},
		{`{"total":{"lt":99.99}}`, false},
		{`{"total":{"lte":99.99}}`, true},
		{`{"total":{"lte":99.989999}}`, false},
		{`{"total":{"gt":-1e999999999}}`, true},
		{`{"total":{"lt":1e999999999}}`, true},
		{`{"total":{"gt":99,"lt":100}}`, true},
		{`{"total":{"gt":100,"lt":99}}`, false},
		{`{"big":{"gt":9007199254740992}}`, true},
		{`{"big":{"lt":9007199254740994}}`, true},
		{`{"big":{"gt":9007199254740993}}`, false},
		{`{"customer_id":{"gt":-45}}`, true},

		// Ordering: strings by code point.
		{`{"status":{"gt":"paid"}}`, true},
		{`{"status":{"lt":"processinh"}}`, true},
		{`{"status":{"lt":"processing"}}`, false},
		{`{"status":{"lte":"processing"}}`, true},
		{`{"name":{"gt":"Zoz"}}`, true},            // ë (U+00EB) is after z
		{`{"name":{"lt":"Zo\ud83d\ude00"}}`, true}, // U+1F600 is after U+00EB
		{`{"status":{"gt":"Z"}}`, true},            // lowercase after uppercase
		{`{"order_number":{"gte":"ORD-1"}}`, true},

		// Ordering never crosses types, and null or absent orders against nothing.
		{`{"customer_id":{"gt":"1"}}`, false},
		{`{"customer_id":{"lt":"9"}}`, false},
		{`{"status":{"gt":1}}`, false},
		{`{"status":{"lt":1}}`, false},
		{`{"note":{"lt":1}}`, false},
		{`{"missing":{"gt":""}}`, false},
		{`{"paid":{"gt":0}}`, false},

		// in, nin.
		{`{"status":{"in":["paid","processing"]}}`, true},
		{`{"status":{"in":["paid"]}}`, false},
		{`{"status":{"in":[]}}`, false},
		{`{"customer_id":{"in":[1,4.5e1]}}`, true},
		{`{"customer_id":{"in":["45"]}}`, false},
		{`{"missing":{"in":[null]}}`, true},
		{`{"missing":{"in":[1]}}`, false},
		{`{"tags":{"in":[["a","b"]]}}`, true},
		{`{"status":{"nin":["paid","processing"]}}`, false},
		{`{"status":{"nin":["paid"]}}`, true},
		{`{"status":{"nin":[]}}`, true},
		{`{"missing":{"nin":[1]}}`, true},
		{`{"missing":{"nin":[null]}}`, false},

		// prefix.
		{`{"status":{"prefix":"proc"}}`, true},
		{`{"status":{"prefix":""}}`, true},
		{`{"status":{"prefix":"processing!"}}`, false},
		{`{"status":{"prefix":"Proc"}}`, false},
		{`{"customer_id":{"prefix":"4"}}`, false},
		{`{"missing":{"prefix":""}}`, false},
		{`{"note":{"prefix":""}}`, false},

		// exists: present and not null.
		{`{"status":{"exists":true}}`, true},
		{`{"status":{"exists":false}}`, false},
		{`{"note":{"exists":true}}`, false},
		{`{"note":{"exists":false}}`, true},
		{`{"missing":{"exists":true}}`, false},
		{`{"missing":{"exists":false}}`, true},

		// or, and, not.
		{`{"or":[{"status":"paid"},{"customer_id":45}]}`, true},
		{`{"or":[{"status":"paid"},{"customer_id":46}]}`, false},
		{`{"or":[{}]}`, true},
		{`{"and":[{"status":"processing"},{"customer_id":45}]}`, true},
		{`{"and":[{"status":"processing"},{"customer_id":46}]}`, false},
		{`{"and":[{}]}`, true},
		{`{"not":{"status":"paid"}}`, true},
		{`{"not":{"status":"processing"}}`, false},
		{`{"not":{}}`, false},
		{`{"not":{"not":{"status":"processing"}}}`, true},
		{`{"status":"processing","or":[{"total":{"gt":100}},{"paid":true}],"not":{"currency":"EUR"}}`, true},
		{`{"or":[{"and":[{"status":"paid"},{"x":1}]},{"and":[{"currency":"USD"},{"not":{"or":[{"total":{"lt":10}},{"big":null}]}}]}]}`, true},
		{`{"or":[{"and":[{"status":"paid"},{"x":1}]},{"and":[{"currency":"USD"},{"not":{"or":[{"total":{"lt":100}},{"big":null}]}}]}]}`, false},

		// A field named like an operator is just a field, except or/and/not.
		{`{"eq":{"exists":false},"in":null}`, true},
	}
	fields := Decode([]byte(order))
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			t.Parallel()
			f := mustCompile(t, tt.filter)
			if got := f.Match(fields); got != tt.want {
				t.Errorf("Compile(%s).Match(order) = %t, want %t (compiled: %s)", tt.filter, got, tt.want, f)
			}
		})
	}
}

// TestMatchLongInList: past maxScanValues an "in" list is a set; both
// forms must agree.
func TestMatchLongInList(t *testing.T) {
	t.Parallel()
	fields := Decode([]byte(order))
	// n values, and one more added by some cases: at most maxInValues.
	for _, n := range []int{3, maxScanValues, maxScanValues + 1, maxInValues - 1} {
		vals := []string{`"45"`, `null`, `4.6e1`}
		for i := len(vals); i < n; i++ {
			vals = append(vals, fmt.Sprint(1000+i))
		}
		list := strings.Join(vals, ",")
		tests := []struct {
			filter string
			want   bool
		}{
			{`{"customer_id":{"in":[` + list + `]}}`, false},
			{`{"customer_id":{"in":[` + list + `,45.0]}}`, true},
			{`{"missing":{"in":[` + list + `]}}`, true},
			{`{"customer_id":{"nin":[` + list + `]}}`, true},
			{`{"customer_id":{"nin":[4.5e1,` + list + `]}}`, false},
			// Longer than every value: not even looked up.
			{`{"order_number":{"in":[` + list + `]}}`, false},
			{`{"order_number":{"nin":[` + list + `]}}`, true},
			// As long as the longest value.
			{`{"order_number":{"in":[` + list + `,"ORD-1234567890"]}}`, true},
		}
		for _, tt := range tests {
			if got := mustCompile(t, tt.filter).Match(fields); got != tt.want {
				t.Errorf("%d values: Compile(%.80s...).Match(order) = %t, want %t", n, tt.filter, got, tt.want)
			}
		}
	}
}

// TestMatchLongNumber: a number as long as jsonb allows compares exactly.
func TestMatchLongNumber(t *testing.T) {
	t.Parallel()
	digits := strings.Repeat("123456789", 15000) // 135,000 digits
	fields := Decode([]byte(`{"n":` + digits + `.5,"m":-` + digits + `}`))
	tests := []struct {
		filter string
		want   bool
	}{
		{`{"n":{"gt":1.2e134999}}`, true},
		{`{"n":{"gt":1.3e134999}}`, false},
		{`{"n":{"lt":1.23456789123456789e134999}}`, false}, // a prefix of n's digits
		{`{"n":{"gt":1.23456789123456789e134999}}`, true},
		{`{"m":{"lt":-1.23456789123456789e134999}}`, true},
		{`{"n":{"lt":1e135000}}`, true},
		{`{"m":{"gt":-1e135000}}`, true},
	}
	for _, tt := range tests {
		if got := mustCompile(t, tt.filter).Match(fields); got != tt.want {
			t.Errorf("Compile(%s).Match(135,000 digits) = %t, want %t", tt.filter, got, tt.want)
		}
	}
}

func TestCompileEverythingIsNil(t *testing.T) {
	t.Parallel()
	for _, filter := range []string{``, ` `, `null`, ` null `, `{}`, ` { } `} {
		if f, err := Compile(json.RawMessage(filter)); f != nil || err != nil {
			t.Errorf("Compile(%q) = %v, %v, want nil, nil", filter, f, err)
		}
	}
	var f *Filter
	if !f.Match(nil) || !f.Match(Decode([]byte(order))) {
		t.Error("nil Filter does not match everything")
	}
}

// TestCompileDropsEmptyFilters: {} inside or and and is dropped at
// compile time, so that a filter of 20,000 {} costs Match nothing.
func TestCompileDropsEmptyFilters(t *testing.T) {
	t.Parallel()
	many := strings.TrimSuffix(strings.Repeat(`{},`, 20000), ",")
	tests := []struct {
		filter string
		want   string
	}{
		{`{"and":[` + many + `]}`, `true`},
		{`{"or":[` + many + `]}`, `true`},
		{`{"or":[{"a":1},{}]}`, `true`},
		{`{"a":1,"or":[{"b":1},{}],"and":[{},{"c":1},{}]}`, `and("a" = 1, and(and("c" = 1)))`},
		{`{"not":{"or":[{}]}}`, `and(not(and()))`},
		{`{"or":[{"a":1},{"and":[{}]}]}`, `true`},
	}
	for _, tt := range tests {
		if got := mustCompile(t, tt.filter).String(); got != tt.want {
			t.Errorf("Compile(%.60s) = %s, want %s", tt.filter, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	nested := func(levels int) string { // levels filter objects, one inside the other
		return strings.Repeat(`{"not":`, levels-1) + `{"a":1}` + strings.Repeat(`}`, levels-1)
	}
	conditions := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`"f%d":%d`, i, i)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	values := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprint(i)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	tests := []struct {
		filter string
		want   string // "" compiles
	}{
		{`[]`, `filter: must be a JSON object`},
		{`"x"`, `filter: must be a JSON object`},
		{`1`, `filter: must be a JSON object`},
		{`{`, `filter: not valid JSON`},
		{`{"a":1}x`, `filter: not valid JSON`},
		{`{"a":01}`, `filter: not valid JSON`},
		{`{"status":{"foo":1}}`, `filter: unknown operator "foo" on field "status"`},
		{`{"status":{"$eq":1}}`, `filter: unknown operator "$eq" on field "status"`},
		{`{"status":{}}`, `filter: no operator on field "status" (to compare with {}, use {"eq": {}})`},
		{`{"a":{"gt":true}}`, `filter: "gt" on "a" needs a number or a string`},
		{`{"a":{"lt":null}}`, `filter: "lt" on "a" needs a number or a string`},
		{`{"a":{"lte":[1]}}`, `filter: "lte" on "a" needs a number or a string`},
		{`{"a":{"gte":{}}}`, `filter: "gte" on "a" needs a number or a string`},
		{`{"a":{"in":1}}`, `filter: "in" on "a" needs an array`},
		{`{"a":{"nin":{"x":1}}}`, `filter: "nin" on "a" needs an array`},
		{`{"a":{"in":null}}`, `filter: "in" on "a" needs an array`},
		{`{"customer_id":{"in":` + values(1001) + `}}`, `filter: "in" on "customer_id" has 1001 values, at most 1000`},
		{`{"customer_id":{"nin":` + values(1001) + `}}`, `filter: "nin" on "customer_id" has 1001 values, at most 1000`},
		{`{"customer_id":{"in":` + values(1000) + `}}`, ``},
		{`{"a":{"prefix":1}}`, `filter: "prefix" on "a" needs a string`},
		{`{"a":{"prefix":null}}`, `filter: "prefix" on "a" needs a string`},
		{`{"a":{"exists":1}}`, `filter: "exists" on "a" needs true or false`},
		{`{"a":{"exists":"true"}}`, `filter: "exists" on "a" needs true or false`},
		{`{"or":[]}`, `filter: "or" needs a non-empty array of filters`},
		{`{"and":{}}`, `filter: "and" needs a non-empty array of filters`},
		{`{"or":null}`, `filter: "or" needs a non-empty array of filters`},
		{`{"or":[1]}`, `filter: or[0] must be a filter object`},
		{`{"or":[null]}`, `filter: or[0] must be a filter object`},
		{`{"not":[]}`, `filter: not must be a filter object`},
		{`{"not":null}`, `filter: not must be a filter object`},
		{`{"or":[{},{"and":[{"status":{"foo":1}}]}]}`, `filter: or[1].and[0]: unknown operator "foo" on field "status"`},
		{`{"not":{"a":{"in":"x"}}}`, `filter: not: "in" on "a" needs an array`},
		{`{"a":1e1000000000000000000}`, `filter: number out of range on "a"`},
		{`{"a":{"in":[1,{"x":[-1e1000000000000000000]}]}}`, `filter: number out of range on "a"`},
		{`{"a":1e999999999999999999}`, ``},
		{nested(8), ``},
		{nested(9), `filter: nested deeper than 8 levels`},
		{`{"or":[{"and":[{"or":[{"and":[{"or":[{"and":[{"or":[{"and":[{}]}]}]}]}]}]}]}]}`, `filter: nested deeper than 8 levels`},
		{conditions(64), ``},
		{conditions(65), `filter: more than 64 conditions`},
		{`{"a":{"gt":1,"lt":2,"ne":3},` + strings.TrimPrefix(conditions(61), "{"), ``},
		{`{"a":{"gt":1,"lt":2,"ne":3,"eq":4},` + strings.TrimPrefix(conditions(61), "{"), `filter: more than 64 conditions`},
		{`{"or":[` + strings.Repeat(`{"a":1},`, 31) + `{"a":1}]}`, ``},                                // or + 32
		{`{"or":[` + strings.Repeat(`{"a":1},`, 63) + `{"a":1}]}`, `filter: more than 64 conditions`}, // or + 64
		{`{"not":{"or":[` + strings.Repeat(`{"a":1},`, 61) + `{"a":1}]}}`, ``},                        // not + or + 62
		{`{"not":{"or":[` + strings.Repeat(`{"a":1},`, 62) + `{"a":1}]}}`, `filter: more than 64 conditions`},
		{`{"a":"` + strings.Repeat("x", maxFilterSize) + `"}`, `filter: larger than 65536 bytes`},
	}
	for _, tt := range tests {
		name := tt.filter
		if len(name) > 80 {
			name = name[:80]
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Compile(json.RawMessage(tt.filter))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Compile(%.100s) error = %q, want %q", tt.filter, got, tt.want)
			}
		})
	}
}

// TestMatchAttrs checks each case against the rule it replaces too
// (matchesAttr, in reference_test.go).
func TestMatchAttrs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		field string // raw JSON of data.customer_id, "" for absent
		attr  string
		want  bool
	}{
		{`45`, "45", true},
		{`45.0`, "45", true},
		{`4.5e1`, "45", true},
		{`"45"`, "45", true},
		{`46`, "45", false},
		{`"045"`, "45", false},
		{`45`, "45.0", true},
		{`"45"`, "45.0", false},
		{`45`, "045", true},
		{`45`, "+45", true},
		{`45`, "0x2d", true},
		{`0.5`, ".5", true},
		{`9007199254740993`, "9007199254740993", true},
		{`9007199254740992`, "9007199254740993", false},
		{`true`, "true", true},
		{`"true"`, "true", true},
		{`false`, "true", false},
		{`false`, "false", true},
		{`1`, "true", false},
		{`null`, "", false},
		{`null`, "null", false},
		{`""`, "", true},
		{``, "", false},
		{``, "45", false},
		{`{"x":1}`, `{"x":1}`, false},
		{`[45]`, "45", false},
		{`45`, "abc", false},
		{`"abc"`, "abc", true},
		{`"ab\u0063"`, "abc", true},
		{`45`, " 45", false},
		{`1e999999999`, "1e999999999", true},
	}
	for _, tt := range tests {
		t.Run(tt.field+"~"+tt.attr, func(t *testing.T) {
			t.Parallel()
			data := `{}`
			if tt.field != "" {
				data = `{"customer_id":` + tt.field + `}`
			}
			f := MatchAttrs(map[string]string{"customer_id": tt.attr})
			if got := f.Match(Decode([]byte(data))); got != tt.want {
				t.Errorf("MatchAttrs(customer_id=%q).Match(%s) = %t, want %t", tt.attr, data, got, tt.want)
			}
			if tt.field != "" && tt.attr != "1e999999999" { // matchesAttr compared that one as +Inf
				if old := matchesAttr(json.RawMessage(tt.field), tt.attr); old != tt.want {
					t.Errorf("matchesAttr(%s, %q) = %t, but MatchAttrs wants %t", tt.field, tt.attr, old, tt.want)
				}
			}
		})
	}
}

func TestMatchAttrsSeveralFields(t *testing.T) {
	t.Parallel()
	f := MatchAttrs(map[string]string{"customer_id": "45", "currency": "USD"})
	tests := []struct {
		data string
		want bool
	}{
		{`{"customer_id":45,"currency":"USD"}`, true},
		{`{"customer_id":45,"currency":"EUR"}`, false},
		{`{"customer_id":45}`, false},
		{`{"currency":"USD"}`, false},
	}
	for _, tt := range tests {
		if got := f.Match(Decode([]byte(tt.data))); got != tt.want {
			t.Errorf("MatchAttrs(customer_id=45, currency=USD).Match(%s) = %t, want %t", tt.data, got, tt.want)
		}
	}
	if got := MatchAttrs(nil); got != nil {
		t.Errorf("MatchAttrs(nil) = %v, want nil", got)
	}
}

func TestAnd(t *testing.T) {
	t.Parallel()
	grant := MatchAttrs(map[string]string{"customer_id": "45"})
	paid := mustCompile(t, `{"payment_status":"paid"}`)
	shipped := mustCompile(t, `{"status":"shipped"}`)
	fields := Decode([]byte(order))
	tests := []struct {
		name string
		f    *Filter
		want bool
	}{
		{"none", And(), true},
		{"only nils", And(nil, nil), true},
		{"one", And(nil, grant), true},
		{"both hold", And(grant, paid), true},
		{"one fails", And(grant, paid, shipped), false},
		{"nested", And(And(grant, nil), And(paid)), true},
	}
	for _, tt := range tests {
		if got := tt.f.Match(fields); got != tt.want {
			t.Errorf("%s: %s.Match(order) = %t, want %t", tt.name, tt.f, got, tt.want)
		}
	}
	if And(nil, nil) != nil {
		t.Error("And(nil, nil) is not nil")
	}
}

func TestMatchAllocatesNothing(t *testing.T) {
	// Not parallel: AllocsPerRun counts allocations of the whole process.
	f := And(MatchAttrs(map[string]string{"customer_id": "45"}), mustCompile(t,
		`{"status":{"in":["processing","paid"]},"total":{"gt":10,"lte":1e3},"name":{"prefix":"Zo"},`+
			`"or":[{"note":null},{"not":{"tags":{"eq":["x"]}}}]}`))
	fields := Decode([]byte(order))
	if !f.Match(fields) {
		t.Fatalf("%s does not match the order", f)
	}
	if n := testing.AllocsPerRun(100, func() { f.Match(fields) }); n != 0 {
		t.Errorf("Match allocates %.0f times, want 0", n)
	}
}

func TestFilterString(t *testing.T) {
	t.Parallel()
	f := And(MatchAttrs(map[string]string{"customer_id": "45"}),
		mustCompile(t, `{"status":{"ne":"paid"},"or":[{"total":{"gte":1E2}},{"not":{"name":{"prefix":"Z"}}}],"x":{"exists":true}}`))
	want := `and(and("customer_id" in ["45" 45]), and(or(and("total" >= 100), and(not(and("name" prefix "Z")))), not "status" = "paid", not "x" = null))`
	if got := f.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}
