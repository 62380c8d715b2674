// Package triggers owns the SQL that `pgpush watch` installs on an
// application table and `pgpush unwatch` removes: one row trigger calling
// a function generated for the table, pgpush.capture_<oid>(), whose
// entity, channel and column rules are constants (pgpush.install_capture,
// migration 00013). A partitioned table, or one with inheritance
// children, keeps the statement triggers with transition tables that call
// the generic pgpush.capture_rows() with those rules as arguments
// (migration 00007): a row trigger on a partitioned table would be cloned
// onto its partitions under the same name, and one on an inheritance
// parent would miss the children's rows that a statement on the parent
// changes.
package triggers

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
)

// TriggerName is the name of the row trigger pgpush installs on a watched
// table, and the prefix of the statement triggers on a partitioned table
// or an inheritance parent.
const TriggerName = "pgpush_capture"

// statementTriggers are the names of the statement triggers, by operation.
var statementTriggers = [...]struct{ name, event, referencing string }{
	{TriggerName + "_insert", "INSERT", "REFERENCING NEW TABLE AS new_rows"},
	{TriggerName + "_update", "UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"},
	{TriggerName + "_delete", "DELETE", "REFERENCING OLD TABLE AS old_rows"},
}

// TruncateTriggerName is the statement trigger that announces a TRUNCATE
// of a watched table as <entity>:truncated.
const TruncateTriggerName = TriggerName + "_truncate"

// Operations that --on accepts.
var operations = []string{"insert", "update", "delete"}

// invalidNameSyntax is PostgreSQL's error code for an unparsable name.
const invalidNameSyntax = "42602"

// ErrNotWatched is returned by Unwatch for a table without pgpush's trigger.
var ErrNotWatched = errors.New("table is not watched")

