package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/cluster"
	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/triggers"
)

// demoAdminEmail is the account the demo creates and prints.
const demoAdminEmail = "admin@example.com"

// shopSchema is the demo shop: the five tables of the shop backend.
const shopSchema = `
CREATE TABLE IF NOT EXISTS customers (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL UNIQUE,
    phone      text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS products (
    id         serial PRIMARY KEY,
    sku        text NOT NULL UNIQUE,
    name       text NOT NULL,
    price      numeric(10,2) NOT NULL,
    stock      integer NOT NULL DEFAULT 0,
    category   text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS orders (
    id             serial PRIMARY KEY,
    order_number   text NOT NULL UNIQUE,
    customer_id    integer REFERENCES customers (id),
    status         text NOT NULL DEFAULT 'pending',
    payment_status text NOT NULL DEFAULT 'unpaid',
    total          numeric(10,2) NOT NULL DEFAULT 0,
    currency       text NOT NULL DEFAULT 'USD',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS shipments (
    id              serial PRIMARY KEY,
    order_id        integer REFERENCES orders (id) ON DELETE CASCADE,
    carrier         text NOT NULL,
    tracking_number text,
    status          text NOT NULL DEFAULT 'label_created',
    shipped_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS transactions (
    id             serial PRIMARY KEY,
    order_id       integer REFERENCES orders (id) ON DELETE CASCADE,
    amount         numeric(10,2) NOT NULL,
    currency       text NOT NULL DEFAULT 'USD',
    status         text NOT NULL DEFAULT 'pending',
    payment_method text NOT NULL DEFAULT 'card',
    created_at     timestamptz NOT NULL DEFAULT now()
);`

func runDemo(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("demo", "pgpush demo [--simulate]   (PORT, default 3000; DATABASE_URL to use your own database)",
		"go run ./cmd/pgpush demo --simulate", cio)
	url := databaseURLFlag(fs, cio)
	simulate := fs.Bool("simulate", false, "keep writing plausible shop changes")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	cfg, err := configFromEnv(cio.getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cio.stderr, cio.getenv)
	cfg.DatabaseURL = *url
	psqlHint := ""
	// Only a cluster the demo started itself is removed when it stops.
	throwaway := cfg.DatabaseURL == ""
	if throwaway {
		if _, err := cluster.FindBinaries(); err != nil {
			if errors.Is(err, cluster.ErrNoServerBinaries) {
				return errors.New("no DATABASE_URL and no PostgreSQL server binaries: install them (apt-get install postgresql) or set DATABASE_URL")
			}
			return err
		}
		fmt.Fprintln(cio.stdout, "starting a throwaway PostgreSQL ...")
		c, err := cluster.Start(ctx, cluster.Options{Fsync: true, Logger: logger})
		if err != nil {
			return err
		}
		// Removed on Ctrl-C as on any other return.
		defer func() {
			if err := c.Stop(); err != nil {
				logger.Error("stop throwaway postgres", "err", err)
			}
		}()
		if err := createDatabase(ctx, c.URL("postgres"), "pgpush_demo"); err != nil {
			return err
		}
		cfg.DatabaseURL = c.URL("pgpush_demo")
		psqlHint = fmt.Sprintf("psql '%s'", cfg.DatabaseURL)
	}
	if len(cfg.SessionSecret) == 0 {
		cfg.SessionSecret = []byte(randomToken(48))
	}
	if err := checkConfig(cfg); err != nil {
		return err
	}

	pool, err := db.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	password, err := setUpDemo(ctx, pool, 0, logger)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	started := func() {
		fmt.Fprintf(cio.stdout, "\npgpush demo is running\n")
		fmt.Fprintf(cio.stdout, "  dashboard:  http://localhost:%s/\n", port)
		fmt.Fprintf(cio.stdout, "  websocket:  ws://localhost:%s/ws\n", port)
		fmt.Fprintf(cio.stdout, "  login:      %s / %s\n", demoAdminEmail, password)
		if psqlHint != "" {
			fmt.Fprintf(cio.stdout, "  database:   %s\n", psqlHint)
		}
		fmt.Fprintf(cio.stdout, "  try:        UPDATE orders SET status = 'shipped' WHERE id = 1;\n")
		if throwaway {
			fmt.Fprintf(cio.stdout, "Press Ctrl-C to stop (the throwaway database is removed).\n")
		} else {
			fmt.Fprintf(cio.stdout, "Press Ctrl-C to stop (your database keeps the demo schema).\n")
		}
	}
	if *simulate {
		go simulateShop(ctx, pool, logger)
	}
	return runServer(ctx, cfg, ln, logger, started)
}

