package triggers

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestSingular(t *testing.T) {
	t.Parallel()
	tests := []struct {
		table, want string
	}{
		{"orders", "order"},
		{"categories", "category"},
		{"addresses", "address"},
		{"statuses", "status"},
		{"boxes", "box"},
		{"products", "product"},
		{"shipments", "shipment"},
		{"transactions", "transaction"},
		{"customers", "customer"},
		{"buses", "bus"},
		{"classes", "class"},
		{"dishes", "dish"},
		{"matches", "match"},
		// Singular is a suffix heuristic, not a dictionary: an uncountable
		// noun loses its "s" like any plural. `pgpush watch news --entity news`
		// is the way out; a word list would only move the edge elsewhere.
		{"news", "new"},
		{"data", "data"},
		{"status", "status"},
		{"analysis", "analysis"},
		{"Order_Items", "Order_Item"}, // case is kept, only the suffix changes
		{"CATEGORIES", "CATEGORy"},    // the replacement "y" is lower case
		{"s", "s"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.table, func(t *testing.T) {
			t.Parallel()
			if got := Singular(tt.table); got != tt.want {
				t.Errorf("Singular(%q) = %q, want %q", tt.table, got, tt.want)
			}
		})
	}
}

// TestSingularOusesBug: the "uses" rule meant for statuses, buses and
// campuses also cuts "es" off houses, so a warehouses table (common next to
// orders and products) gets the entity "warehous".
func TestSingularOusesBug(t *testing.T) {
	t.Parallel()
	for table, want := range map[string]string{
		"warehouses": "warehouse",
		"houses":     "house",
		"causes":     "cause",
		"clauses":    "clause",
	} {
		if got := Singular(table); got != want {
			t.Errorf("Singular(%q) = %q, want %q", table, got, want)
		}
	}
}

var ordersColumns = []Column{
	{"id", "int8"},
	{"status", "text"},
	{"total", "numeric"},
	{"customer_id", "int4"},
	{"card_token", "text"},
}

