// Command pgpush-bench measures pgpush on one machine: it starts a
// throwaway PostgreSQL (or uses --database-url), pgpush servers as child
// processes, subscribed WebSocket clients and writer connections, and
// reports rows committed/s, events delivered/s, commit→client latency,
// lost and duplicated events, and the servers' memory and CPU, next to the
// same writers with no trigger and with a minimal hand-written relay
// trigger. See docs/SCALING.md and the README for the figures.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgpush-bench: %s\n", strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	DatabaseURL      string
	Scenario         string
	Subscribers      int
	Writers          int
	Instances        int
	Rate             float64
	Mode             string
	Payload          int
	BulkRows         int
	Duration         time.Duration
	Drain            time.Duration
	Baselines        bool
	JSONPath         string
	PgpushBin        string
	EventservBin     string
	ServerProfileDir string

	set map[string]bool // flags given explicitly
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("pgpush-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.DatabaseURL, "database-url", "", "use this (scratch) database instead of a throwaway cluster; the bench creates and empties table bench_orders")
	fs.StringVar(&o.Scenario, "scenario", "", "predefined run: "+strings.Join(scenarioNames(), ", ")+", or all; explicit flags override its settings")
	fs.IntVar(&o.Subscribers, "subscribers", 1, "subscribed sockets, spread over the instances")
	fs.IntVar(&o.Writers, "writers", 4, "writer connections")
	fs.IntVar(&o.Instances, "instances", 1, "pgpush servers sharing the database")
	fs.Float64Var(&o.Rate, "rate", 0, "target rows/s over all writers (0: as fast as possible)")
	fs.StringVar(&o.Mode, "mode", "insert", "insert or update")
	fs.IntVar(&o.Payload, "payload-bytes", 100, "bytes in each row's payload column")
	fs.IntVar(&o.BulkRows, "bulk-rows", 1_000_000, "rows the bulk scenario's one UPDATE changes")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "how long the writers write in each run")
	fs.DurationVar(&o.Drain, "drain", 15*time.Second, "how long to wait for stragglers after the writers stop")
	fs.BoolVar(&o.Baselines, "baselines", true, "also run the writers with no trigger and with the relay trigger (without --scenario)")
	fs.StringVar(&o.JSONPath, "json", "", "write every figure to this JSON file")
	fs.StringVar(&o.PgpushBin, "pgpush-bin", "", "pgpush binary to run (default: go build ./cmd/pgpush)")
	fs.StringVar(&o.EventservBin, "compare-eventserv", "", "pg_eventserv binary: also measure it on the same writers and subscribers")
	fs.StringVar(&o.ServerProfileDir, "server-profile", "", "write profiles of the pgpush servers here, taken through their PPROF_ADDR: CPU during each run's write phase, heap and goroutines of idle-10k; also the bench's own CPU")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	switch {
	case o.Mode != "insert" && o.Mode != "update":
		return o, fmt.Errorf("--mode %q: want insert or update", o.Mode)
	case o.Writers < 1, o.Instances < 1, o.Subscribers < 0, o.Payload < 0, o.Rate < 0, o.BulkRows < 1:
		return o, errors.New("--writers and --instances must be at least 1; --subscribers, --payload-bytes and --rate not negative")
	case o.Duration <= 0 || o.Drain <= 0:
		return o, errors.New("--duration and --drain must be positive")
	case o.Scenario != "" && o.Scenario != "all" && scenarios[o.Scenario] == nil:
		return o, fmt.Errorf("unknown scenario %q: want one of %s, all", o.Scenario, strings.Join(scenarioNames(), ", "))
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	b, err := setUp(ctx, o, stdout)
	if err != nil {
		return err
	}
	defer b.tearDown()

	var names []string
	switch o.Scenario {
	case "":
		names = []string{"custom"}
	case "all":
		names = scenarioNames()
	default:
		names = []string{o.Scenario}
	}
	var runErr error
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		fn := scenarios[name]
		if name == "custom" {
			fn = customScenario
		}
		if err := fn(ctx, b); err != nil {
			fmt.Fprintf(stdout, "[%s] error: %v\n", name, err)
			runErr = errors.Join(runErr, fmt.Errorf("%s: %w", name, err))
		}
	}
	targets := append(evaluateTargets(b.results), issue14Targets(b.results)...)
	if len(targets) > 0 {
		fmt.Fprintln(stdout)
		printTargets(stdout, targets)
	}
	if o.JSONPath != "" {
		if err := writeJSON(o.JSONPath, b, args, targets); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	return runErr
}

func writeJSON(path string, b *bench, args []string, targets []targetResult) error {
	out := struct {
		Date    string         `json:"date"`
		Command string         `json:"command"`
		Machine machineInfo    `json:"machine"`
		Runs    []*result      `json:"runs"`
		Targets []targetResult `json:"targets"`
	}{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Command: strings.TrimSpace("go run ./cmd/pgpush-bench " + strings.Join(args, " ")),
		Machine: b.machine,
		Runs:    b.results,
		Targets: targets,
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
