// Package filter owns the subscription filter language of SPEC §3.1 and
// the grant's --match rule: compiling them once into predicates, decoding an
// event's data once into normalised top-level fields that every predicate
// reads, and indexing subscriptions by an equality condition so that an
// event is offered only to those it can match.
//
// Semantics, where SPEC §3.1 leaves room:
//
//   - null and absent are the same: "field": null, {"eq": null} and
//     {"exists": false} all mean "null or absent"; {"exists": true} means
//     "present and not null"; ne and nin are the exact negations of eq and
//     in, so {"ne": 5} also holds when the field is absent.
//   - Numbers compare by exact decimal value: 45, 45.0 and 4.5e1 are equal,
//     9007199254740993 and 9007199254740992 are not. A number never equals
//     or orders against a string, nor a bool against "true". lt, lte, gt
//     and gte hold only between two numbers or two strings (by code point).
//   - Objects and arrays in eq, ne, in and nin compare deeply: key order and
//     white space do not matter. A field's object form is always an operator
//     object, so comparing with an object needs {"eq": {...}}.
//   - Exponents are never expanded, so 1e999999999 costs 11 bytes. A
//     filter number whose decimal exponent is beyond ±10^18 is refused; in
//     event data such a number keeps its sign and lies beyond every filter
//     number (1e1000000000000000000 above all of them, 1e-1000000000000000000
//     between 0 and the smallest), equal to none.
//   - "or", "and" and "not" are reserved names at every filter level: a
//     data field of that name cannot be filtered on. or and and need a
//     non-empty array of filter objects.
//   - Each field comparison, each operator and each or, and, not counts as
//     one of the 64 conditions. The top-level object is level 1 of 8; each
//     filter object inside or, and or not is one level deeper. Operator
//     objects and the values compared are not levels.
//   - When a JSON object repeats a name the last one wins, as in JSON.parse.
//   - Filters address the top-level fields of an event's data only.
//     Filters larger than 64 KiB are refused.
package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Limits of SPEC §3.1, and the largest filter Compile reads (a client frame
// is at most that large anyway).
const (
	maxLevels     = 8
	maxConditions = 64
	maxInValues   = 1000
	maxFilterSize = 64 << 10
)

// Filter is a compiled filter: an immutable predicate over Fields, safe to
// share between goroutines. A nil *Filter matches everything.
type Filter struct {
	root node
}

type op uint8

const (
	opAnd op = iota
	opOr
	opNot
	opEq // also ne (neg), exists (neg for true)
	opIn // also nin (neg)
	opLt
	opLte
	opGt
	opGte
	opPrefix
)

// node is one condition. Leaves name a field; and, or and not have kids.
type node struct {
	op    op
	neg   bool
	field string
	val   value              // eq, the ordering operators, prefix
	num   decimal            // val taken apart, when it is a number
	vals  []value            // in: distinct values
	set   map[value]struct{} // in: the same, when too many to search
	// maxKey is the longest key in set: a longer field value is in no
	// set, and is not hashed (a 1 MB text field, once per subscriber).
	maxKey int
	kids   []node
}

// Match reports whether an event with fields f passes the filter. It
// decodes nothing and allocates nothing.
func (flt *Filter) Match(f *Fields) bool {
	return flt == nil || flt.root.match(f)
}

func (n *node) match(f *Fields) bool {
	switch n.op {
	case opAnd:
		for i := range n.kids {
			if !n.kids[i].match(f) {
				return false
			}
		}
		return true
	case opOr:
		for i := range n.kids {
			if n.kids[i].match(f) {
				return true
			}
		}
		return false
	case opNot:
		return !n.kids[0].match(f)
	case opEq:
		return (f.get(n.field) == n.val) != n.neg
	case opIn:
		v := f.get(n.field)
		if n.set != nil {
			ok := len(v.key) <= n.maxKey
			if ok {
				_, ok = n.set[v]
			}
			return ok != n.neg
		}
		return slices.Contains(n.vals, v) != n.neg
	case opPrefix:
		v := f.get(n.field)
		return v.kind == kindString && strings.HasPrefix(v.key, n.val.key)
	}
	fl := f.find(n.field)
	if fl == nil || fl.v.kind != n.val.kind {
		return false // a number never orders against a string, nor null against either
	}
	var c int
	if fl.v.kind == kindNumber {
		c = compareDecimal(fl.num, n.num)
	} else {
		c = strings.Compare(fl.v.key, n.val.key) // UTF-8 byte order is code point order
	}
	switch n.op {
	case opLt:
		return c < 0
	case opLte:
		return c <= 0
	case opGt:
		return c > 0
	}
	return c >= 0 // opGte
}

// And returns a filter that holds when every one of filters does; nil
// entries (match everything) are left out. The index sees through it:
// equality conditions of every part can be indexed.
func And(filters ...*Filter) *Filter {
	var kids []node
	for _, f := range filters {
		if f != nil {
			kids = append(kids, f.root)
		}
	}
	switch len(kids) {
	case 0:
		return nil
	case 1:
		return &Filter{root: kids[0]}
	}
	return &Filter{root: node{op: opAnd, kids: kids}}
}

// MatchAttrs compiles a grant's --match (data field → user attribute) with
// the meaning realtime's matchesAttr gave it: the field must be present and
// equal the attribute as a string, or as a number when the attribute reads
// as one ("45" matches 45, 45.0 and "45"), or as a bool when it is "true" or
// "false". Where matchesAttr compared as float64 (an attribute or field in
// exponent form, an attribute over 64 characters), MatchAttrs is exact, and
// an attribute reads as a number there only if it is a JSON number. An
// empty match gives nil, which matches everything.
func MatchAttrs(match map[string]string) *Filter {
	if len(match) == 0 {
		return nil
	}
	names := make([]string, 0, len(match))
	for name := range match {
		names = append(names, name)
	}
	slices.Sort(names) // the same grant always compiles the same way
	root := node{op: opAnd}
	for _, name := range names {
		attr := match[name]
		vals := []value{{kindString, attr}}
		if attr == "true" || attr == "false" {
			vals = append(vals, value{kindBool, attr})
		}
		if key, ok := attrNumber(attr); ok {
			vals = append(vals, value{kindNumber, key})
		}
		root.kids = append(root.kids, newIn(name, vals, false))
	}
	return &Filter{root: root}
}

// Compile parses a filter (SPEC §3.1). null, {} and empty input compile to
// nil, which matches everything. Errors name the problem and where it is,
// in lowercase, fit to show a client.
func Compile(raw json.RawMessage) (*Filter, error) {
	if len(raw) > maxFilterSize {
		return nil, fmt.Errorf("filter: larger than %d bytes", maxFilterSize)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if !json.Valid(raw) {
		return nil, errors.New("filter: not valid JSON")
	}
	c := compiler{}
	root, err := c.filter(raw, 1, "")
	if err != nil {
		return nil, err
	}
	if len(root.kids) == 0 {
		return nil, nil
	}
	return &Filter{root: root}, nil
}

// compiler walks a valid filter. Every step counts a condition or a level
// first, so work stays proportional to the input and the limits.
type compiler struct {
	conditions int
}

// filter compiles one filter object: the AND of its keys. path says where
// it is for errors ("or[1].not"), empty at the top.
func (c *compiler) filter(raw json.RawMessage, level int, path string) (node, error) {
	if level > maxLevels {
		return node{}, fmt.Errorf("filter: nested deeper than %d levels", maxLevels)
	}
	members, ok := objectMembers(raw)
	if !ok {
		if path == "" {
			return node{}, errors.New("filter: must be a JSON object")
		}
		return node{}, fmt.Errorf("filter: %s must be a filter object", path)
	}
	fail := func(format string, args ...any) (node, error) {
		msg := fmt.Sprintf(format, args...)
		if path != "" {
			msg = path + ": " + msg
		}
		return node{}, errors.New("filter: " + msg)
	}
	and := node{op: opAnd}
	for _, name := range sortedKeys(members) {
		v := members[name]
		switch name {
		case "or", "and":
			if err := c.count(); err != nil {
				return node{}, err
			}
			var elems []json.RawMessage
			if json.Unmarshal(v, &elems) != nil || len(elems) == 0 {
				return fail("%q needs a non-empty array of filters", name)
			}
			// An empty filter ({}) holds for every event: it leaves an
			// and unchanged and makes an or always hold. Dropping it
			// keeps Match's work within the counted conditions, however
			// many {} a client sends.
			n, always := node{op: opAnd}, false
			if name == "or" {
				n.op = opOr
			}
			for i, e := range elems {
				kid, err := c.filter(e, level+1, fmt.Sprintf("%s%s[%d]", prefix(path), name, i))
				if err != nil {
					return node{}, err
				}
				if len(kid.kids) == 0 {
					always = always || name == "or"
					continue
				}
				n.kids = append(n.kids, kid)
			}
			if !always && len(n.kids) > 0 {
				and.kids = append(and.kids, n)
			}
		case "not":
			if err := c.count(); err != nil {
				return node{}, err
			}
			kid, err := c.filter(v, level+1, prefix(path)+"not")
			if err != nil {
				return node{}, err
			}
			and.kids = append(and.kids, node{op: opNot, kids: []node{kid}})
		default:
			leaves, err := c.field(name, v)
			if errors.Is(err, errTooManyConditions) {
				return node{}, err
			}
			if err != nil {
				return fail("%s", err)
			}
			and.kids = append(and.kids, leaves...)
		}
	}
	return and, nil
}

// field compiles "field": value or "field": {"op": value, ...}.
func (c *compiler) field(name string, raw json.RawMessage) ([]node, error) {
	if raw = bytes.TrimSpace(raw); len(raw) > 0 && raw[0] != '{' {
		if err := c.count(); err != nil {
			return nil, err
		}
		v, err := parseValue(raw, name)
		return []node{{op: opEq, field: name, val: v}}, err
	}
	ops, _ := objectMembers(raw)
	if len(ops) == 0 {
		return nil, fmt.Errorf("no operator on field %q (to compare with {}, use {\"eq\": {}})", name)
	}
	var leaves []node
	for _, o := range sortedKeys(ops) {
		if err := c.count(); err != nil {
			return nil, err
		}
		n, err := operator(name, o, ops[o])
		if err != nil {
			return nil, err
		}
		leaves = append(leaves, n)
	}
	return leaves, nil
}

// operator compiles one "op": value of field name.
func operator(name, o string, raw json.RawMessage) (node, error) {
	n := node{field: name}
	switch o {
	case "eq", "ne":
		v, err := parseValue(raw, name)
		n.op, n.val, n.neg = opEq, v, o == "ne"
		return n, err
	case "lt", "lte", "gt", "gte":
		v, err := parseValue(raw, name)
		if err != nil {
			return n, err
		}
		if v.kind != kindNumber && v.kind != kindString {
			return n, fmt.Errorf("%q on %q needs a number or a string", o, name)
		}
		n.op, n.val = opLt, v
		switch o {
		case "lte":
			n.op = opLte
		case "gt":
			n.op = opGt
		case "gte":
			n.op = opGte
		}
		if v.kind == kindNumber {
			n.num = parseCanon(v.key)
		}
		return n, nil
	case "in", "nin":
		var elems []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
			return n, fmt.Errorf("%q on %q needs an array", o, name)
		}
		if len(elems) > maxInValues {
			return n, fmt.Errorf("%q on %q has %d values, at most %d", o, name, len(elems), maxInValues)
		}
		vals := make([]value, 0, len(elems))
		for _, e := range elems {
			v, err := parseValue(e, name)
			if err != nil {
				return n, err
			}
			vals = append(vals, v)
		}
		return newIn(name, vals, o == "nin"), nil
	case "prefix":
		v, err := parseValue(raw, name)
		if err == nil && v.kind != kindString {
			err = fmt.Errorf("%q on %q needs a string", o, name)
		}
		n.op, n.val = opPrefix, v
		return n, err
	case "exists":
		switch string(raw) {
		case "true": // present and not null
			return node{op: opEq, field: name, neg: true}, nil
		case "false": // absent or null
			return node{op: opEq, field: name}, nil
		}
		return n, fmt.Errorf("%q on %q needs true or false", o, name)
	}
	return n, fmt.Errorf("unknown operator %q on field %q", o, name)
}

var errTooManyConditions = fmt.Errorf("filter: more than %d conditions", maxConditions)

// maxScanValues is how many values an "in" searches one by one; comparing a
// few kind+string pairs beats hashing the field's value.
const maxScanValues = 8

// newIn builds "field in vals" (negated: nin), each value once.
func newIn(field string, vals []value, neg bool) node {
	n := node{op: opIn, field: field, neg: neg}
	seen := make(map[value]struct{}, len(vals))
	for _, v := range vals {
		if _, dup := seen[v]; !dup {
			seen[v] = struct{}{}
			n.vals = append(n.vals, v)
		}
	}
	if len(n.vals) > maxScanValues {
		n.set = seen
		for _, v := range n.vals {
			n.maxKey = max(n.maxKey, len(v.key))
		}
	}
	return n
}

func (c *compiler) count() error {
	c.conditions++
	if c.conditions > maxConditions {
		return errTooManyConditions
	}
	return nil
}

// parseValue reduces a valid JSON value of a filter to a value.
func parseValue(raw json.RawMessage, name string) (value, error) {
	p := scanner{s: string(raw)}
	p.space()
	v, ok := p.value(1)
	switch {
	case p.outOfRange:
		return v, fmt.Errorf("number out of range on %q", name)
	case !ok:
		// Unreachable for input json.Valid accepted; say so plainly if not.
		return v, fmt.Errorf("bad value on %q", name)
	}
	return v, nil
}

// objectMembers decodes a JSON object's members, reporting false for
// anything else (null included: encoding/json would accept it silently).
func objectMembers(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
		return nil, false
	}
	return m, true
}

