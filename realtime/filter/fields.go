package filter

import (
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"
)

// kind is a JSON value's type as filters tell them apart.
type kind uint8

const (
	// kindNull is also what an absent field reads as: SPEC §3.1 says null
	// means "null or absent", so the two are never told apart.
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindObject
	kindArray
)

// value is a JSON value reduced to what filters compare: two values are
// equal exactly when their kinds and keys are, so a value can be a map key.
// The key is "true" or "false" for a bool, the canonical number (see
// canonNumber), the decoded text of a string, and canonical JSON for an
// object or array (members in compareNames order, no white space, numbers
// canonical), which makes deep equality a string comparison. The zero value
// is null.
type value struct {
	kind kind
	key  string
}

// maxDepth is how deeply data may nest. It is encoding/json's limit too,
// so anything else in pgpush that decodes the same data agrees on what is
// valid; it also bounds the canonicaliser's recursion.
const maxDepth = 10000

// Fields is an event's data decoded once for every filter that looks at it:
// its top-level fields, each reduced to a value. It is immutable, so any
// number of goroutines may match against one Fields.
type Fields struct {
	sorted []field // by compareNames, names unique
}

type field struct {
	name string
	v    value
	// num is v taken apart when it is a number, once per event rather
	// than once per subscriber that orders against it: a jsonb number may
	// have 147,000 digits.
	num decimal
}

// Decode reads the top-level fields of data, a JSON object. It never
// fails: data that is not a valid JSON object gives no fields, so every
// field reads as absent. When a name repeats, the last one wins, as in
// JSON.parse and encoding/json.
//
// Strings and plain numbers of the result share one copy of data: a row
// costs one copy and a small slice, not an allocation per field.
func Decode(data json.RawMessage) *Fields {
	p := scanner{s: string(data), clamp: true}
	fs, ok := p.object()
	if !ok {
		return &Fields{}
	}
	byName := func(a, b field) int { return compareNames(a.name, b.name) }
	if !slices.IsSortedFunc(fs, byName) {
		slices.SortStableFunc(fs, byName)
	}
	return &Fields{sorted: lastOfEach(fs)}
}

// compareNames orders names as PostgreSQL's jsonb keeps object keys:
// shorter first, then by bytes. Event data is read from a jsonb column, so
// its fields arrive in this order and need no sorting.
func compareNames(a, b string) int {
	if len(a) != len(b) {
		return cmpInt(int64(len(a)), int64(len(b)))
	}
	return strings.Compare(a, b)
}

// lastOfEach drops all but the last of each run of equal names.
func lastOfEach(fs []field) []field {
	i := 1
	for i < len(fs) && fs[i].name != fs[i-1].name {
		i++
	}
	if i >= len(fs) {
		return fs // the usual case: nothing repeats, nothing to move
	}
	out := fs[:0]
	for i, f := range fs {
		if i+1 < len(fs) && fs[i+1].name == f.name {
			continue
		}
		out = append(out, f)
	}
	return out
}

// get returns the named field's value, null when absent.
func (f *Fields) get(name string) value {
	if fl := f.find(name); fl != nil {
		return fl.v
	}
	return value{}
}

// find returns the named field, nil when absent. A nil Fields has none.
func (f *Fields) find(name string) *field {
	if f == nil {
		return nil
	}
	lo, hi := 0, len(f.sorted)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if compareNames(f.sorted[m].name, name) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(f.sorted) && f.sorted[lo].name == name {
		return &f.sorted[lo]
	}
	return nil
}

// scanner reads JSON from s. It validates as it goes; every method reports
// ok=false on invalid input instead of failing later.
type scanner struct {
	s string
	i int
	// clamp says what to do with a number beyond maxExponent: clamp it
	// (event data must always decode) or refuse it (a filter), setting
	// outOfRange so the caller can say why.
	clamp      bool
	outOfRange bool
	// unordered is set when an object's names are out of order: see
	// container.
	unordered bool
}

// object reads a whole top-level object and nothing after it.
func (p *scanner) object() ([]field, bool) {
	p.space()
	if !p.eat('{') {
		return nil, false
	}
	fs := make([]field, 0, 16) // most rows fit: one allocation
	p.space()
	if !p.eat('}') {
		for {
			p.space()
			name, ok := p.str()
			if !ok {
				return nil, false
			}
			p.space()
			if !p.eat(':') {
				return nil, false
			}
			p.space()
			v, ok := p.value(2) // inside the top-level object
			if !ok {
				return nil, false
			}
			fl := field{name: name, v: v}
			if v.kind == kindNumber {
				fl.num = parseCanon(v.key)
			}
			fs = append(fs, fl)
			p.space()
			if p.eat('}') {
				break
			}
			if !p.eat(',') {
				return nil, false
			}
		}
	}
	p.space()
	return fs, p.i == len(p.s)
}