// createDatabase creates name unless it exists.
func createDatabase(ctx context.Context, adminURL, name string) error {
	pool, err := db.Open(ctx, adminURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := pool.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	return nil
}

// setUpDemo migrates, creates and watches the shop tables, seeds a few
// rows, grants rooms and notifications to anonymous and (re)creates the
// admin account, returning its new password. hashCost 0 is bcrypt's default.
func setUpDemo(ctx context.Context, pool *pgxpool.Pool, hashCost int, logger *slog.Logger) (string, error) {
	if _, err := db.Migrate(ctx, pool, "up", logger); err != nil {
		return "", err
	}
	if _, err := pool.Exec(ctx, shopSchema); err != nil {
		return "", fmt.Errorf("create shop schema: %w", err)
	}
	for _, table := range []string{"customers", "products", "orders", "shipments", "transactions"} {
		cfg := triggers.Config{Table: table}
		if table == "products" {
			cfg.Broadcast, cfg.BroadcastOn = "new_product", []string{"insert"}
		}
		if _, err := triggers.Watch(ctx, pool, cfg); err != nil {
			return "", fmt.Errorf("watch %s: %w", table, err)
		}
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO customers (name, email) VALUES ('Ada Lovelace', 'ada@example.com'), ('Alan Turing', 'alan@example.com')
		ON CONFLICT (email) DO NOTHING`); err != nil {
		return "", fmt.Errorf("seed shop: %w", err)
	}
	for _, pattern := range []string{"room:*", "notify:*"} {
		if err := session.AddGrant(ctx, pool, session.Grant{Channel: pattern, Role: session.RoleAnonymous, Publish: true}); err != nil {
			return "", err
		}
	}
	store, err := session.NewStore(pool, session.Options{Secret: []byte(randomToken(session.MinSecretBytes)), HashCost: hashCost})
	if err != nil {
		return "", err
	}
	// The demo prints a fresh password each run, so an earlier demo admin
	// in the same database is replaced.
	if err := store.RemoveUser(ctx, demoAdminEmail); err != nil && !errors.Is(err, session.ErrUserNotFound) {
		return "", fmt.Errorf("reset demo admin: %w", err)
	}
	password := randomToken(12)
	if _, err := store.AddUser(ctx, demoAdminEmail, session.RoleAdmin, password, nil); err != nil {
		return "", err
	}
	return password, nil
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// simulateShop writes a plausible stream of shop changes until ctx ends.
func simulateShop(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) {
	statuses := []string{"processing", "shipped", "delivered"}
	ticker := time.NewTicker(700 * time.Millisecond)
	defer ticker.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		var err error
		switch n % 4 {
		case 0, 1:
			total, _ := rand.Int(rand.Reader, big.NewInt(50000))
			_, err = pool.Exec(ctx, `
				INSERT INTO orders (order_number, customer_id, total)
				VALUES ('ORD-' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint, (SELECT id FROM customers ORDER BY random() LIMIT 1), $1 / 100.0)`,
				total.Int64())
		case 2:
			_, err = pool.Exec(ctx, `
				UPDATE orders SET status = $1, payment_status = 'paid', updated_at = now()
				WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1)`, statuses[n%len(statuses)])
		case 3:
			_, err = pool.Exec(ctx, `
				INSERT INTO products (sku, name, price, stock, category)
				VALUES ('SKU-' || $1, 'Product ' || $1, 9.99, 10, 'demo')
				ON CONFLICT (sku) DO UPDATE SET stock = products.stock + 1`, fmt.Sprint(n%50))
		}
		if err != nil && ctx.Err() == nil {
			logger.Warn("simulate", "err", err)
		}
	}
}
