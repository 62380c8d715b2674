package filter

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

// describe writes fields as name=value pairs in their order (jsonb's:
// shorter names first), each value as JSON, so a test can state what Decode should give in one string.
func describe(f *Fields) string {
	var parts []string
	for _, fl := range f.sorted {
		parts = append(parts, fl.name+"="+fl.v.String())
	}
	return strings.Join(parts, " ")
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want string
	}{
		{"order row", `{"id":123,"status":"paid","total":99.90,"customer_id":45,"paid":true,"note":null}`,
			`id=123 note=null paid=true total=99.9 status="paid" customer_id=45`},
		{"white space", " \t\r\n{ \"a\" : 1 , \"b\" : [ 1 , 2 ] } \n", `a=1 b=[1,2]`},
		{"numbers by value", `{"a":45.0,"b":4.5e1,"c":-0,"d":1E+21}`, `a=45 b=45 c=0 d=1e21`},
		{"object key order and numbers", `{"o":{"b":[1.0,{"y":2,"x":1}],"a":"é"}}`, `o={"a":"é","b":[1,{"x":1,"y":2}]}`},
		{"empty object and array", `{"o":{},"a":[]}`, `a=[] o={}`},
		{"repeated name: last wins", `{"a":1,"b":2,"a":3}`, `a=3 b=2`},
		{"repeated nested name: last wins", `{"o":{"x":1,"x":2}}`, `o={"x":2}`},
		{"out of order at several levels", `{"o":{"bb":{"z":[{"b":1,"a":2}],"y":0},"a":[{"d":1,"c":{"f":1,"e":2}}]}}`,
			`o={"a":[{"c":{"e":2,"f":1},"d":1}],"bb":{"y":0,"z":[{"a":2,"b":1}]}}`},
		{"repeated, out of order, nested", `{"o":{"x":{"b":1,"a":1},"a":0,"x":{"d":[1],"c":2}}}`, `o={"a":0,"x":{"c":2,"d":[1]}}`},
		{"a repeated name's lost value must be valid too", `{"o":{"x":[1,],"x":2}}`, ``},
		{"lost value nested too deep", `{"o":{"x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `,"x":2}}`, ``},
		{"out of order, then invalid", `{"o":{"b":1,"a":{"x":}}}`, ``},
		{"out of order, brackets crossed", `{"o":{"b":1,"a":[}]}}`, ``},
		{"out of order, bracket in a string", `{"o":{"b":"}","a":"]["}}`, `o={"a":"][","b":"}"}`},
		{"escapes", `{"s":"a\"b\\c\u00e9\n","k\u0065y":1}`, `s="a\"b\\cé\u000a" key=1`},
		{"invalid UTF-8 becomes U+FFFD", "{\"s\":\"a\xffb\"}", "s=\"a\uFFFDb\""},
		{"lone surrogate becomes U+FFFD", `{"s":"\ud800"}`, "s=\"\uFFFD\""},
		{"empty object", `{}`, ``},
		{"not an object", `[1,2]`, ``},
		{"a string", `"x"`, ``},
		{"null", `null`, ``},
		{"empty", ``, ``},
		{"trailing data", `{"a":1} {}`, ``},
		{"truncated", `{"a":1`, ``},
		{"bad number", `{"a":01}`, ``},
		{"bad number 2", `{"a":1.}`, ``},
		{"bad literal", `{"a":tru}`, ``},
		{"control character in string", "{\"a\":\"x\ny\"}", ``},
		{"bad escape", `{"a":"\x"}`, ``},
		{"trailing comma", `{"a":1,}`, ``},
		{"missing colon", `{"a" 1}`, ``},
		{"huge exponent stays short", `{"a":1e999999999,"b":-2E-999999999}`, `a=1e999999999 b=-2e-999999999`},
		{"nested too deep", `{"a":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := describe(Decode([]byte(tt.data))); got != tt.want {
				t.Errorf("Decode(%.60q) = %s, want %s", tt.data, got, tt.want)
			}
		})
	}
}

// TestDecodeDepthAgreesWithEncodingJSON: data nested as deep as
// encoding/json allows decodes, one level more gives no fields, as there.
func TestDecodeDepthAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, n := range []int{maxDepth - 2, maxDepth - 1, maxDepth, maxDepth + 1} {
		for _, open := range []string{"[", `{"y":`} {
			closing := map[string]string{"[": "]", `{"y":`: "}"}[open]
			data := `{"a":` + strings.Repeat(open, n) + "1" + strings.Repeat(closing, n) + `}`
			if open == "[" {
				data = `{"a":` + strings.Repeat(open, n) + strings.Repeat(closing, n) + `}`
			}
			var m map[string]any
			want := json.Unmarshal([]byte(data), &m) == nil
			if got := Decode([]byte(data)).get("a") != (value{}); got != want {
				t.Errorf("%d nested %s: Decode finds a = %t, encoding/json decodes = %t", n, open, got, want)
			}
		}
	}
}

func TestFieldsGetAbsentIsNull(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    *Fields
	}{
		{"nil Fields", nil},
		{"absent", Decode([]byte(`{"b":1}`))},
		{"null", Decode([]byte(`{"a":null}`))},
	}
	for _, tt := range tests {
		if got := tt.f.get("a"); got != (value{}) {
			t.Errorf("%s: get(a) = %v, want null", tt.name, got)
		}
	}
}

// TestNestedUnorderedIsLinear: objects out of order, each inside the
// next, cost work in proportion to their size, not to size × depth. Sorting
// each object's output as it ended copied a 1 MB row 5,000 times (seconds,
// gigabytes); this bounds the bytes allocated instead of timing.
//
// Not parallel: it reads the process's allocation counter.
func TestNestedUnorderedIsLinear(t *testing.T) {
	const depth = 5000
	nest := func(inner string) string {
		return strings.Repeat(`{"b":1,"a":`, depth) + inner + strings.Repeat("}", depth)
	}
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}

	data := []byte(`{"x":` + nest(`"`+strings.Repeat("x", 1<<20)+`"`) + `}`)
	var fields *Fields
	if got := allocated(func() { fields = Decode(data) }); got > 8*uint64(len(data)) {
		t.Errorf("Decode of %d bytes nested %d deep allocated %d bytes, want at most %d", len(data), depth, got, 8*len(data))
	}
	want := nest(`"` + strings.Repeat("x", 1<<20) + `"`)
	want = strings.ReplaceAll(want, `{"b":1,"a":`, `{"a":`)
	want = strings.ReplaceAll(want, `}`, `,"b":1}`)
	if got := fields.get("x"); got.kind != kindObject || got.key != want {
		t.Errorf("Decode: x is not the object sorted (kind %d, key %.40s...)", got.kind, got.key)
	}

	v := nest(`"` + strings.Repeat("x", maxFilterSize-100-12*depth) + `"`)
	filter := []byte(`{"x":{"eq":` + v + `}}`)
	var f *Filter
	if got := allocated(func() { f, _ = Compile(filter) }); got > 32*uint64(len(filter)) {
		t.Errorf("Compile of %d bytes nested %d deep allocated %d bytes, want at most %d", len(filter), depth, got, 32*len(filter))
	}
	if !f.Match(Decode([]byte(`{"x":` + v + `}`))) {
		t.Error("the filter does not match its own value")
	}
}
