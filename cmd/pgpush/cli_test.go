package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/dbtest"
	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/triggers"
)

// unreachableURL points at a port nothing listens on; connect_timeout
// bounds the attempt should the port drop packets instead of refusing.
const unreachableURL = "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"

// malformedURL has a password that must never reach an error message.
const malformedURL = "postgres://u:secretpw@[::1"

// cliTimeout bounds one in-process command. It is generous because user
// add hashes at bcrypt cost 12, which takes several seconds under -race
// on a busy machine.
const cliTimeout = 2 * time.Minute

// promptly bounds commands that must fail fast: well above the 2 s
// connect_timeout, well below a hang.
const promptly = 15 * time.Second

// cliEnv is a getenv over a fixed map, so that tests never see the
// environment the test binary runs in.
func cliEnv(vars map[string]string) env {
	return func(key string) string { return vars[key] }
}

// runCLI runs the CLI in-process as main does, with the given environment
// and stdin, and returns what it wrote to stdout and stderr.
func runCLI(t *testing.T, vars map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, args, strings.NewReader(stdin), &out, &errOut, cliEnv(vars))
	return out.String(), errOut.String(), err
}

// mustRunCLI runs the CLI against dbURL and fails the test on error.
func mustRunCLI(t *testing.T, dbURL, stdin string, args ...string) string {
	t.Helper()
	out, _, err := runCLI(t, map[string]string{"DATABASE_URL": dbURL}, stdin, args...)
	if err != nil {
		t.Fatalf("pgpush %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// failCLI runs the CLI against dbURL and returns its error, failing the
// test when there is none or when it spans several lines.
func failCLI(t *testing.T, dbURL, stdin string, args ...string) error {
	t.Helper()
	_, _, err := runCLI(t, map[string]string{"DATABASE_URL": dbURL}, stdin, args...)
	if err == nil {
		t.Fatalf("pgpush %s: got nil error, want one", strings.Join(args, " "))
	}
	checkOneLine(t, err)
	return err
}

// checkOneLine fails t unless err reads as one line by itself, before main
// joins lines.
func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\r\n") {
		t.Errorf("got error %q, want one non-empty line", msg)
	}
}

// tableRow returns the whitespace-separated fields of the first line of a
// tabwriter listing whose first field is first, or nil.
func tableRow(listing, first string) []string {
	return tableRowAt(listing, 0, first)
}

// watchedRow returns the fields of table's row in a watched listing, found
// whether or not the name is printed in SQL quotes, which TestWatchCommands
// checks on its own.
func watchedRow(listing, table string) []string {
	for line := range strings.Lines(listing) {
		if f := strings.Fields(line); len(f) > 0 && strings.Trim(f[0], `"`) == table {
			return f
		}
	}
	return nil
}

// tableRowAt is tableRow for a line whose field i is value.
func tableRowAt(listing string, i int, value string) []string {
	for line := range strings.Lines(listing) {
		if f := strings.Fields(line); len(f) > i && f[i] == value {
			return f
		}
	}
	return nil
}

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{"--help"},
		{"-h"},
		{"help"},
		{"user", "--help"},
		{"serve", "--help"},
		{"demo", "--help"},
		{"migrate", "--help"},
		{"watch", "--help"},
		{"watch", "orders", "-h"},
		{"unwatch", "--help"},
		{"watched", "--help"},
		{"user", "add", "--help"},
		{"user", "disable", "--help"},
		{"user", "list", "--help"},
		{"grant", "--help"},
		{"revoke", "--help"},
		{"grants", "--help"},
		{"version", "--help"},
	}
	for _, args := range tests {
		name := strings.Join(args, " ")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runCLI(t, nil, "", args...)
			if err != nil {
				t.Fatalf("pgpush %s: got error %v, want nil", name, err)
			}
			if got := strings.Count(stdout, "Usage: pgpush"); got != 1 {
				t.Errorf("pgpush %s: stdout %q has %d usage lines, want 1", name, stdout, got)
			}
			if !strings.Contains(stdout, "Example:") {
				t.Errorf("pgpush %s: stdout %q, want %q", name, stdout, "Example:")
			}
			if stderr != "" {
				t.Errorf("pgpush %s: stderr %q, want nothing", name, stderr)
			}
		})
	}
}