var (
	unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9_.\-]`)
	plainIdentifier = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

// Config is what `pgpush watch` asks for. Empty Entity and Channel take
// their defaults: the table's name in the singular, and "<entity>_changes".
type Config struct {
	Table       string
	Entity      string
	Channel     string
	Exclude     []string
	Only        []string
	Broadcast   string
	BroadcastOn []string
}

// Column is a column of a watched table.
type Column struct {
	Name string
	Type string // pg_type.typname, e.g. "int4", "timestamptz"
}

// Watched is a table with pgpush's trigger, as stored in pgpush.watched.
type Watched struct {
	Table       string   `json:"table"` // schema-qualified and quoted as needed
	Entity      string   `json:"entity"`
	Channel     string   `json:"channel"`
	Columns     []string `json:"columns"` // the columns that leave the database
	Exclude     []string `json:"exclude,omitempty"`
	Only        []string `json:"only,omitempty"`
	Broadcast   string   `json:"broadcast,omitempty"`
	BroadcastOn []string `json:"broadcast_on,omitempty"`

	tzColumns    []string
	naiveColumns []string
	// statementTriggers: the table is partitioned or has inheritance
	// children (and is not itself a partition or child), so it gets the
	// generic statement triggers.
	statementTriggers bool
}

// Singular turns a table name into an entity name: orders → order,
// categories → category, addresses → address, statuses → status.
func Singular(table string) string {
	lower := strings.ToLower(table)
	switch {
	case len(lower) > 3 && strings.HasSuffix(lower, "ies"):
		return table[:len(table)-3] + "y"
	case strings.HasSuffix(lower, "ouses"), strings.HasSuffix(lower, "auses"):
		return table[:len(table)-1] // warehouses, causes
	case strings.HasSuffix(lower, "sses"), strings.HasSuffix(lower, "shes"),
		strings.HasSuffix(lower, "ches"), strings.HasSuffix(lower, "xes"),
		strings.HasSuffix(lower, "zzes"), strings.HasSuffix(lower, "uses"):
		return table[:len(table)-2]
	case strings.HasSuffix(lower, "ss"), strings.HasSuffix(lower, "us"), strings.HasSuffix(lower, "is"):
		return table
	case len(lower) > 1 && strings.HasSuffix(lower, "s"):
		return table[:len(table)-1]
	}
	return table
}

// resolve fills defaults and checks cfg against the table's real columns.
func resolve(cfg Config, relname string, columns []Column) (Watched, error) {
	w := Watched{
		Entity:    cfg.Entity,
		Channel:   cfg.Channel,
		Exclude:   dedupe(cfg.Exclude),
		Only:      dedupe(cfg.Only),
		Broadcast: cfg.Broadcast,
	}
	if w.Entity == "" {
		w.Entity = unsafeNameChars.ReplaceAllString(Singular(relname), "_")
	}
	if !db.ValidName(w.Entity) {
		return Watched{}, fmt.Errorf("invalid entity %q: use letters, digits, _ . -", w.Entity)
	}
	if w.Channel == "" {
		w.Channel = w.Entity + "_changes"
	}
	if !db.ValidChannel(w.Channel) || strings.HasPrefix(w.Channel, db.ReservedPrefix) {
		return Watched{}, fmt.Errorf("invalid channel %q: use letters, digits, _ . : - (pgpush: is reserved)", w.Channel)
	}
	names := make([]string, 0, len(columns))
	for _, c := range columns {
		names = append(names, c.Name)
	}
	for _, list := range [][]string{w.Exclude, w.Only} {
		for _, c := range list {
			if !slices.Contains(names, c) {
				return Watched{}, fmt.Errorf("column %q does not exist in %s", c, relname)
			}
		}
	}
	for _, c := range columns {
		if w.private(c.Name) {
			continue
		}
		w.Columns = append(w.Columns, c.Name)
		switch c.Type {
		case "timestamptz":
			w.tzColumns = append(w.tzColumns, c.Name)
		case "timestamp":
			w.naiveColumns = append(w.naiveColumns, c.Name)
		}
	}
	if len(w.Columns) == 0 {
		return Watched{}, errors.New("no column left to send: check --only and --exclude")
	}
	if w.Broadcast != "" {
		if !db.ValidName(w.Broadcast) {
			return Watched{}, fmt.Errorf("invalid broadcast type %q: use letters, digits, _ . -", w.Broadcast)
		}
		w.BroadcastOn = dedupe(cfg.BroadcastOn)
		if len(w.BroadcastOn) == 0 {
			w.BroadcastOn = []string{"insert"}
		}
		for _, op := range w.BroadcastOn {
			if !slices.Contains(operations, op) {
				return Watched{}, fmt.Errorf("invalid --on %q: want insert, update or delete", op)
			}
		}
	} else if len(cfg.BroadcastOn) > 0 {
		return Watched{}, errors.New("--on needs --broadcast")
	}
	return w, nil
}

// private reports whether column stays inside the database: --exclude'd,
// or not among --only's.
func (w Watched) private(column string) bool {
	return slices.Contains(w.Exclude, column) || (len(w.Only) > 0 && !slices.Contains(w.Only, column))
}

func dedupe(list []string) []string {
	var out []string
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// CreateSQL is the DDL that attaches the capture triggers to table, which
// must already be quoted (pgx.Identifier.Sanitize). It replaces earlier
// triggers so that watching again changes the configuration.
func CreateSQL(table string, w Watched) string {
	args := strings.Join([]string{
		literal(w.Entity),
		literal(w.Channel),
		literal(arrayLiteral(w.Exclude)),
		literal(arrayLiteral(w.Only)),
		literal(arrayLiteral(w.tzColumns)),
		literal(arrayLiteral(w.naiveColumns)),
		literal(w.Broadcast),
		literal(arrayLiteral(w.BroadcastOn)),
	}, ", ")
	var b strings.Builder
	b.WriteString(DropSQL(table))
	fmt.Fprintf(&b, "CREATE TRIGGER %s AFTER TRUNCATE ON %s\n"+
		"    FOR EACH STATEMENT EXECUTE FUNCTION pgpush.capture_truncate(%s, %s);\n",
		TruncateTriggerName, table, literal(w.Entity), literal(w.Channel))
	if !w.statementTriggers {
		fmt.Fprintf(&b, "SELECT pgpush.install_capture(%s, ARRAY[%s]);\n", literal(table), args)
		return b.String()
	}
	for _, tg := range statementTriggers {
		fmt.Fprintf(&b, "CREATE TRIGGER %s AFTER %s ON %s %s\n"+
			"    FOR EACH STATEMENT EXECUTE FUNCTION pgpush.capture_rows(%s);\n", tg.name, tg.event, table, tg.referencing, args)
	}
	return b.String()
}

// DropSQL removes the capture triggers from table (already quoted).
func DropSQL(table string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "DROP TRIGGER IF EXISTS %s ON %s;\n", TriggerName, table)
	fmt.Fprintf(&b, "DROP TRIGGER IF EXISTS %s ON %s;\n", TruncateTriggerName, table)
	for _, tg := range statementTriggers {
		fmt.Fprintf(&b, "DROP TRIGGER IF EXISTS %s ON %s;\n", tg.name, table)
	}
	b.WriteString("SELECT pgpush.drop_unused_captures();\n")
	return b.String()
}

// literal quotes s as an SQL string literal. Trigger arguments cannot be
// bind parameters, so this is the one place pgpush builds a literal; it is
// safe because standard_conforming_strings is on in every supported
// PostgreSQL and NUL cannot occur in names that passed validation.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// arrayLiteral renders a text[] literal with every element double-quoted.
func arrayLiteral(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		s = strings.ReplaceAll(s, `\`, `\\`)
		quoted[i] = `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
	}
	return "{" + strings.Join(quoted, ",") + "}"
}

type table struct {
	oid     uint32
	schema  string
	name    string
	quoted  string
	columns []Column
	kind    string // pg_class.relkind: r or p
	child   bool   // a partition or an inheritance child
	parent  bool   // has partitions or inheritance children
}