// value reads one value. Scalars become substrings of s where they can;
// objects and arrays become canonical JSON.
func (p *scanner) value(depth int) (value, bool) {
	if p.i >= len(p.s) {
		return value{}, false
	}
	switch c := p.s[p.i]; {
	case c == '"':
		s, ok := p.str()
		return value{kindString, s}, ok
	case c == '-' || c >= '0' && c <= '9':
		key, ok := p.number()
		return value{kindNumber, key}, ok
	case c == '{' || c == '[':
		k := kindObject
		if c == '[' {
			k = kindArray
		}
		b, ok := p.container(depth)
		return value{k, string(b)}, ok
	case p.literal("true"):
		return value{kindBool, "true"}, true
	case p.literal("false"):
		return value{kindBool, "false"}, true
	case p.literal("null"):
		return value{}, true
	}
	return value{}, false
}

// container writes the canonical JSON of the object or array at p.i.
//
// Data read from jsonb has every object in compareNames order with unique
// names already, so the first try writes everything as it comes, in one
// pass. An object out of order stops it, and the value is written again
// with each object's members gathered and sorted before any is written.
// (Sorting each object's output when it ends would copy everything inside
// it once per enclosing object: seconds for a 1 MB row nested deeply.)
func (p *scanner) container(depth int) ([]byte, bool) {
	start := p.i
	b, ok := p.canon(make([]byte, 0, 64), depth, nil)
	if !p.unordered {
		return b, ok
	}
	p.unordered, p.i = false, start
	ends, ok := matchBrackets(p.s, start)
	if !ok {
		return nil, false
	}
	return p.canon(b[:0], depth, ends)
}

// canon appends the canonical JSON of the value at p.i to dst. depth is
// the number of objects and arrays the value would be inside of, counting
// itself, as encoding/json counts. Without ends, objects must come in
// order (see container); with it, they are sorted.
func (p *scanner) canon(dst []byte, depth int, ends *brackets) ([]byte, bool) {
	if p.i >= len(p.s) {
		return dst, false
	}
	switch p.s[p.i] {
	case '{':
		if depth > maxDepth {
			return dst, false
		}
		if ends == nil {
			return p.objectInOrder(dst, depth)
		}
		return p.objectSorted(dst, depth, ends)
	case '[':
		if depth > maxDepth {
			return dst, false
		}
		p.i++
		dst = append(dst, '[')
		p.space()
		if p.eat(']') {
			return append(dst, ']'), true
		}
		for {
			p.space()
			var ok bool
			if dst, ok = p.canon(dst, depth+1, ends); !ok {
				return dst, false
			}
			p.space()
			if p.eat(']') {
				return append(dst, ']'), true
			}
			if !p.eat(',') {
				return dst, false
			}
			dst = append(dst, ',')
		}
	}
	v, ok := p.value(depth)
	if !ok {
		return dst, false
	}
	switch v.kind {
	case kindNull:
		return append(dst, "null"...), true
	case kindString:
		return appendQuoted(dst, v.key), true
	}
	return append(dst, v.key...), true
}

// objectInOrder writes an object whose names are in compareNames order and
// unique, as they come. Any other object sets p.unordered and fails.
func (p *scanner) objectInOrder(dst []byte, depth int) ([]byte, bool) {
	p.i++ // {
	dst = append(dst, '{')
	p.space()
	if p.eat('}') {
		return append(dst, '}'), true
	}
	for prev, first := "", true; ; first = false {
		p.space()
		name, ok := p.str()
		p.space()
		if !ok || !p.eat(':') {
			return dst, false
		}
		if !first {
			if compareNames(prev, name) >= 0 {
				p.unordered = true
				return dst, false
			}
			dst = append(dst, ',')
		}
		prev = name
		dst = appendQuoted(dst, name)
		dst = append(dst, ':')
		p.space()
		if dst, ok = p.canon(dst, depth+1, nil); !ok {
			return dst, false
		}
		p.space()
		if p.eat('}') {
			return append(dst, '}'), true
		}
		if !p.eat(',') {
			return dst, false
		}
	}
}