// sortedKeys makes compiling, and so its errors, deterministic.
func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + "."
}

// String returns the filter in a short readable form for logs and tests.
func (flt *Filter) String() string {
	if flt == nil {
		return "true"
	}
	var b strings.Builder
	flt.root.write(&b)
	return b.String()
}

func (n *node) write(b *strings.Builder) {
	switch n.op {
	case opAnd, opOr:
		b.WriteString([]string{"and(", "or("}[n.op])
		for i := range n.kids {
			if i > 0 {
				b.WriteString(", ")
			}
			n.kids[i].write(b)
		}
		b.WriteByte(')')
		return
	case opNot:
		b.WriteString("not(")
		n.kids[0].write(b)
		b.WriteByte(')')
		return
	}
	if n.neg {
		b.WriteString("not ")
	}
	b.WriteString(strconv.Quote(n.field))
	switch n.op {
	case opEq:
		b.WriteString(" = ")
		b.WriteString(n.val.String())
	case opIn:
		keys := make([]string, 0, len(n.vals))
		for _, v := range n.vals {
			keys = append(keys, v.String())
		}
		slices.Sort(keys)
		b.WriteString(" in [" + strings.Join(keys, " ") + "]")
	default:
		b.WriteString([]string{opLt: " < ", opLte: " <= ", opGt: " > ", opGte: " >= ", opPrefix: " prefix "}[n.op])
		b.WriteString(n.val.String())
	}
}

// String writes v as JSON.
func (v value) String() string {
	switch v.kind {
	case kindNull:
		return "null"
	case kindString:
		return string(appendQuoted(nil, v.key))
	}
	return v.key
}