func lookupTable(ctx context.Context, tx pgx.Tx, name string) (table, error) {
	var t table
	if strings.TrimSpace(name) == "" {
		return table{}, fmt.Errorf("table %q does not exist", name)
	}
	found := false
	// First as SQL would read it (orders, shop.orders, "Odd Name"), then
	// quoted, so a user can type an odd name bare. Each try runs in a
	// savepoint: before PostgreSQL 16, to_regclass raises 42602 on names
	// it cannot parse instead of returning NULL.
	for _, candidate := range []string{name, pgx.Identifier{name}.Sanitize()} {
		err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			return sp.QueryRow(ctx, `
				SELECT c.oid, n.nspname, c.relname, c.relkind::text,
				       c.relispartition OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid),
				       c.relkind = 'p' OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid)
				FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE c.oid = to_regclass($1)`, candidate).Scan(&t.oid, &t.schema, &t.name, &t.kind, &t.child, &t.parent)
		})
		var pgErr *pgconn.PgError
		if errors.Is(err, pgx.ErrNoRows) || (errors.As(err, &pgErr) && pgErr.Code == invalidNameSyntax) {
			continue
		}
		if err != nil {
			return table{}, fmt.Errorf("look up table %q: %w", name, err)
		}
		found = true
		break
	}
	if !found {
		return table{}, fmt.Errorf("table %q does not exist", name)
	}
	if t.kind != "r" && t.kind != "p" {
		return table{}, fmt.Errorf("%q is not a table", name)
	}
	if t.schema == "pgpush" {
		return table{}, fmt.Errorf("%q belongs to pgpush itself", name)
	}
	t.quoted = pgx.Identifier{t.schema, t.name}.Sanitize()
	rows, err := tx.Query(ctx, `
		SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, t.oid)
	if err != nil {
		return table{}, fmt.Errorf("columns of %s: %w", t.quoted, err)
	}
	t.columns, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Column])
	if err != nil {
		return table{}, fmt.Errorf("columns of %s: %w", t.quoted, err)
	}
	return t, nil
}

// displayName is schema-qualified only outside public, and quoted only
// where a plain name would not read back the same.
func (t table) displayName() string {
	name := quoteIfNeeded(t.name)
	if t.schema == "public" {
		return name
	}
	return quoteIfNeeded(t.schema) + "." + name
}

func quoteIfNeeded(ident string) string {
	if plainIdentifier.MatchString(ident) {
		return ident
	}
	return pgx.Identifier{ident}.Sanitize()
}

// Watch installs (or reconfigures) the capture trigger on cfg.Table and
// records it, in one transaction, then tells running instances to reload.
func Watch(ctx context.Context, pool *pgxpool.Pool, cfg Config) (Watched, error) {
	var w Watched
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		t, err := lookupTable(ctx, tx, cfg.Table)
		if err != nil {
			return err
		}
		w, err = resolve(cfg, t.name, t.columns)
		if err != nil {
			return err
		}
		w.Table = t.displayName()
		w.statementTriggers = t.parent && !t.child
		if _, err := tx.Exec(ctx, CreateSQL(t.quoted, w)); err != nil {
			return fmt.Errorf("create trigger on %s: %w", w.Table, err)
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO pgpush.watched (table_oid, table_name, entity, channel, config)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (table_oid) DO UPDATE SET table_name = EXCLUDED.table_name,
				entity = EXCLUDED.entity, channel = EXCLUDED.channel, config = EXCLUDED.config`,
			t.oid, w.Table, w.Entity, w.Channel, w)
		if err != nil {
			return fmt.Errorf("record watched table: %w", err)
		}
		return notifyReload(ctx, tx)
	})
	return w, err
}

// Unwatch removes the capture trigger from table and forgets it.
func Unwatch(ctx context.Context, pool *pgxpool.Pool, name string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		t, err := lookupTable(ctx, tx, name)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM pgpush.watched WHERE table_oid = $1`, t.oid)
		if err != nil {
			return fmt.Errorf("forget watched table: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s: %w", t.displayName(), ErrNotWatched)
		}
		if _, err := tx.Exec(ctx, DropSQL(t.quoted)); err != nil {
			return fmt.Errorf("drop trigger on %s: %w", t.displayName(), err)
		}
		return notifyReload(ctx, tx)
	})
}

// List returns the watched tables in name order. Tables dropped since they
// were watched are left out.
func List(ctx context.Context, q db.Querier) ([]Watched, error) {
	rows, err := q.Query(ctx, `
		SELECT w.config FROM pgpush.watched w
		JOIN pg_class c ON c.oid = w.table_oid
		ORDER BY w.table_name`)
	if err != nil {
		return nil, fmt.Errorf("list watched tables: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[Watched])
	if err != nil {
		return nil, fmt.Errorf("list watched tables: %w", err)
	}
	return list, nil
}

func notifyReload(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, db.ControlChannel, db.ReloadPayload); err != nil {
		return fmt.Errorf("announce reload: %w", err)
	}
	return nil
}
