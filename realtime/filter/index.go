package filter

import "strings"

// Index holds subscriptions by one equality condition each, so that an
// event is offered to the few whose condition it meets instead of to every
// subscription of a channel: with 10,000 users each watching their own
// rows, an event costs a handful of map lookups, not 10,000 matches.
//
// Index is not safe for concurrent use: Add and Remove need the caller's
// exclusive lock. Candidates only reads, so any number of calls may run at
// once under a shared (read) lock.
//
// The zero Index is empty and ready to use.
type Index[S comparable] struct {
	byName  map[string]*fieldIndex[S]
	fields  []*fieldIndex[S] // the same as byName, for a cheap walk per event
	scanned map[S]struct{}   // subscriptions with no indexable condition
	placed  map[S]placement
	// unfiltered counts the subscriptions with no filter at all.
	unfiltered int
}

// fieldIndex holds the subscriptions indexed on one field, by the values
// their condition accepts.
type fieldIndex[S comparable] struct {
	name    string
	at      int // position in Index.fields
	buckets map[value]map[S]struct{}
	entries int // subscription×value pairs in buckets
}

// placement records where Add put a subscription so that Remove finds it
// without a search.
type placement struct {
	indexed    bool
	unfiltered bool
	field      string
	keys       []value
}

// condition is an equality-like conjunct: the filter can only hold when
// field has one of keys. Absent fields read as null, so a key of null
// ("null or absent") is indexed like any other.
type condition struct {
	field string
	keys  []value
}

// Add puts s in the index with filter f (nil matches everything),
// replacing what s had before.
//
// s is indexed by one condition of the top-level AND of f (through And
// too): field = value, or field in [values] (a grant's --match is one).
// Among those it takes the one with no null or bool value if it can (those
// match many events), then the one whose values already hold the fewest
// subscriptions, then the one with the fewest values. Filters with no such
// condition are scanned for every event.
func (ix *Index[S]) Add(s S, f *Filter) {
	ix.Remove(s)
	if ix.placed == nil {
		ix.byName = make(map[string]*fieldIndex[S])
		ix.scanned = make(map[S]struct{})
		ix.placed = make(map[S]placement)
	}
	c, ok := ix.choose(f)
	if !ok {
		ix.scanned[s] = struct{}{}
		ix.placed[s] = placement{unfiltered: f == nil}
		if f == nil {
			ix.unfiltered++
		}
		return
	}
	// An empty "in" list matches no event: indexed under no value, s is
	// never a candidate, which is right.
	ix.placed[s] = placement{indexed: true, field: c.field, keys: c.keys}
	if len(c.keys) == 0 {
		return
	}
	fi := ix.byName[c.field]
	if fi == nil {
		fi = &fieldIndex[S]{name: c.field, at: len(ix.fields), buckets: make(map[value]map[S]struct{})}
		ix.byName[c.field] = fi
		ix.fields = append(ix.fields, fi)
	}
	for _, k := range c.keys {
		b := fi.buckets[k]
		if b == nil {
			b = make(map[S]struct{}, 1)
			fi.buckets[k] = b
		}
		b[s] = struct{}{}
		fi.entries++
	}
}

// Remove takes s out of the index; it does nothing if s is not in it.
func (ix *Index[S]) Remove(s S) {
	p, ok := ix.placed[s]
	if !ok {
		return
	}
	delete(ix.placed, s)
	if p.unfiltered {
		ix.unfiltered--
	}
	if !p.indexed {
		delete(ix.scanned, s)
		return
	}
	fi := ix.byName[p.field]
	if fi == nil {
		return // indexed under no value
	}
	for _, k := range p.keys {
		b := fi.buckets[k]
		delete(b, s)
		if len(b) == 0 {
			delete(fi.buckets, k)
		}
		fi.entries--
	}
	if fi.entries == 0 {
		// Drop the field so that events stop looking it up.
		last := ix.fields[len(ix.fields)-1]
		ix.fields[fi.at], last.at = last, fi.at
		ix.fields[len(ix.fields)-1] = nil
		ix.fields = ix.fields[:len(ix.fields)-1]
		delete(ix.byName, fi.name)
	}
}

// Len returns the number of subscriptions in the index.
func (ix *Index[S]) Len() int {
	return len(ix.placed)
}

// Filtered reports whether some subscription in the index has a filter.
// Without one every subscription takes every event, whatever its fields,
// and no row can leave a subscription's view: the caller need not decode
// an event at all.
func (ix *Index[S]) Filtered() bool {
	return len(ix.placed) > ix.unfiltered
}

// All calls yield with every subscription in the index, stopping if yield
// returns false: for an event every subscriber gets whatever its filter
// (a TRUNCATE).
func (ix *Index[S]) All(yield func(S) bool) {
	for s := range ix.placed {
		if !yield(s) {
			return
		}
	}
}

// Candidates calls yield with every subscription whose indexed condition
// an event with fields f meets, and with every scanned one, each once,
// until yield returns false. The caller still matches each against its
// whole filter. yield must not call Add or Remove.
//
// The cost is one lookup per indexed field, plus the candidates.
func (ix *Index[S]) Candidates(f *Fields, yield func(S) bool) {
	// Each subscription sits under one field, and an event has one value
	// per field, so no subscription comes up twice.
	for _, fi := range ix.fields {
		for s := range fi.buckets[f.get(fi.name)] {
			if !yield(s) {
				return
			}
		}
	}
	for s := range ix.scanned {
		if !yield(s) {
			return
		}
	}
}

// choose picks the condition to index f by, as Add describes.
func (ix *Index[S]) choose(f *Filter) (condition, bool) {
	if f == nil {
		return condition{}, false
	}
	var best condition
	var bestScore [3]int
	found := false
	conjuncts(&f.root, func(n *node) {
		if n.neg || n.op != opEq && n.op != opIn {
			return
		}
		c := condition{field: n.field, keys: []value{n.val}}
		if n.op == opIn {
			c.keys = n.vals // distinct, as a subscription must sit in a bucket once
		}
		score := [3]int{rank(c.keys), ix.occupancy(c), len(c.keys)}
		if !found || less(score, c.field, bestScore, best.field) {
			best, bestScore, found = c, score, true
		}
	})
	return best, found
}

func less(a [3]int, af string, b [3]int, bf string) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return strings.Compare(af, bf) < 0 // the same filter always lands the same way
}

// rank orders conditions by how many events their values are likely to
// match: null (every event without the field) and bools (half of them)
// come last.
func rank(keys []value) int {
	r := 0
	for _, k := range keys {
		switch k.kind {
		case kindNull:
			r = max(r, 2)
		case kindBool:
			r = max(r, 1)
		}
	}
	return r
}

// occupancy counts the subscriptions already under c's values: a value
// many subscriptions wait for is a common one, so a new subscription is
// better off elsewhere.
func (ix *Index[S]) occupancy(c condition) int {
	fi := ix.byName[c.field]
	if fi == nil {
		return 0
	}
	n := 0
	for _, k := range c.keys {
		n += len(fi.buckets[k])
	}
	return n
}

// conjuncts calls visit with each condition of n's top-level AND,
// flattening nested ANDs ("and": [...] and And(...)).
func conjuncts(n *node, visit func(*node)) {
	if n.op != opAnd {
		visit(n)
		return
	}
	for i := range n.kids {
		conjuncts(&n.kids[i], visit)
	}
}
