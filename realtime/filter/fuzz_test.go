package filter

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var fuzzFilters = []string{
	`{"customer_id":45}`,
	`{"status":{"in":["paid","processing"]},"total":{"gt":10,"lte":1e3}}`,
	`{"or":[{"status":"paid"},{"not":{"customer_id":{"nin":[1,2.0,"3"]}}}],"name":{"prefix":"Zo"}}`,
	`{"and":[{"note":null},{"x":{"exists":true}},{"tags":{"eq":["a",{"b":1}]}}]}`,
	`{"big":{"ne":9007199254740993},"s":{"gte":"é","lt":"\ud83d\ude00"}}`,
	`{"a":1e999999999}`,
	`{"a":{"foo":1}}`,
	`{"not":{"not":{"not":{"not":{"not":{"not":{"not":{"a":1}}}}}}}}`,
	`null`,
	`{}`,
}

var fuzzEvents = []string{
	order,
	`{"customer_id":"45","status":"paid","note":null,"x":[1,{"b":1.0}]}`,
	`{"a":1e999999999,"b":-0.0,"c":"a\u0000\"","d":{"y":1,"x":[]}}`,
	"{\"s\":\"\xff\"}",
	`[1]`,
	`{"a":1,"a":2}`,
}

// FuzzCompile: Compile never panics, and a compiled filter matches any
// data without panicking, agreeing with the reference reading (refFilter)
// whenever the reference can afford the numbers involved.
func FuzzCompile(f *testing.F) {
	for _, flt := range fuzzFilters {
		for _, ev := range fuzzEvents {
			f.Add([]byte(flt), []byte(ev))
		}
	}
	f.Fuzz(func(t *testing.T, filter, data []byte) {
		flt, err := Compile(filter)
		if err != nil {
			if flt != nil {
				t.Fatalf("Compile(%q) = %v and error %v", filter, flt, err)
			}
			if !strings.HasPrefix(err.Error(), "filter: ") {
				t.Fatalf("Compile(%q) error %q does not start with \"filter: \"", filter, err)
			}
			return
		}
		fields := Decode(data)
		got := flt.Match(fields)
		_ = flt.String()

		var ref map[string]any
		if flt == nil || !affordable(filter) || !affordable(data) {
			return
		}
		ref = decodeRef(t, string(filter))
		dataRef := map[string]any{}
		if m, ok := decodeObject(data); ok {
			dataRef = m
		}
		if want := refFilter(ref, dataRef); got != want {
			t.Fatalf("Compile(%s).Match(%s) = %t, reference says %t (compiled: %s)", filter, data, got, want, flt)
		}
	})
}

// FuzzDecode: Decode never panics, finds the fields encoding/json finds,
// and keys are canonical: written out and decoded again they are the same
// value, equal to the original by the reference.
func FuzzDecode(f *testing.F) {
	for _, ev := range fuzzEvents {
		f.Add([]byte(ev))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fields := Decode(data)
		var names []string
		for _, fl := range fields.sorted {
			names = append(names, fl.name)
		}
		var raw map[string]json.RawMessage
		if json.Unmarshal(data, &raw) != nil || raw == nil {
			if len(names) != 0 {
				t.Fatalf("Decode(%q) found %v in what encoding/json rejects", data, names)
			}
			return
		}
		var want []string
		for name := range raw {
			want = append(want, name)
		}
		slices.SortFunc(want, compareNames)
		if !slices.Equal(names, want) {
			t.Fatalf("Decode(%q) names %q, encoding/json finds %q", data, names, want)
		}
		for _, fl := range fields.sorted {
			canon := fl.v.String()
			again := Decode([]byte(`{"x":` + canon + `}`)).get("x")
			if again != fl.v {
				t.Fatalf("Decode(%q): %s = %s decodes again as %v", data, fl.name, canon, again)
			}
			if !affordable(raw[fl.name]) {
				continue
			}
			a, _ := decodeObject([]byte(`{"x":` + canon + `}`))
			b, _ := decodeObject([]byte(`{"x":` + string(raw[fl.name]) + `}`))
			if !refEqual(a["x"], b["x"]) {
				t.Fatalf("Decode(%q): %s = %s, which the reference says differs from %s", data, fl.name, canon, raw[fl.name])
			}
		}
	})
}

func decodeObject(data []byte) (map[string]any, bool) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil || m == nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // trailing data
	}
	return m, true
}

// affordable reports whether data is valid JSON whose numbers the
// reference's big.Rat can take: short, with small exponents.
func affordable(data []byte) bool {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return err == io.EOF && json.Valid(data)
		}
		n, ok := tok.(json.Number)
		if !ok {
			continue
		}
		if len(n) > 100 {
			return false
		}
		if i := strings.IndexAny(string(n), "eE"); i >= 0 {
			if e, err := strconv.Atoi(string(n[i+1:])); err != nil || e > 1000 || e < -1000 {
				return false
			}
		}
	}
}

// FuzzMatchAttrs: a grant's --match means what matchesAttr made it mean,
// outside the corners where MatchAttrs is exact and matchesAttr rounded
// (exponents and literals over 64 characters, compared as float64) and
// invalid UTF-8 (which decoding turns into U+FFFD).
func FuzzMatchAttrs(f *testing.F) {
	for _, tt := range [][2]string{
		{`45`, "45"}, {`45.0`, "45"}, {`"45"`, "45"}, {`true`, "true"}, {`"true"`, "true"},
		{`null`, ""}, {`0.5`, ".5"}, {`45`, "0x2d"}, {`45`, "+45"}, {`{"a":1}`, "1"}, {`"a\u0062"`, "ab"},
	} {
		f.Add([]byte(tt[0]), tt[1])
	}
	f.Fuzz(func(t *testing.T, field []byte, attr string) {
		// A field's raw JSON, as matchesAttr got it, has no white space
		// around it.
		field = bytes.TrimSpace(field)
		if !json.Valid(field) {
			return
		}
		got := MatchAttrs(map[string]string{"x": attr}).Match(Decode([]byte(`{"x":` + string(field) + `}`)))
		if strings.ContainsAny(string(field)+attr, "eEpP") || len(field) > 64 || len(attr) > 64 || !utf8.ValidString(attr) || !utf8.Valid(field) {
			return
		}
		if want := matchesAttr(field, attr); got != want {
			t.Fatalf("MatchAttrs(x=%q).Match({\"x\":%s}) = %t, matchesAttr says %t", attr, field, got, want)
		}
	})
}
