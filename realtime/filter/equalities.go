package filter

// Equality is one condition of a filter's top-level AND that only some
// values can meet: the field must hold one of Numbers or Strings. A
// snapshot pushes these into SQL (as parameters) so that an index narrows
// the rows; the filter itself still judges every row, so SQL only has to
// keep every row the filter could accept.
type Equality struct {
	Field string
	// Numbers are canonical decimals ("45", "4.5", "1e21"): equal numbers
	// always have the same text.
	Numbers []string
	Strings []string
	// Others is set when null (or absent), a bool, an object or an array
	// also meets the condition: such a condition cannot be one plain
	// comparison, so it is not pushed down.
	Others bool
}

// Equalities lists the equality-like conditions of f's top-level AND
// (through And and nested "and"): field = value and field in [values],
// including a grant's --match. A nil filter has none.
func (f *Filter) Equalities() []Equality {
	if f == nil {
		return nil
	}
	var out []Equality
	conjuncts(&f.root, func(n *node) {
		if n.neg || n.op != opEq && n.op != opIn {
			return
		}
		vals := []value{n.val}
		if n.op == opIn {
			vals = n.vals
		}
		e := Equality{Field: n.field}
		for _, v := range vals {
			switch v.kind {
			case kindNumber:
				e.Numbers = append(e.Numbers, v.key)
			case kindString:
				e.Strings = append(e.Strings, v.key)
			default:
				e.Others = true
			}
		}
		out = append(out, e)
	})
	return out
}