// objectSorted writes an object's members in compareNames order, only the
// last of repeated names, so that key order and repeats do not matter. It
// reads the names first, jumping over values with ends, then writes each
// value once, in order.
func (p *scanner) objectSorted(dst []byte, depth int, ends *brackets) ([]byte, bool) {
	type member struct {
		name string
		at   int // where its value starts in s
	}
	var small [8]member
	ms := small[:0]
	p.i++ // {
	p.space()
	if !p.eat('}') {
		for {
			p.space()
			name, ok := p.str()
			p.space()
			if !ok || !p.eat(':') {
				return dst, false
			}
			p.space()
			ms = append(ms, member{name, p.i})
			if !p.skip(ends) {
				return dst, false
			}
			p.space()
			if p.eat('}') {
				break
			}
			if !p.eat(',') {
				return dst, false
			}
		}
	}
	after := p.i
	slices.SortStableFunc(ms, func(a, b member) int { return compareNames(a.name, b.name) })
	dst = append(dst, '{')
	first := true
	for i, m := range ms {
		p.i = m.at
		var ok bool
		if i+1 < len(ms) && ms[i+1].name == m.name {
			// A later member of that name wins, but this one must be
			// valid too.
			if _, ok = p.canon(nil, depth+1, ends); !ok {
				return dst, false
			}
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendQuoted(dst, m.name)
		dst = append(dst, ':')
		if dst, ok = p.canon(dst, depth+1, ends); !ok {
			return dst, false
		}
	}
	p.i = after
	return append(dst, '}'), true
}

// skip moves past the value at p.i: a container by its matching bracket,
// a scalar by reading it.
func (p *scanner) skip(ends *brackets) bool {
	if p.i < len(p.s) && (p.s[p.i] == '{' || p.s[p.i] == '[') {
		end := ends.end(p.i)
		p.i = end + 1
		return end >= 0
	}
	_, ok := p.value(0) // not a container, so depth does not matter
	return ok
}

// brackets maps where each object or array of a value starts to where it
// ends, found in one pass so that reading an object's names can jump over
// its values.
type brackets struct {
	starts, ends []int // starts ascending
}

// matchBrackets pairs the brackets of the container at s[start]. It
// checks only what pairing needs: validity is checked while writing.
func matchBrackets(s string, start int) (*brackets, bool) {
	b := &brackets{}
	var open []int // indexes into starts of containers not yet closed
	for i := start; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if len(open) >= maxDepth {
				return nil, false
			}
			open = append(open, len(b.starts))
			b.starts = append(b.starts, i)
			b.ends = append(b.ends, -1)
		case '}', ']':
			if len(open) == 0 || s[b.starts[open[len(open)-1]]] != c-2 { // '{'+2 == '}', '['+2 == ']'
				return nil, false
			}
			b.ends[open[len(open)-1]] = i
			if open = open[:len(open)-1]; len(open) == 0 {
				return b, true
			}
		}
	}
	return nil, false
}

// end returns where the container starting at pos ends, -1 if none does.
func (b *brackets) end(pos int) int {
	if i, ok := slices.BinarySearch(b.starts, pos); ok {
		return b.ends[i]
	}
	return -1
}

// str reads a string. Without escapes and with valid UTF-8 it is a
// substring of s; otherwise encoding/json decodes it, so that escapes,
// surrogates and invalid UTF-8 (U+FFFD) come out exactly as everywhere else
// in pgpush.
func (p *scanner) str() (string, bool) {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	start := p.i
	plain, ascii := true, true
	for j := start + 1; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '"':
			p.i = j + 1
			body := p.s[start+1 : j]
			if plain && (ascii || utf8.ValidString(body)) {
				return body, true
			}
			var out string
			if json.Unmarshal([]byte(p.s[start:p.i]), &out) != nil {
				return "", false
			}
			return out, true
		case c == '\\':
			plain = false
			j++ // the escaped byte cannot end the string; Unmarshal checks it
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// number reads a number and returns its canonical key.
func (p *scanner) number() (string, bool) {
	end, ok := scanNumber(p.s, p.i)
	if !ok {
		return "", false
	}
	key, ok := canonNumber(p.s[p.i:end], p.clamp)
	if !ok {
		p.outOfRange = true
		return "", false
	}
	p.i = end
	return key, true
}

func (p *scanner) literal(word string) bool {
	if strings.HasPrefix(p.s[p.i:], word) {
		p.i += len(word)
		return true
	}
	return false
}

func (p *scanner) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *scanner) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// appendQuoted writes s, valid UTF-8, as a JSON string. Escaping only what
// JSON requires keeps it one-to-one, which is all a canonical key needs.
func appendQuoted(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