// TestBadInput checks input errors with no database configured: each must
// be reported as itself, before any connection is tried, on one line.
func TestBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"unknown command", []string{"frobnicate"}, `"frobnicate"`},
		{"unknown flag", []string{"watched", "--nope"}, "nope"},
		{"unknown flag after positional", []string{"watch", "orders", "--entiti", "x"}, "entiti"},
		{"flag without value", []string{"watch", "orders", "--entity"}, "entity"},
		{"watch without table", []string{"watch"}, "wrong number of arguments"},
		{"watch two tables", []string{"watch", "orders", "products"}, "wrong number of arguments"},
		{"unwatch without table", []string{"unwatch"}, "wrong number of arguments"},
		{"unwatch two tables", []string{"unwatch", "orders", "products"}, "wrong number of arguments"},
		{"watched with argument", []string{"watched", "orders"}, "wrong number of arguments"},
		{"grants with argument", []string{"grants", "x"}, "wrong number of arguments"},
		{"version with argument", []string{"version", "x"}, "wrong number of arguments"},
		{"serve with argument", []string{"serve", "x"}, "wrong number of arguments"},
		{"demo with argument", []string{"demo", "x"}, "wrong number of arguments"},
		{"migrate two directions", []string{"migrate", "up", "down"}, "wrong number of arguments"},
		{"migrate sideways", []string{"migrate", "sideways"}, `"sideways"`},
		{"user without subcommand", []string{"user"}, "missing subcommand"},
		{"user unknown subcommand", []string{"user", "frob"}, `"frob"`},
		{"user disable without email", []string{"user", "disable"}, "wrong number of arguments"},
		{"user list with argument", []string{"user", "list", "x"}, "wrong number of arguments"},
		{"user add with argument", []string{"user", "add", "x", "--email", "a@example.com", "--role", "r"}, "wrong number of arguments"},
		{"user add without email", []string{"user", "add", "--role", "customer", "--password", "long-enough"}, "--email"},
		{"user add without role", []string{"user", "add", "--email", "a@example.com", "--password", "long-enough"}, "--role"},
		{"user add bad attr", []string{"user", "add", "--email", "a@example.com", "--role", "customer", "--attr", "customer_id", "--password", "long-enough"}, "--attr"},
		{"user add empty attr key", []string{"user", "add", "--email", "a@example.com", "--role", "customer", "--attr", "=45", "--password", "long-enough"}, "--attr"},
		{"user add no password", []string{"user", "add", "--email", "a@example.com", "--role", "customer"}, "password"},
		{"grant without channel", []string{"grant", "--role", "customer"}, "wrong number of arguments"},
		{"grant without role", []string{"grant", "order_changes"}, "--role"},
		{"grant bad match", []string{"grant", "order_changes", "--role", "customer", "--match", "customer_id"}, "--match"},
		{"grant bad match field", []string{"grant", "order_changes", "--role", "customer", "--match", "a b=c"}, "--match"},
		{"revoke without role", []string{"revoke", "order_changes"}, "--role"},
		{"revoke two channels", []string{"revoke", "a", "b", "--role", "r"}, "wrong number of arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := runCLI(t, nil, "", tt.args...)
			if err == nil {
				t.Fatalf("pgpush %s: got nil error, want one containing %q", strings.Join(tt.args, " "), tt.want)
			}
			checkOneLine(t, err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("pgpush %s: got error %q, want it to contain %q", strings.Join(tt.args, " "), err, tt.want)
			}
		})
	}
}

