package triggers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgpush/pgpush/db"
)

// Errors SnapshotQuery returns.
var (
	ErrNoTable      = errors.New("no watched table behind this channel")
	ErrNoPrimaryKey = errors.New("the watched table has no primary key")
)

// Equal narrows a snapshot: column must hold one of Numbers (canonical
// decimals) or Strings. It is only a pre-selection that lets an index
// work: the caller still judges every row with the subscription's exact
// rules, so a condition that cannot be expressed safely is dropped.
type Equal struct {
	Column  string
	Numbers []string
	Strings []string
}

// SnapshotQuery builds the query that reads the rows of the table watched
// on channel as capture() sends them (the same columns, excluded ones never
// read out, timestamps formatted the same way), one jsonb per row as text,
// in primary-key order. Names come from the catalog, quoted; every value
// from eqs is a parameter, never SQL text.
func SnapshotQuery(ctx context.Context, q db.Querier, channel string, eqs []Equal) (string, []any, error) {
	rows, err := q.Query(ctx, `SELECT table_oid, config FROM pgpush.watched w WHERE w.channel = $1`, channel)
	if err != nil {
		return "", nil, fmt.Errorf("snapshot of %q: %w", channel, err)
	}
	type watched struct {
		oid uint32
		w   Watched
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (watched, error) {
		var t watched
		err := r.Scan(&t.oid, &t.w)
		return t, err
	})
	if err != nil {
		return "", nil, fmt.Errorf("snapshot of %q: %w", channel, err)
	}
	switch len(tables) {
	case 0:
		return "", nil, ErrNoTable
	case 1:
	default:
		return "", nil, fmt.Errorf("snapshot of %q: %d tables share the channel: watch them on channels of their own", channel, len(tables))
	}
	t := tables[0]
	var table string
	var partitioned bool
	err = q.QueryRow(ctx, `
		SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind = 'p'
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, t.oid).Scan(&table, &partitioned)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, ErrNoTable // dropped since it was watched
	}
	if err != nil {
		return "", nil, fmt.Errorf("snapshot of %q: table: %w", channel, err)
	}

	rows, err = q.Query(ctx, `
		SELECT a.attname, ty.typname, coalesce(i.indisprimary, false), coalesce(array_position(i.indkey::int2[], a.attnum), 0)
		FROM pg_attribute a
		JOIN pg_type ty ON ty.oid = a.atttypid
		LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY (i.indkey)
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, t.oid)
	if err != nil {
		return "", nil, fmt.Errorf("snapshot of %q: columns: %w", channel, err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (snapshotColumn, error) {
		var c snapshotColumn
		err := r.Scan(&c.name, &c.typ, &c.pk, &c.pkPos)
		return c, err
	})
	if err != nil {
		return "", nil, fmt.Errorf("snapshot of %q: columns: %w", channel, err)
	}
	if !partitioned {
		// A table's own rows: an inheritance child is watched on its own.
		// A partitioned table holds none itself: its partitions' rows are
		// its rows.
		table = "ONLY " + table
	}
	return buildSnapshotSQL(table, t.w, cols, eqs)
}

// snapshotColumn is a column of a watched table as the catalog has it.
type snapshotColumn struct {
	name, typ string
	pk        bool
	pkPos     int16 // position in the primary key, from 1
}

// buildSnapshotSQL is SnapshotQuery's pure part: from the quoted table
// (with ONLY where its children are not its rows), the watch configuration
// and the table's columns, the statement and its parameters.
func buildSnapshotSQL(table string, w Watched, columns []snapshotColumn, eqs []Equal) (string, []any, error) {
	var pk []snapshotColumn
	for _, c := range columns {
		if c.pk {
			pk = append(pk, c)
		}
	}
	if len(pk) == 0 {
		return "", nil, ErrNoPrimaryKey
	}
	slices.SortFunc(pk, func(a, b snapshotColumn) int { return int(a.pkPos) - int(b.pkPos) })

	ident := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	var args []any
	param := func(v any) string {
		if list, ok := v.([]string); ok && list == nil {
			v = []string{} // pgx sends a nil slice as NULL, which nulls the row
		}
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}

	// The row as capture() builds it: the whole row less the private
	// columns (--exclude, and with --only every column not listed, so a
	// column added later stays private).
	var private []string
	for _, c := range columns {
		if w.private(c.name) {
			private = append(private, c.name)
		}
	}
	row := "to_jsonb(t) - " + param(private) + "::text[]"
	var tz, naive []string
	for _, c := range columns {
		if w.private(c.name) || !slices.Contains(w.Columns, c.name) {
			continue // capture formats the columns known when it was watched
		}
		switch c.typ {
		case "timestamptz":
			tz = append(tz, c.name)
		case "timestamp":
			naive = append(naive, c.name)
		}
	}
	if len(tz) > 0 || len(naive) > 0 {
		row = "pgpush.iso_times(" + row + ", " + param(tz) + "::text[], " + param(naive) + "::text[])"
	}

	var where []string
	for _, e := range eqs {
		i := slices.IndexFunc(columns, func(c snapshotColumn) bool { return c.name == e.Column })
		if i < 0 || w.private(e.Column) {
			continue // a private column never decides what leaves
		}
		cast, values := pushable(columns[i].typ, e)
		if cast == "" {
			continue
		}
		where = append(where, "t."+ident(e.Column)+" = ANY ("+param(values)+"::"+cast+"[])")
	}
	var order []string
	for _, k := range pk {
		order = append(order, "t."+ident(k.name))
	}
	stmt := "SELECT (" + row + ")::text FROM " + table + " t"
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ")
	}
	return stmt + " ORDER BY " + strings.Join(order, ", "), args, nil
}

