package filter

import (
	"encoding/json"
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