func TestNoDatabase(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{"migrate"},
		{"migrate", "status"},
		{"watch", "orders"},
		{"unwatch", "orders"},
		{"watched"},
		{"user", "add", "--email", "a@example.com", "--role", "customer", "--password", "long-enough"},
		{"user", "disable", "a@example.com"},
		{"user", "list"},
		{"grant", "order_changes", "--role", "customer"},
		{"revoke", "order_changes", "--role", "customer"},
		{"grants"},
		{"serve"},
	}
	for _, args := range tests {
		name := strings.Join(args, " ")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// SESSION_SECRET is valid so that serve complains about the
			// database and nothing else.
			vars := map[string]string{"SESSION_SECRET": strings.Repeat("s", 48)}
			_, _, err := runCLI(t, vars, "", args...)
			if err == nil {
				t.Fatalf("pgpush %s: got nil error, want one mentioning DATABASE_URL", name)
			}
			checkOneLine(t, err)
			if !strings.Contains(err.Error(), "DATABASE_URL") {
				t.Errorf("pgpush %s: got error %q, want it to mention DATABASE_URL", name, err)
			}
		})
	}
}

func TestUnusableDatabaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"unreachable watched", []string{"watched", "--database-url", unreachableURL}, nil},
		{"unreachable migrate", []string{"migrate", "status", "--database-url", unreachableURL}, nil},
		{"unreachable grants from env", []string{"grants"}, map[string]string{"DATABASE_URL": unreachableURL}},
		{"malformed watched", []string{"watched", "--database-url", malformedURL}, nil},
		{"malformed user list", []string{"user", "list", "--database-url", malformedURL}, nil},
		{"malformed migrate from env", []string{"migrate", "up"}, map[string]string{"DATABASE_URL": malformedURL}},
		{"malformed serve from env", []string{"serve"}, map[string]string{
			"DATABASE_URL": malformedURL, "SESSION_SECRET": strings.Repeat("s", 48), "PORT": "0",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, _, err := runCLI(t, tt.env, "", tt.args...)
			if err == nil {
				t.Fatalf("pgpush %s: got nil error, want one", strings.Join(tt.args, " "))
			}
			if elapsed := time.Since(start); elapsed > promptly {
				t.Errorf("pgpush %s: failed after %v, want under %v", strings.Join(tt.args, " "), elapsed, promptly)
			}
			// pgx puts each connection attempt on a line of its own; main
			// joins the lines, and TestBinary checks what it prints.
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("pgpush %s: error %q leaks the password", strings.Join(tt.args, " "), err)
			}
		})
	}
}

func TestServeConfig(t *testing.T) {
	t.Parallel()
	goodSecret := strings.Repeat("s", session.MinSecretBytes)
	tests := []struct {
		name string
		env  map[string]string
		want string // in the error
	}{
		{"no secret", nil, "SESSION_SECRET"},
		{"short secret", map[string]string{"SESSION_SECRET": goodSecret[1:]}, "SESSION_SECRET"},
		{"port not a number", map[string]string{"SESSION_SECRET": goodSecret, "PORT": "abc"}, "PORT"},
		{"port too big", map[string]string{"SESSION_SECRET": goodSecret, "PORT": "70000"}, "PORT"},
		{"retention not a duration", map[string]string{"SESSION_SECRET": goodSecret, "EVENT_RETENTION": "forever"}, "EVENT_RETENTION"},
		{"retention negative", map[string]string{"SESSION_SECRET": goodSecret, "EVENT_RETENTION": "-1h"}, "EVENT_RETENTION"},
		{"snapshot max rows not a number", map[string]string{"SESSION_SECRET": goodSecret, "SNAPSHOT_MAX_ROWS": "lots"}, "SNAPSHOT_MAX_ROWS"},
		{"snapshot max rows zero", map[string]string{"SESSION_SECRET": goodSecret, "SNAPSHOT_MAX_ROWS": "0"}, "SNAPSHOT_MAX_ROWS"},
		{"shutdown timeout not a duration", map[string]string{"SESSION_SECRET": goodSecret, "SHUTDOWN_TIMEOUT": "soon"}, "SHUTDOWN_TIMEOUT"},
		{"fan-out write delay not a duration", map[string]string{"SESSION_SECRET": goodSecret, "FANOUT_WRITE_DELAY": "often"}, "FANOUT_WRITE_DELAY"},
		{"fan-out write delay too long", map[string]string{"SESSION_SECRET": goodSecret, "FANOUT_WRITE_DELAY": "2s"}, "FANOUT_WRITE_DELAY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// An unreachable database: had serve started anything, it would
			// fail to connect instead of naming the bad setting.
			vars := map[string]string{"DATABASE_URL": unreachableURL}
			for k, v := range tt.env {
				vars[k] = v
			}
			_, _, err := runCLI(t, vars, "", "serve")
			if err == nil {
				t.Fatalf("serve: got nil error, want one mentioning %s", tt.want)
			}
			checkOneLine(t, err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("serve: got error %q, want it to mention %s", err, tt.want)
			}
		})
	}
}

