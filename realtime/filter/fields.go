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

// get returns the named field, null when absent. A nil Fields has none.
func (f *Fields) get(name string) value {
	if f == nil {
		return value{}
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
		return f.sorted[lo].v
	}
	return value{}
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
			fs = append(fs, field{name, v})
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
		b, ok := p.canon(make([]byte, 0, 64), depth)
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

// canon appends the canonical JSON of the value at p.i to dst. depth is
// the number of objects and arrays the value would be inside of, counting
// itself, as encoding/json counts.
func (p *scanner) canon(dst []byte, depth int) ([]byte, bool) {
	if p.i >= len(p.s) {
		return dst, false
	}
	switch p.s[p.i] {
	case '{':
		if depth > maxDepth {
			return dst, false
		}
		return p.canonObject(dst, depth)
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
			if dst, ok = p.canon(dst, depth+1); !ok {
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

// canonObject writes an object's members sorted by compareNames, the last
// of repeated names only, so that key order and repeats do not matter.
func (p *scanner) canonObject(dst []byte, depth int) ([]byte, bool) {
	p.i++ // {
	type member struct {
		name       string
		start, end int // its canonical value, in dst past mark
	}
	var small [8]member
	ms := small[:0]
	start, mark := p.i, len(dst)
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
			start := len(dst)
			if dst, ok = p.canon(dst, depth+1); !ok {
				return dst, false
			}
			ms = append(ms, member{name, start, len(dst)})
			p.space()
			if p.eat('}') {
				break
			}
			if !p.eat(',') {
				return dst, false
			}
		}
	}
	byName := func(a, b member) int { return compareNames(a.name, b.name) }
	if !slices.IsSortedFunc(ms, byName) {
		slices.SortStableFunc(ms, byName)
	}
	out := make([]byte, 1, len(dst)-mark+p.i-start) // about the size it will be
	out[0] = '{'

	for i, m := range ms {
		if i+1 < len(ms) && ms[i+1].name == m.name {
			continue // a later member of that name wins
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = appendQuoted(out, m.name)
		out = append(out, ':')
		out = append(out, dst[m.start:m.end]...)
	}
	return append(append(dst[:mark], out...), '}'), true
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
