package filter

import (
	"slices"
	"strconv"
	"sync"
	"testing"
)

// candidates lists what ix offers for data, sorted.
func candidates(ix *Index[int], data string) []int {
	var got []int
	ix.Candidates(Decode([]byte(data)), func(s int) bool {
		got = append(got, s)
		return true
	})
	slices.Sort(got)
	return got
}

func TestIndexCandidates(t *testing.T) {
	t.Parallel()
	var ix Index[int]
	ix.Add(1, MatchAttrs(map[string]string{"customer_id": "45"}))
	ix.Add(2, MatchAttrs(map[string]string{"customer_id": "46"}))
	ix.Add(3, mustCompile(t, `{"customer_id":{"in":[45,47]}}`))
	ix.Add(4, mustCompile(t, `{"total":{"gt":10}}`))  // scanned
	ix.Add(5, nil)                                    // scanned
	ix.Add(6, mustCompile(t, `{"deleted_at":null}`))  // null or absent
	ix.Add(7, mustCompile(t, `{"status":{"in":[]}}`)) // never matches
	ix.Add(8, And(mustCompile(t, `{"paid":true}`), MatchAttrs(map[string]string{"customer_id": "47"})))
	ix.Add(9, mustCompile(t, `{"and":[{"status":"paid"}],"customer_id":"45"}`))
	tests := []struct {
		data string
		want []int
	}{
		{`{"customer_id":45}`, []int{1, 3, 4, 5, 6}},
		{`{"customer_id":"45","status":"paid"}`, []int{1, 4, 5, 6, 9}},
		{`{"customer_id":45.0,"deleted_at":"2026-01-01"}`, []int{1, 3, 4, 5}},
		{`{"customer_id":47,"deleted_at":null}`, []int{3, 4, 5, 6, 8}},
		{`{}`, []int{4, 5, 6}},
		{`not json`, []int{4, 5, 6}},
	}
	for _, tt := range tests {
		if got := candidates(&ix, tt.data); !slices.Equal(got, tt.want) {
			t.Errorf("Candidates(%s) = %v, want %v", tt.data, got, tt.want)
		}
	}
	if got := ix.Len(); got != 9 {
		t.Errorf("Len() = %d, want 9", got)
	}
}

func TestIndexRemoveAndReplace(t *testing.T) {
	t.Parallel()
	var ix Index[int]
	ix.Remove(1) // not there: nothing happens
	ix.Add(1, MatchAttrs(map[string]string{"customer_id": "45"}))
	ix.Add(2, mustCompile(t, `{"status":"paid"}`))
	ix.Add(3, nil)
	ix.Add(1, mustCompile(t, `{"status":"paid"}`)) // replaces
	const event = `{"customer_id":45,"status":"paid"}`
	if got, want := candidates(&ix, event), []int{1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("after replacing: Candidates = %v, want %v", got, want)
	}
	if got := len(ix.fields); got != 1 {
		t.Errorf("after replacing: %d indexed fields, want 1 (customer_id dropped)", got)
	}
	ix.Remove(2)
	ix.Remove(3)
	ix.Remove(3)
	if got, want := candidates(&ix, event), []int{1}; !slices.Equal(got, want) {
		t.Errorf("after removing: Candidates = %v, want %v", got, want)
	}
	ix.Remove(1)
	if ix.Len() != 0 || len(ix.fields) != 0 || len(ix.byName) != 0 || len(ix.scanned) != 0 {
		t.Errorf("empty index still holds something: %d subscriptions, %d fields, %d scanned", ix.Len(), len(ix.fields), len(ix.scanned))
	}
}

// TestIndexFiltered: Filtered holds while any subscription has a filter,
// through replacing and removing.
func TestIndexFiltered(t *testing.T) {
	t.Parallel()
	var ix Index[int]
	check := func(step string, want bool) {
		t.Helper()
		if got := ix.Filtered(); got != want {
			t.Errorf("%s: Filtered() = %v, want %v", step, got, want)
		}
	}
	check("empty", false)
	ix.Add(1, nil)
	ix.Add(2, nil)
	check("two without a filter", false)
	ix.Add(2, mustCompile(t, `{"total":{"gt":10}}`)) // scanned, filtered
	check("one given a scanned filter", true)
	ix.Add(2, nil)
	check("its filter taken back", false)
	ix.Add(3, MatchAttrs(map[string]string{"customer_id": "45"})) // indexed
	check("an indexed one added", true)
	ix.Remove(3)
	ix.Remove(3)
	check("the indexed one removed twice", false)
	ix.Remove(1)
	ix.Remove(2)
	check("emptied", false)
	ix.Add(4, mustCompile(t, `{"status":{"in":[]}}`)) // matches nothing
	check("a filter matching nothing", true)
}

func TestIndexCandidatesStops(t *testing.T) {
	t.Parallel()
	var ix Index[int]
	for i := range 10 {
		ix.Add(i, nil)
		ix.Add(10+i, mustCompile(t, `{"a":1}`))
	}
	n := 0
	ix.Candidates(Decode([]byte(`{"a":1}`)), func(int) bool {
		n++
		return n < 3
	})
	if n != 3 {
		t.Errorf("yield called %d times after returning false at 3", n)
	}
}

// TestIndexChoice checks which condition a subscription is indexed by:
// a per-user value beats a value shared by many, null and bools come last.
func TestIndexChoice(t *testing.T) {
	t.Parallel()
	var ix Index[int]
	for i := range 100 {
		ix.Add(i, And(MatchAttrs(map[string]string{"customer_id": strconv.Itoa(i)}),
			mustCompile(t, `{"status":"paid","deleted_at":null,"paid":true}`)))
	}
	// Only the first subscriptions can land on "status"; then it is crowded.
	if got := len(candidates(&ix, `{"customer_id":7,"status":"paid","paid":true}`)); got > 3 {
		t.Errorf("an event for one customer is offered to %d subscriptions, want at most 3", got)
	}
	tests := []struct {
		filter string
		field  string
	}{
		{`{"deleted_at":null,"paid":true}`, "paid"},
		{`{"deleted_at":null,"paid":true,"id":{"in":[1,2]}}`, "id"},
		{`{"deleted_at":null}`, "deleted_at"},
		{`{"a":{"ne":1},"b":{"nin":[1]},"c":{"gt":1},"or":[{"d":1}],"not":{"e":1}}`, ""},
	}
	for _, tt := range tests {
		ix.Add(-1, mustCompile(t, tt.filter))
		p := ix.placed[-1]
		if p.field != tt.field || p.indexed != (tt.field != "") {
			t.Errorf("Add(%s) indexed by %q (indexed %t), want %q", tt.filter, p.field, p.indexed, tt.field)
		}
	}
}

// TestIndexConcurrentCandidates: Candidates only reads, so a hub may call it
// from several goroutines under a read lock (go test -race checks it).
func TestIndexConcurrentCandidates(t *testing.T) {
	t.Parallel()
	var ix Index[int]
	for i := range 100 {
		ix.Add(i, MatchAttrs(map[string]string{"customer_id": strconv.Itoa(i % 10)}))
	}
	ix.Add(100, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				data := `{"customer_id":` + strconv.Itoa((g+i)%10) + `}`
				if got := len(candidates(&ix, data)); got != 11 {
					t.Errorf("Candidates(%s) gives %d subscriptions, want 11", data, got)
				}
			}
		})
	}
	wg.Wait()
}