func TestWatchCommands(t *testing.T) {
	t.Parallel()
	_, url, _ := newShop(t)

	out := mustRunCLI(t, url, "", "watched")
	for _, table := range []string{"customers", "orders", "products", "shipments", "transactions"} {
		if watchedRow(out, table) == nil {
			t.Errorf("watched: no row for %s in\n%s", table, out)
		}
	}
	row := watchedRow(out, "orders")
	if len(row) < 4 {
		t.Fatalf("watched: orders row %q, want table, entity, channel, columns", row)
	}
	// A plain name prints as the user types it in watch and unwatch;
	// quotes only where SQL needs them ("Order Items").
	if row[0] != "orders" {
		t.Errorf("watched: table printed as %s, want orders", row[0])
	}
	if got, want := row[1:3], []string{"order", "order_changes"}; !slices.Equal(got, want) {
		t.Errorf("watched: orders entity, channel = %q, want %q", got, want)
	}
	if cols := strings.Split(row[3], ","); !slices.Contains(cols, "order_number") || !slices.Contains(cols, "customer_id") {
		t.Errorf("watched: orders columns %q, want order_number and customer_id among them", cols)
	}
	if got := watchedRow(out, "products"); !strings.Contains(strings.Join(got, " "), "new_product on insert") {
		t.Errorf("watched: products row %q, want the new_product broadcast on insert", got)
	}

	out = mustRunCLI(t, url, "", "watch", "orders", "--entity", "purchase", "--channel", "purchases")
	if !strings.Contains(out, "purchase:created") || !strings.Contains(out, "purchases") {
		t.Errorf("watch orders --entity purchase --channel purchases: stdout %q, want the new entity and channel", out)
	}
	row = watchedRow(mustRunCLI(t, url, "", "watched"), "orders")
	if len(row) < 3 || row[1] != "purchase" || row[2] != "purchases" {
		t.Errorf("watched after re-watch: orders row %q, want entity purchase, channel purchases", row)
	}

	err := failCLI(t, url, "", "watch", "orders", "--on", "insert")
	if !strings.Contains(err.Error(), "--broadcast") {
		t.Errorf("watch --on without --broadcast: got %q, want it to mention --broadcast", err)
	}

	out = mustRunCLI(t, url, "", "unwatch", "orders")
	if !strings.Contains(out, "orders") {
		t.Errorf("unwatch orders: stdout %q, want it to name orders", out)
	}
	out = mustRunCLI(t, url, "", "watched")
	if row := watchedRow(out, "orders"); row != nil {
		t.Errorf("watched after unwatch: orders still listed: %q", row)
	}
	if watchedRow(out, "products") == nil {
		t.Errorf("watched after unwatch orders: products gone too:\n%s", out)
	}
	err = failCLI(t, url, "", "unwatch", "orders")
	if !errors.Is(err, triggers.ErrNotWatched) {
		t.Errorf("second unwatch orders: got %v, want %v", err, triggers.ErrNotWatched)
	}
}

func TestWatchMissingTable(t *testing.T) {
	t.Parallel()
	_, url := dbtest.NewPool(t)
	for _, cmd := range []string{"watch", "unwatch"} {
		err := failCLI(t, url, "", cmd, "no_such_table")
		if !strings.Contains(err.Error(), "no_such_table") {
			t.Errorf("%s no_such_table: got %q, want it to name the table", cmd, err)
		}
	}
}

func TestWatchTableWithSpace(t *testing.T) {
	t.Parallel()
	for _, name := range []string{`Order Items`, `"Order Items"`} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool, url := dbtest.NewPool(t)
			exec(t, pool, `CREATE TABLE "Order Items" (id serial PRIMARY KEY, qty integer NOT NULL)`)

			out := mustRunCLI(t, url, "", "watch", name)
			if !strings.Contains(out, "Order Items") {
				t.Errorf("watch %s: stdout %q, want it to name the table", name, out)
			}
			out = mustRunCLI(t, url, "", "watched")
			if !strings.Contains(out, "Order Items") {
				t.Errorf("watched: %q, want it to list \"Order Items\"", out)
			}
			mustRunCLI(t, url, "", "unwatch", name)
		})
	}
}

