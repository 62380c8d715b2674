package db_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/dbtest"
)

// secret is the password in the tests' bad URLs; no error may show it.
const secret = "s3cr3t-pw"

func TestParseConfigSetsApplicationName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		url     string
		appName string
	}{
		{"url", "postgres://u@h/d", db.ApplicationName},
		{"listener", "postgres://u@h/d", db.ListenerApplicationName},
		// Operators tell pgpush's connections apart by it, so the URL's
		// own application_name does not win.
		{"overrides url", "postgres://u@h/d?application_name=other", db.ListenerApplicationName},
		{"keyword/value", "host=h user=u dbname=d application_name=other", db.ApplicationName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := db.ParseConfig(tt.url, tt.appName)
			if err != nil {
				t.Fatalf("ParseConfig(%q): %v", tt.url, err)
			}
			if got := cfg.RuntimeParams["application_name"]; got != tt.appName {
				t.Errorf("application_name = %q, want %q", got, tt.appName)
			}
			if cfg.Host != "h" || cfg.User != "u" || cfg.Database != "d" {
				t.Errorf("host, user, database = %q, %q, %q, want h, u, d", cfg.Host, cfg.User, cfg.Database)
			}
		})
	}
}

func TestParseConfigErrorHidesPassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
	}{
		{"bad port", "postgres://u:" + secret + "@h:notaport/d"},
		{"port out of range", "postgres://u:" + secret + "@h:99999/d"},
		{"bad sslmode", "postgres://u:" + secret + "@h/d?sslmode=bogus"},
		{"bad escape in password", "postgres://u:" + secret + "%zz@h/d"},
		{"space in password", "postgres://u:s3 " + secret + "@h/d"},
		{"unclosed ipv6", "postgres://u:" + secret + "@[::1/d"},
		{"password parameter", "postgres://h/d?password=" + secret + "&port=x"},
		{"bad password parameter", "postgres://h/d?password=" + secret + "%zz"},
		{"bad connect_timeout", "postgres://u:" + secret + "@h/d?connect_timeout=x"},
		{"keyword/value", "host=h password=" + secret + " port=x"},
		{"unterminated quote", "host=h password='" + secret},
		{"nul byte", "postgres://u:" + secret + "@h/d\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := db.ParseConfig(tt.url, db.ApplicationName)
			if err == nil {
				t.Fatalf("ParseConfig(%q) = %+v, want an error", tt.url, cfg)
			}
			checkRedacted(t, err)
		})
	}
}

// checkRedacted fails unless err is a parse error that shows no password,
// in its text or in anything it wraps.
func checkRedacted(t *testing.T, err error) {
	t.Helper()
	if got := err.Error(); strings.Contains(got, secret) || strings.Contains(got, "s3 ") {
		t.Errorf("error %q shows the password", got)
	}
	if got, want := err.Error(), "parse database url: "; !strings.HasPrefix(got, want) {
		t.Errorf("error %q, want prefix %q", got, want)
	}
	// ParseConfigError.ConnString is the raw URL.
	if pe := (*pgconn.ParseConfigError)(nil); errors.As(err, &pe) {
		t.Errorf("error wraps a *pgconn.ParseConfigError, whose ConnString holds the password")
	}
}

// TestOpen shares one database between its subtests: each only connects.
func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dbURL := dbtest.New(t)

	t.Run("pool is named", func(t *testing.T) {
		t.Parallel()
		pool, err := db.Open(ctx, dbURL)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer pool.Close()
		checkApplicationName(t, pool.QueryRow(ctx, appNameQuery), db.ApplicationName)
		var jit string
		if err := pool.QueryRow(ctx, `SHOW jit`).Scan(&jit); err != nil || jit != "off" {
			t.Fatalf("jit on the pool's connections = %q (err %v), want off", jit, err)
		}
	})
	t.Run("listener config is named", func(t *testing.T) {
		t.Parallel()
		cfg, err := db.ParseConfig(dbURL, db.ListenerApplicationName)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		checkApplicationName(t, conn.QueryRow(ctx, appNameQuery), db.ListenerApplicationName)
	})
	t.Run("bad url", func(t *testing.T) {
		t.Parallel()
		pool, err := db.Open(ctx, "postgres://u:"+secret+"@h:notaport/d")
		if err == nil {
			pool.Close()
			t.Fatal("Open with a bad port succeeded, want an error")
		}
		checkRedacted(t, err)
	})
	t.Run("missing database", func(t *testing.T) {
		t.Parallel()
		// A password for the real cluster, which trusts local connections
		// and so ignores it, on a database that does not exist.
		u, err := url.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), secret)
		u.Path = "/no_such_database"
		// Open pings, so the error comes now, not at the first query.
		pool, err := db.Open(ctx, u.String())
		if err == nil {
			pool.Close()
			t.Fatal("Open on a missing database succeeded, want an error")
		}
		if got, want := err.Error(), "connect to database: "; !strings.HasPrefix(got, want) {
			t.Errorf("error %q, want prefix %q", got, want)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "3D000" {
			t.Errorf("error %v, want a PgError with code 3D000 (invalid_catalog_name)", err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q shows the password", err)
		}
	})
}

// appNameQuery reads the name pg_stat_activity shows operators.
const appNameQuery = `SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()`

func checkApplicationName(t *testing.T, row pgx.Row, want string) {
	t.Helper()
	var got string
	if err := row.Scan(&got); err != nil {
		t.Fatalf("read application_name: %v", err)
	}
	if got != want {
		t.Errorf("pg_stat_activity.application_name = %q, want %q", got, want)
	}
}
