// Command pgpush turns row changes in PostgreSQL into real-time WebSocket
// events. This package holds flags, wiring and exit codes only; each
// subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgpush: %s\n", oneLine(err.Error()))
		os.Exit(1)
	}
}

// oneLine keeps CLI errors on one line whatever the wrapped error holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// env is how commands read the environment, so tests can supply their own.
type env func(string) string

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, io cmdIO) error
}

// cmdIO is what a command may touch besides its arguments.
type cmdIO struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv env
}

func commands() map[string]command {
	return map[string]command{
		"serve":       {"run the server (applies pending migrations first)", runServe},
		"demo":        {"zero set-up demo: throwaway PostgreSQL, shop schema, admin user", runDemo},
		"migrate":     {"apply, undo or show pgpush's own schema: migrate [up|down|status]", runMigrate},
		"watch":       {"install the change trigger on a table", runWatch},
		"unwatch":     {"remove the change trigger from a table", runUnwatch},
		"watched":     {"list watched tables", runWatched},
		"user":        {"manage accounts: user add|disable|list", runUser},
		"grant":       {"let a role subscribe to (or publish on) a channel", runGrant},
		"revoke":      {"take a grant back", runRevoke},
		"grants":      {"list grants", runGrants},
		"version":     {"print the version", runVersion},
		"healthcheck": {"exit 0 when the local server is ready (for container healthchecks)", runHealthcheck},
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv env) error {
	cio := cmdIO{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return nil
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		return fmt.Errorf("unknown command %q (run 'pgpush --help')", args[0])
	}
	err := cmd.run(ctx, args[1:], cio)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "pgpush: PostgreSQL row changes as real-time WebSocket events")
	fmt.Fprintln(w, "\nUsage: pgpush <command> [flags]   (pgpush <command> --help for details)")
	fmt.Fprintln(w, "\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --database-url (default: $DATABASE_URL).")
	fmt.Fprintln(w, "\nExample:\n  pgpush watch orders && pgpush serve")
}

func runVersion(_ context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("version", "pgpush version", "Prints the version.", cio)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	fmt.Fprintf(cio.stdout, "pgpush %s\n", version)
	return nil
}

// newFlagSet makes a flag set whose --help prints usage and an example to
// stdout, and whose errors come back to run instead of exiting.
func newFlagSet(name, synopsis, example string, cio cmdIO) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(cio.stdout, "Usage: %s\n\n", synopsis)
		fs.SetOutput(cio.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprintf(cio.stdout, "\nExample:\n  %s\n", example)
	}
	return fs
}

// parse parses flags anywhere among the arguments (pgpush watch orders
// --entity order) and checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				// fs.Parse has printed the usage already.
				return nil, flag.ErrHelp
			}
			return nil, fmt.Errorf("%s: %w", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			positional = append(positional, args[1:]...)
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	if len(positional) < minPos || len(positional) > maxPos {
		return nil, fmt.Errorf("%s: wrong number of arguments (run 'pgpush %s --help')", fs.Name(), fs.Name())
	}
	return positional, nil
}

// stringList is a repeatable flag that also splits on commas.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// repeated is a repeatable flag kept whole (for key=value pairs).
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func databaseURLFlag(fs *flag.FlagSet, cio cmdIO) *string {
	return fs.String("database-url", cio.getenv("DATABASE_URL"), "PostgreSQL connection string")
}

func requireURL(url string) error {
	if url == "" {
		return errors.New("no database: set DATABASE_URL or pass --database-url")
	}
	return nil
}

// newLogger writes text on a terminal and JSON when LOG_FORMAT=json.
func newLogger(w io.Writer, getenv env) *slog.Logger {
	level := slog.LevelInfo
	if strings.EqualFold(getenv("LOG_LEVEL"), "debug") {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(getenv("LOG_FORMAT"), "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runHealthcheck(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("healthcheck", "pgpush healthcheck [--url URL]", "pgpush healthcheck --url http://127.0.0.1:3000/readyz", cio)
	port := cio.getenv("PORT")
	if port == "" {
		port = "3000"
	}
	url := fs.String("url", "http://127.0.0.1:"+port+"/readyz", "readiness URL to check")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %d", *url, resp.StatusCode)
	}
	return nil
}