// TestUserCommands adds few users: user add hashes with bcrypt's default
// cost 12, several seconds each under -race.
func TestUserCommands(t *testing.T) {
	t.Parallel()
	pool, url := dbtest.NewPool(t)
	const email = "ana@example.com"

	out := mustRunCLI(t, url, "pw-from-stdin\n", "user", "add", "--email", email, "--role", "customer",
		"--attr", "customer_id=45", "--attr", "region=eu")
	if !strings.Contains(out, email) {
		t.Errorf("user add: stdout %q, want it to name %s", out, email)
	}
	var hash string
	if err := pool.QueryRow(t.Context(), `SELECT password_hash FROM pgpush.users WHERE email = $1`, email).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	// The line's newline is not part of the password.
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("pw-from-stdin")); err != nil {
		t.Errorf("stored hash does not match the password from stdin: %v", err)
	}

	row := tableRowAt(mustRunCLI(t, url, "", "user", "list"), 1, email)
	if len(row) != 5 {
		t.Fatalf("user list: row %q, want id, email, role, attrs, state", row)
	}
	if got, want := row[1:3], []string{email, "customer"}; !slices.Equal(got, want) {
		t.Errorf("user list: email, role = %q, want %q", got, want)
	}
	attrs := strings.Split(row[3], ",")
	slices.Sort(attrs)
	if want := []string{"customer_id=45", "region=eu"}; !slices.Equal(attrs, want) {
		t.Errorf("user list: attrs %q, want %q", attrs, want)
	}
	if row[4] != "active" {
		t.Errorf("user list: state %q, want active", row[4])
	}

	err := failCLI(t, url, "another-password\n", "user", "add", "--email", email, "--role", "customer")
	if !errors.Is(err, session.ErrUserExists) {
		t.Errorf("duplicate user add: got %v, want %v", err, session.ErrUserExists)
	}
	err = failCLI(t, url, "", "user", "add", "--email", "bo@example.com", "--role", "customer", "--password", "short")
	if !strings.Contains(err.Error(), "password") {
		t.Errorf("user add with a short password: got %q, want it to mention the password", err)
	}
	err = failCLI(t, url, "", "user", "add", "--email", "not-an-email", "--role", "customer", "--password", "long-enough")
	if !strings.Contains(err.Error(), "not-an-email") {
		t.Errorf("user add with a bad email: got %q, want it to name the email", err)
	}

	out = mustRunCLI(t, url, "", "user", "disable", email)
	if !strings.Contains(out, email) {
		t.Errorf("user disable: stdout %q, want it to name %s", out, email)
	}
	out = mustRunCLI(t, url, "", "user", "list")
	if row := tableRowAt(out, 1, email); len(row) != 5 || row[4] != "disabled" {
		t.Errorf("user list after disable: row %q, want state disabled", row)
	}
	if strings.Contains(out, "bo@example.com") || strings.Contains(out, "not-an-email") {
		t.Errorf("user list: rejected users were stored:\n%s", out)
	}
	err = failCLI(t, url, "", "user", "disable", "nobody@example.com")
	if !errors.Is(err, session.ErrUserNotFound) {
		t.Errorf("user disable of an unknown email: got %v, want %v", err, session.ErrUserNotFound)
	}
}