var uuidText = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// intBits is the size of each integer type, to push only values it holds.
var intBits = map[string]int{"int2": 16, "int4": 32, "int8": 64}

// pushable returns the array type to compare column type typ with, and
// the values of e that such a column can hold, or "" when the condition
// is not pushed down. A value the column cannot hold is left out (it could
// never match); an unknown type is never pushed, since a failed cast would
// fail the query.
func pushable(typ string, e Equal) (string, []string) {
	switch typ {
	case "int2", "int4", "int8":
		var out []string
		for _, n := range e.Numbers {
			if _, err := strconv.ParseInt(n, 10, intBits[typ]); err == nil {
				out = append(out, n)
			}
		}
		return typ, out
	case "float4", "float8":
		var out []string
		for _, n := range e.Numbers {
			bits := 64
			if typ == "float4" {
				bits = 32
			}
			// Out of range for the type would fail the cast; such a value
			// cannot be in the column anyway.
			f, err := strconv.ParseFloat(n, bits)
			underflow := f == 0 && strings.Trim(n, "-0.") != ""
			if err == nil && !underflow && !math.IsInf(f, 0) {
				out = append(out, n)
			}
		}
		return typ, out
	case "numeric":
		var out []string
		for _, n := range e.Numbers {
			if numericHolds(n) {
				out = append(out, n)
			}
		}
		return typ, out
	case "text", "varchar":
		return "text", slices.Clone(e.Strings)
	case "uuid":
		var out []string
		for _, s := range e.Strings {
			if uuidText.MatchString(s) {
				out = append(out, s)
			}
		}
		return "uuid", out
	}
	return "", nil
}

// numericHolds reports whether numeric accepts the canonical number n:
// its exponent (decimal point position) must be within numeric's range,
// 131072 digits before the point and 16383 after.
func numericHolds(n string) bool {
	mantissa, exp, hasExp := strings.Cut(strings.TrimPrefix(n, "-"), "e")
	e := 0
	if hasExp {
		v, err := strconv.Atoi(exp)
		if err != nil {
			return false
		}
		e = v
	}
	whole, frac, _ := strings.Cut(mantissa, ".")
	return len(whole)+e <= 131072 && len(frac)-e <= 16383
}
