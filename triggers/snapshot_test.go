package triggers

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// snapshotRows runs SnapshotQuery for channel and decodes its rows.
func snapshotRows(t *testing.T, tb testBundle, channel string, eqs []Equal) []map[string]any {
	t.Helper()
	query, args, err := SnapshotQuery(tb.ctx, tb.pool, channel, eqs)
	if err != nil {
		t.Fatalf("SnapshotQuery(%q): %v", channel, err)
	}
	rows, err := tb.pool.Query(tb.ctx, query, args...)
	if err != nil {
		t.Fatalf("snapshot query %s: %v", query, err)
	}
	texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, s := range texts {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestSnapshotRowsAreEventData: a snapshot row is what capture() sends for
// the same row: the same columns, excluded ones left out, timestamps
// formatted alike, in primary-key order.
func TestSnapshotRowsAreEventData(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL, `ALTER TABLE orders ADD COLUMN placed_at timestamptz DEFAULT '2026-01-25 10:30:00+01'`)
	mustWatch(t, tb, Config{Table: "orders", Exclude: []string{"card_token"}})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (status, total, customer_id, card_token) VALUES ('new', 9.5, 45, 'secret'), ('paid', 12, 46, 'secret')`)
	events := wantEvents(t, tb, "order_changes order:created", "order_changes order:created")
	rows := snapshotRows(t, tb, "order_changes", nil)
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}
	for i, ev := range events {
		var want map[string]any
		if err := json.Unmarshal(ev.Data, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(rows[i], want) {
			t.Errorf("row %d = %v, want the created event's data %v", i, rows[i], want)
		}
	}
}

func TestSnapshotPushdown(t *testing.T) {
	t.Parallel()
	tb := setup(t, ordersDDL)
	mustWatch(t, tb, Config{Table: "orders", Only: []string{"id", "status", "customer_id"}})
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO orders (status, customer_id, card_token) VALUES ('new', 45, 'x'), ('paid', 46, 'x'), ('paid', 45, 'x')`)
	tests := []struct {
		name string
		eqs  []Equal
		want int
	}{
		{"none", nil, 3},
		{"integer column", []Equal{{Column: "customer_id", Numbers: []string{"45"}, Strings: []string{"45"}}}, 2},
		{"two conditions", []Equal{{Column: "customer_id", Numbers: []string{"45"}}, {Column: "status", Strings: []string{"paid"}}}, 1},
		{"values the column cannot hold", []Equal{{Column: "customer_id", Numbers: []string{"4.5", "99999999999999999999"}, Strings: []string{"abc"}}}, 0},
		{"private column is not pushed", []Equal{{Column: "card_token", Strings: []string{"nope"}}}, 3},
		{"unknown column", []Equal{{Column: "nope", Strings: []string{"x"}}}, 3},
		{"injection stays a value", []Equal{{Column: "status", Strings: []string{"x') OR true --"}}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := snapshotRows(t, tb, "order_changes", tt.eqs); len(got) != tt.want {
				t.Errorf("%d rows, want %d: %v", len(got), tt.want, got)
			}
		})
	}
	for _, r := range snapshotRows(t, tb, "order_changes", nil) {
		if len(r) != 3 {
			t.Errorf("row %v: want only id, status and customer_id (--only)", r)
		}
	}
}

func TestSnapshotQueryRefusals(t *testing.T) {
	t.Parallel()
	tb := setup(t, `CREATE TABLE logs (line text)`)
	mustWatch(t, tb, Config{Table: "logs"})
	if _, _, err := SnapshotQuery(tb.ctx, tb.pool, "log_changes", nil); !errors.Is(err, ErrNoPrimaryKey) {
		t.Errorf("table without primary key: %v, want ErrNoPrimaryKey", err)
	}
	if _, _, err := SnapshotQuery(tb.ctx, tb.pool, "nothing_changes", nil); !errors.Is(err, ErrNoTable) {
		t.Errorf("channel without table: %v, want ErrNoTable", err)
	}
	_, _, err := SnapshotQuery(tb.ctx, tb.pool, "log_changes", nil)
	if err != nil && strings.Contains(err.Error(), "line") {
		t.Errorf("error names a column: %v", err)
	}
}

// TestSnapshotPartitionedAndWide: a partitioned table's rows are those of
// its partitions, and --only of many columns works (jsonb_build_object
// takes at most 100 arguments; the row is built by removing instead).
func TestSnapshotPartitionedAndWide(t *testing.T) {
	t.Parallel()
	var cols, only []string
	for i := range 60 {
		cols = append(cols, fmt.Sprintf("c%d int DEFAULT %d", i, i))
		if i < 55 {
			only = append(only, fmt.Sprintf("c%d", i))
		}
	}
	tb := setup(t,
		`CREATE TABLE parts (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`,
		`CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu')`,
		`CREATE TABLE parts_us PARTITION OF parts FOR VALUES IN ('us')`,
		`CREATE TABLE wide (id int PRIMARY KEY, `+strings.Join(cols, ", ")+`)`)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO parts VALUES (1, 'eu'), (2, 'us')`)
	mustExec(t, tb.ctx, tb.pool, `INSERT INTO wide (id) VALUES (1)`)
	mustWatch(t, tb, Config{Table: "parts"})
	mustWatch(t, tb, Config{Table: "wide", Only: append([]string{"id"}, only...)})
	if got := snapshotRows(t, tb, "part_changes", nil); len(got) != 2 {
		t.Errorf("partitioned table: %d rows, want 2: %v", len(got), got)
	}
	rows := snapshotRows(t, tb, "wide_changes", nil)
	if len(rows) != 1 || len(rows[0]) != 56 || rows[0]["c54"] != 54.0 || rows[0]["c55"] != nil {
		t.Errorf("wide row with 56 columns of 61 sent: %v", rows)
	}
}

func TestNumericHolds(t *testing.T) {
	t.Parallel()
	for n, want := range map[string]bool{"45": true, "-4.5": true, "1e300": true, "1e131071": true, "1e131072": false, "1e-16383": true, "1e-16384": false} {
		if got := numericHolds(n); got != want {
			t.Errorf("numericHolds(%s) = %t, want %t", n, got, want)
		}
	}
}