func TestGrantCommands(t *testing.T) {
	t.Parallel()
	_, url := dbtest.NewPool(t)

	mustRunCLI(t, url, "", "grant", "order_changes", "--role", "customer", "--publish", "--match", "customer_id=customer_id")
	mustRunCLI(t, url, "", "grant", "room:*", "--role", "anonymous")
	out := mustRunCLI(t, url, "", "grants")
	row := tableRow(out, "order_changes")
	if want := []string{"order_changes", "customer", "true", "customer_id=customer_id"}; !slices.Equal(row, want) {
		t.Errorf("grants: order_changes row %q, want %q", row, want)
	}
	row = tableRow(out, "room:*")
	if want := []string{"room:*", "anonymous", "false"}; !slices.Equal(row, want) {
		t.Errorf("grants: room:* row %q, want %q", row, want)
	}

	err := failCLI(t, url, "", "grant", "bad channel", "--role", "customer")
	if !strings.Contains(err.Error(), "bad channel") {
		t.Errorf("grant on a bad channel name: got %q, want it to name the channel", err)
	}

	mustRunCLI(t, url, "", "revoke", "order_changes", "--role", "customer")
	out = mustRunCLI(t, url, "", "grants")
	if row := tableRow(out, "order_changes"); row != nil {
		t.Errorf("grants after revoke: order_changes still listed: %q", row)
	}
	if tableRow(out, "room:*") == nil {
		t.Errorf("grants after revoke: room:* gone too:\n%s", out)
	}
	err = failCLI(t, url, "", "revoke", "order_changes", "--role", "customer")
	if !errors.Is(err, session.ErrGrantNotFound) {
		t.Errorf("second revoke: got %v, want %v", err, session.ErrGrantNotFound)
	}
}

// migrationStates returns the STATE column of migrate's listing in order.
func migrationStates(t *testing.T, listing string) []string {
	t.Helper()
	var states []string
	for line := range strings.Lines(listing) {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] == "VERSION" {
			continue
		}
		states = append(states, f[2])
	}
	if len(states) == 0 {
		t.Fatalf("migrate: no migrations listed in\n%s", listing)
	}
	return states
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	url := dbtest.NewEmpty(t)

	pending := migrationStates(t, mustRunCLI(t, url, "", "migrate", "status"))
	n := len(pending)
	if want := slices.Repeat([]string{"pending"}, n); !slices.Equal(pending, want) {
		t.Fatalf("migrate status on an empty database: %q, want %q", pending, want)
	}
	applied := slices.Repeat([]string{"applied"}, n)
	if got := migrationStates(t, mustRunCLI(t, url, "", "migrate", "up")); !slices.Equal(got, applied) {
		t.Errorf("migrate up: %q, want %q", got, applied)
	}
	if got := migrationStates(t, mustRunCLI(t, url, "", "migrate", "status")); !slices.Equal(got, applied) {
		t.Errorf("migrate status after up: %q, want %q", got, applied)
	}
	// No direction means up, and a second up is a no-op.
	if got := migrationStates(t, mustRunCLI(t, url, "", "migrate")); !slices.Equal(got, applied) {
		t.Errorf("migrate (up again): %q, want %q", got, applied)
	}
	wantDown := append(slices.Repeat([]string{"applied"}, n-1), "pending")
	if got := migrationStates(t, mustRunCLI(t, url, "", "migrate", "down")); !slices.Equal(got, wantDown) {
		t.Errorf("migrate down: %q, want %q", got, wantDown)
	}
	if got := migrationStates(t, mustRunCLI(t, url, "", "migrate", "up")); !slices.Equal(got, applied) {
		t.Errorf("migrate up after down: %q, want %q", got, applied)
	}
}

// TestMigrateConcurrently starts instances at once, as several pgpush serve
// processes sharing one database do: goose's advisory lock must let exactly
// one apply each migration.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	url := dbtest.NewEmpty(t)
	const instances = 4

	var wg sync.WaitGroup
	errs := make([]error, instances)
	for i := range instances {
		wg.Go(func() {
			var out bytes.Buffer
			errs[i] = run(t.Context(), []string{"migrate", "up"}, strings.NewReader(""), &out, &out,
				cliEnv(map[string]string{"DATABASE_URL": url}))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: migrate up: %v", i, err)
		}
	}

	n := len(migrationStates(t, mustRunCLI(t, url, "", "migrate", "status")))
	pool, err := db.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var versions, rows int
	err = pool.QueryRow(t.Context(), `
		SELECT count(DISTINCT version_id), count(*) FROM pgpush_schema_version
		WHERE version_id > 0 AND is_applied`).Scan(&versions, &rows)
	if err != nil {
		t.Fatal(err)
	}
	if versions != n || rows != n {
		t.Errorf("after %d concurrent ups: %d versions in %d rows, want %d in %d", instances, versions, rows, n, n)
	}
}

