package filter

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestEqualities(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		filter string
		match  map[string]string
		want   []Equality
	}{
		{"none", `{}`, nil, nil},
		{"eq number", `{"customer_id":45.0}`, nil, []Equality{{Field: "customer_id", Numbers: []string{"45"}}}},
		{"in strings", `{"status":{"in":["paid","new"]}}`, nil, []Equality{{Field: "status", Strings: []string{"new", "paid"}}}},
		{"null is not pushed", `{"region":null}`, nil, []Equality{{Field: "region", Others: true}}},
		{"or and ne are not equalities", `{"or":[{"a":1},{"b":2}],"c":{"ne":3}}`, nil, nil},
		{"and flattens", `{"and":[{"a":1},{"b":"x"}]}`, nil, []Equality{{Field: "a", Numbers: []string{"1"}}, {Field: "b", Strings: []string{"x"}}}},
		{"grant match", `{}`, map[string]string{"customer_id": "45"}, []Equality{{Field: "customer_id", Numbers: []string{"45"}, Strings: []string{"45"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := Compile(json.RawMessage(tt.filter))
			if err != nil {
				t.Fatal(err)
			}
			got := And(MatchAttrs(tt.match), f).Equalities()
			for i := range got {
				// Order within a condition is the compiler's; compare as sets.
				got[i].Numbers, got[i].Strings = sorted(got[i].Numbers), sorted(got[i].Strings)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Equalities() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func sorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