// TestCreateSQLGolden checks the DDL that Watch runs against testdata/*.golden.
// The same cases run for real in watch_test.go; this catches any change in
// the text, which is the contract with pgpush.install_capture()'s and
// pgpush.capture_rows()'s arguments.
func TestCreateSQLGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         Config
		schema      string
		relname     string
		columns     []Column
		partitioned bool // a partitioned table: the generic statement triggers
	}{
		{
			name:    "defaults",
			relname: "orders",
			columns: ordersColumns,
		},
		{
			name:    "exclude",
			cfg:     Config{Exclude: []string{"card_token", " customer_id ", "card_token"}},
			relname: "orders",
			columns: ordersColumns,
		},
		{
			name:    "only",
			cfg:     Config{Only: []string{"id", "status"}, Entity: "purchase", Channel: "shop:purchases"},
			schema:  "shop",
			relname: "orders",
			columns: ordersColumns,
		},
		{
			name:    "timestamps",
			relname: "shipments",
			columns: []Column{
				{"id", "int8"},
				{"shipped_at", "timestamptz"},
				{"due_on", "timestamp"},
				{"delivered_at", "timestamptz"},
				{"due_day", "date"},
				{"window", "tstzrange"},
			},
		},
		{
			name:    "timestamps_excluded",
			cfg:     Config{Exclude: []string{"delivered_at"}},
			relname: "shipments",
			columns: []Column{
				{"id", "int8"},
				{"shipped_at", "timestamptz"},
				{"due_on", "timestamp"},
				{"delivered_at", "timestamptz"},
			},
		},
		{
			name:    "broadcast",
			cfg:     Config{Broadcast: "new_product", BroadcastOn: []string{"insert", "update"}},
			relname: "products",
			columns: []Column{{"id", "int8"}, {"name", "text"}, {"price", "numeric"}},
		},
		{
			name:    "broadcast_default_on",
			cfg:     Config{Broadcast: "new_product"},
			relname: "products",
			columns: []Column{{"id", "int8"}, {"name", "text"}},
		},
		{
			name:        "partitioned",
			relname:     "orders",
			columns:     ordersColumns,
			partitioned: true,
		},
		{
			name:    "odd_names",
			cfg:     Config{Entity: "odd", Exclude: []string{`it's "x" \y`}},
			schema:  `my "schema"`,
			relname: `Odd 'Table' "x" \y`,
			columns: []Column{
				{"id", "int8"},
				{`it's "x" \y`, "text"},
				{`When's "Due" \`, "timestamptz"},
				{"NULL", "timestamp"},
				{"a,b{c}", "text"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, err := resolve(tt.cfg, tt.relname, tt.columns)
			if err != nil {
				t.Fatalf("resolve(%+v) error: %v", tt.cfg, err)
			}
			w.statementTriggers = tt.partitioned
			schema := tt.schema
			if schema == "" {
				schema = "public"
			}
			quoted := pgx.Identifier{schema, tt.relname}.Sanitize()
			got := "-- watched: entity=" + w.Entity + " channel=" + w.Channel +
				" columns=" + strings.Join(w.Columns, "|") + "\n" +
				CreateSQL(quoted, w) + "-- unwatch\n" + DropSQL(quoted)
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run with -update to create it): %v", err)
			}
			if got != string(want) {
				t.Errorf("CreateSQL/DropSQL for %s:\ngot:\n%s\nwant (%s):\n%s", tt.name, got, path, want)
			}
		})
	}
}

func TestArrayLiteral(t *testing.T) {
	t.Parallel()
	tests := []struct {
		items []string
		want  string
	}{
		{nil, `{}`},
		{[]string{"a"}, `{"a"}`},
		{[]string{"a", "b c"}, `{"a","b c"}`},
		{[]string{`q"q`, `b\s`, "NULL", "{,}"}, `{"q\"q","b\\s","NULL","{,}"}`},
	}
	for _, tt := range tests {
		if got := arrayLiteral(tt.items); got != tt.want {
			t.Errorf("arrayLiteral(%q) = %s, want %s", tt.items, got, tt.want)
		}
	}
}

func TestResolveDefaults(t *testing.T) {
	t.Parallel()
	w, err := resolve(Config{}, "orders", ordersColumns)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if got, want := w.Entity, "order"; got != want {
		t.Errorf("Entity = %q, want %q", got, want)
	}
	if got, want := w.Channel, "order_changes"; got != want {
		t.Errorf("Channel = %q, want %q", got, want)
	}
	if got, want := strings.Join(w.Columns, ","), "id,status,total,customer_id,card_token"; got != want {
		t.Errorf("Columns = %s, want %s", got, want)
	}
	if w.Broadcast != "" || w.BroadcastOn != nil {
		t.Errorf("Broadcast = %q on %q, want none", w.Broadcast, w.BroadcastOn)
	}

	w, err = resolve(Config{Entity: "sale"}, "orders", ordersColumns)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if got, want := w.Channel, "sale_changes"; got != want {
		t.Errorf("Channel with --entity sale = %q, want %q", got, want)
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		relname string
		wantIn  string // the error must name the culprit
	}{
		{"unknown exclude", Config{Exclude: []string{"nope"}}, "orders", `"nope"`},
		{"unknown only", Config{Only: []string{"id", "nope"}}, "orders", `"nope"`},
		{"column case matters", Config{Only: []string{"ID"}}, "orders", `"ID"`},
		{"exclude everything", Config{Exclude: []string{"id", "status", "total", "customer_id", "card_token"}}, "orders", "no column"},
		{"only all excluded", Config{Only: []string{"id"}, Exclude: []string{"id"}}, "orders", "no column"},
		{"entity with space", Config{Entity: "my order"}, "orders", `"my order"`},
		{"entity with colon", Config{Entity: "a:b"}, "orders", `"a:b"`},
		{"entity too long", Config{Entity: strings.Repeat("e", 101)}, "orders", "invalid entity"},
		{"channel with space", Config{Channel: "my channel"}, "orders", `"my channel"`},
		{"channel with star", Config{Channel: "room:*"}, "orders", `"room:*"`},
		{"reserved channel", Config{Channel: "pgpush:broadcast"}, "orders", "reserved"},
		{"reserved channel prefix", Config{Channel: "pgpush:x"}, "orders", "reserved"},
		{"on without broadcast", Config{BroadcastOn: []string{"insert"}}, "orders", "--broadcast"},
		{"bad on", Config{Broadcast: "b", BroadcastOn: []string{"insert", "upsert"}}, "orders", `"upsert"`},
		{"on is lower case", Config{Broadcast: "b", BroadcastOn: []string{"INSERT"}}, "orders", `"INSERT"`},
		{"bad broadcast type", Config{Broadcast: "new product"}, "orders", `"new product"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, err := resolve(tt.cfg, tt.relname, ordersColumns)
			if err == nil {
				t.Fatalf("resolve(%+v) = %+v, want an error", tt.cfg, w)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("resolve(%+v) error = %q, want it to mention %s", tt.cfg, err, tt.wantIn)
			}
		})
	}
}