// TestHelperProcess is not a test: TestBinary runs the test binary with
// PGPUSH_HELPER=1 and this test only, so that it behaves as the pgpush
// binary with the arguments after "--".
func TestHelperProcess(t *testing.T) {
	if os.Getenv("PGPUSH_HELPER") != "1" {
		return
	}
	// TestMain started a cluster this process does not use, and main may
	// end it with os.Exit, which would leave the cluster running.
	if c := dbtest.Cluster(); c != nil {
		if err := c.Stop(); err != nil {
			t.Fatalf("stop the unused cluster: %v", err)
		}
	}
	i := slices.Index(os.Args, "--")
	if i < 0 {
		t.Fatal("helper process: no -- before the arguments")
	}
	os.Args = append([]string{"pgpush"}, os.Args[i+1:]...)
	main()
}

// TestBinary checks what a user of the real binary sees: the exit status
// and one line on stderr, never a stack trace.
func TestBinary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantStderr string // in stderr's one line; "" for an empty stderr
		wantStdout string // in stdout
	}{
		{"version", []string{"version"}, 0, "", "pgpush "},
		{"help", []string{"--help"}, 0, "", "Usage: pgpush"},
		{"unknown command", []string{"frobnicate"}, 1, `"frobnicate"`, ""},
		{"unknown flag", []string{"watched", "--nope"}, 1, "nope", ""},
		{"no database", []string{"watched"}, 1, "DATABASE_URL", ""},
		{"unreachable database", []string{"watched", "--database-url", unreachableURL}, 1, "connect", ""},
		{"malformed url", []string{"grants", "--database-url", malformedURL}, 1, "database url", ""},
		{"serve without secret", []string{"serve", "--database-url", unreachableURL}, 1, "SESSION_SECRET", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The child starts the test package's cluster before it gets to
			// TestHelperProcess; that takes a few seconds.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := osexec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^TestHelperProcess$", "--"}, tt.args...)...)
			cmd.Env = append(helperEnv(), "PGPUSH_HELPER=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			status := 0
			var exitErr *osexec.ExitError
			switch {
			case errors.As(err, &exitErr):
				status = exitErr.ExitCode()
			case err != nil:
				t.Fatalf("run helper: %v", err)
			}
			if status != tt.wantStatus {
				t.Errorf("pgpush %s: exit status %d, want %d (stderr %q)", strings.Join(tt.args, " "), status, tt.wantStatus, stderr.String())
			}
			errOut := stderr.String()
			for _, bad := range []string{"goroutine ", "panic", "secretpw"} {
				if strings.Contains(errOut, bad) || strings.Contains(stdout.String(), bad) {
					t.Errorf("pgpush %s: output holds %q: stderr %q", strings.Join(tt.args, " "), bad, errOut)
				}
			}
			if tt.wantStderr == "" {
				if errOut != "" {
					t.Errorf("pgpush %s: stderr %q, want nothing", strings.Join(tt.args, " "), errOut)
				}
			} else {
				if strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") || !strings.HasPrefix(errOut, "pgpush: ") {
					t.Errorf("pgpush %s: stderr %q, want exactly one line starting %q", strings.Join(tt.args, " "), errOut, "pgpush: ")
				}
				if !strings.Contains(errOut, tt.wantStderr) {
					t.Errorf("pgpush %s: stderr %q, want it to contain %q", strings.Join(tt.args, " "), errOut, tt.wantStderr)
				}
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("pgpush %s: stdout %q, want it to contain %q", strings.Join(tt.args, " "), stdout.String(), tt.wantStdout)
			}
		})
	}
}

// helperEnv is the test's environment without what would change the
// helper's behaviour: the database URL and pgpush's own settings.
func helperEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		switch key {
		case "DATABASE_URL", "SESSION_SECRET", "PORT", "LISTEN_ADDR", "EVENT_RETENTION", "PGPUSH_HELPER":
			continue
		}
		out = append(out, kv)
	}
	return out
}
