package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/triggers"
)

// connect opens a pool for a one-shot admin command.
func connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	if err := requireURL(url); err != nil {
		return nil, err
	}
	return db.Open(ctx, url)
}

func runMigrate(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("migrate", "pgpush migrate [up|down|status]", "pgpush migrate up", cio)
	url := databaseURLFlag(fs, cio)
	pos, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	direction := "up"
	if len(pos) == 1 {
		direction = pos[0]
	}
	if direction != "up" && direction != "down" && direction != "status" {
		return fmt.Errorf("migrate: unknown direction %q (want up, down or status)", direction)
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	statuses, err := db.Migrate(ctx, pool, direction, nil)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(cio.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tMIGRATION\tSTATE")
	for _, s := range statuses {
		state := "pending"
		if s.Applied {
			state = "applied"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\n", s.Version, s.Name, state)
	}
	return w.Flush()
}

func runWatch(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("watch",
		"pgpush watch TABLE [--entity NAME] [--channel NAME] [--exclude COL,...] [--only COL,...] [--broadcast TYPE [--on insert,update,delete]]",
		"pgpush watch orders --exclude internal_notes   # order:created/updated/deleted on order_changes", cio)
	url := databaseURLFlag(fs, cio)
	var cfg triggers.Config
	var exclude, only, on stringList
	fs.StringVar(&cfg.Entity, "entity", "", "entity name in events (default: the table name in the singular)")
	fs.StringVar(&cfg.Channel, "channel", "", "channel to publish on (default: <entity>_changes)")
	fs.Var(&exclude, "exclude", "columns that never leave the database (repeatable, comma-separated)")
	fs.Var(&only, "only", "send only these columns (repeatable, comma-separated)")
	fs.StringVar(&cfg.Broadcast, "broadcast", "", `also announce changes to every socket as {"type":TYPE,"data":{row}}`)
	fs.Var(&on, "on", "operations to broadcast: insert,update,delete (default: insert)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	cfg.Table, cfg.Exclude, cfg.Only, cfg.BroadcastOn = pos[0], exclude, only, on
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	w, err := triggers.Watch(ctx, pool, cfg)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	fmt.Fprintf(cio.stdout, "watching %s: events %s:created|updated|deleted on channel %s (columns: %s)\n",
		w.Table, w.Entity, w.Channel, strings.Join(w.Columns, ", "))
	if w.Broadcast != "" {
		fmt.Fprintf(cio.stdout, "broadcasting %s on %s to every socket\n", w.Broadcast, strings.Join(w.BroadcastOn, ","))
	}
	return nil
}

func runUnwatch(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("unwatch", "pgpush unwatch TABLE", "pgpush unwatch orders", cio)
	url := databaseURLFlag(fs, cio)
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := triggers.Unwatch(ctx, pool, pos[0]); err != nil {
		return fmt.Errorf("unwatch: %w", err)
	}
	fmt.Fprintf(cio.stdout, "no longer watching %s\n", pos[0])
	return nil
}

func runWatched(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("watched", "pgpush watched", "pgpush watched", cio)
	url := databaseURLFlag(fs, cio)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	list, err := triggers.List(ctx, pool)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(cio.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TABLE\tENTITY\tCHANNEL\tCOLUMNS\tBROADCAST")
	for _, t := range list {
		bcast := "-"
		if t.Broadcast != "" {
			bcast = t.Broadcast + " on " + strings.Join(t.BroadcastOn, ",")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Table, t.Entity, t.Channel, strings.Join(t.Columns, ","), bcast)
	}
	return w.Flush()
}

func runUser(ctx context.Context, args []string, cio cmdIO) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(cio.stdout, "Usage: pgpush user add|disable|list ...\n\nExample:\n  echo 's3cret-pass' | pgpush user add --email ana@example.com --role customer --attr customer_id=45")
		if len(args) == 0 {
			return errors.New("user: missing subcommand (add, disable or list)")
		}
		return nil
	}
	switch args[0] {
	case "add":
		return runUserAdd(ctx, args[1:], cio)
	case "disable":
		return runUserDisable(ctx, args[1:], cio)
	case "list":
		return runUserList(ctx, args[1:], cio)
	}
	return fmt.Errorf("user: unknown subcommand %q (want add, disable or list)", args[0])
}

// parseAttrs parses --attr key=value pairs.
func parseAttrs(list []string) (map[string]string, error) {
	attrs := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, fmt.Errorf("invalid --attr %q: want key=value", kv)
		}
		attrs[k] = v
	}
	return attrs, nil
}

func runUserAdd(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("user add", "pgpush user add --email E --role R [--attr key=value ...] [--password P]",
		"echo 's3cret-pass' | pgpush user add --email ana@example.com --role customer --attr customer_id=45", cio)
	url := databaseURLFlag(fs, cio)
	email := fs.String("email", "", "login email (required)")
	role := fs.String("role", "", "role: admin, or any name used in grants (required)")
	password := fs.String("password", "", "password (default: read one line from stdin)")
	var attrList repeated
	fs.Var(&attrList, "attr", "user attribute key=value, for grants with --match (repeatable)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *email == "" || *role == "" {
		return errors.New("user add: --email and --role are required")
	}
	attrs, err := parseAttrs(attrList)
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	if *password == "" {
		line, err := bufio.NewReader(cio.stdin).ReadString('\n')
		if err != nil && line == "" {
			return errors.New("user add: no password: pass --password or write it on stdin")
		}
		*password = strings.TrimRight(line, "\r\n")
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := adminStore(pool)
	if err != nil {
		return err
	}
	u, err := store.AddUser(ctx, *email, *role, *password, attrs)
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	fmt.Fprintf(cio.stdout, "added user %d %s (role %s)\n", u.ID, u.Email, u.Role)
	return nil
}

// adminStore is a session store for account commands, which set no
// cookies and so need no real secret.
func adminStore(pool *pgxpool.Pool) (*session.Store, error) {
	return session.NewStore(pool, session.Options{Secret: []byte(strings.Repeat("x", session.MinSecretBytes))})
}

func runUserDisable(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("user disable", "pgpush user disable EMAIL", "pgpush user disable ana@example.com", cio)
	url := databaseURLFlag(fs, cio)
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := adminStore(pool)
	if err != nil {
		return err
	}
	ended, err := store.DisableUser(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("user disable: %w", err)
	}
	fmt.Fprintf(cio.stdout, "disabled %s; ended %d session(s)\n", pos[0], len(ended))
	return nil
}

func runUserList(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("user list", "pgpush user list", "pgpush user list", cio)
	url := databaseURLFlag(fs, cio)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := adminStore(pool)
	if err != nil {
		return err
	}
	users, err := store.ListUsers(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(cio.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tEMAIL\tROLE\tATTRS\tSTATE")
	for _, u := range users {
		var attrs []string
		for k, v := range u.Attrs {
			attrs = append(attrs, k+"="+v)
		}
		state := "active"
		if u.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", u.ID, u.Email, u.Role, strings.Join(attrs, ","), state)
	}
	return w.Flush()
}

func runGrant(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("grant", "pgpush grant CHANNEL --role R [--publish] [--match FIELD=ATTR ...]",
		"pgpush grant order_changes --role customer --match customer_id=customer_id", cio)
	url := databaseURLFlag(fs, cio)
	role := fs.String("role", "", "role to grant to (required); anonymous means no login needed")
	publish := fs.Bool("publish", false, "also allow publishing custom events")
	var matches repeated
	fs.Var(&matches, "match", "only events whose data.FIELD equals the user's attribute ATTR (repeatable)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *role == "" {
		return errors.New("grant: --role is required")
	}
	g := session.Grant{Channel: pos[0], Role: *role, Publish: *publish, Match: map[string]string{}}
	for _, m := range matches {
		field, attr, err := session.ParseMatch(m)
		if err != nil {
			return fmt.Errorf("grant: %w", err)
		}
		g.Match[field] = attr
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := session.AddGrant(ctx, pool, g); err != nil {
		return err
	}
	fmt.Fprintf(cio.stdout, "granted %s to role %s\n", g.Channel, g.Role)
	return nil
}

func runRevoke(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("revoke", "pgpush revoke CHANNEL --role R", "pgpush revoke order_changes --role customer", cio)
	url := databaseURLFlag(fs, cio)
	role := fs.String("role", "", "role to revoke from (required)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *role == "" {
		return errors.New("revoke: --role is required")
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := session.RevokeGrant(ctx, pool, pos[0], *role); err != nil {
		return err
	}
	fmt.Fprintf(cio.stdout, "revoked %s from role %s\n", pos[0], *role)
	return nil
}

func runGrants(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("grants", "pgpush grants", "pgpush grants", cio)
	url := databaseURLFlag(fs, cio)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	grants, err := session.ListGrants(ctx, pool)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(cio.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CHANNEL\tROLE\tPUBLISH\tMATCH")
	for _, g := range grants {
		var m []string
		for f, a := range g.Match {
			m = append(m, f+"="+a)
		}
		fmt.Fprintf(w, "%s\t%s\t%t\t%s\n", g.Channel, g.Role, g.Publish, strings.Join(m, ","))
	}
	return w.Flush()
}
