package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	osexec "os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgpush/pgpush/client"
	"github.com/pgpush/pgpush/db/dbtest"
)

// TestTail runs `pgpush tail` as a real process against a real server (or
// straight against the database) and reads its output lines. The binary is
// built once for all subtests.
func TestTail(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)

	t.Run("Lines", func(t *testing.T) {
		t.Parallel()
		pool, url, password := newShop(t)
		srv := startServer(t, url, nil)
		tail := startTail(t, bin, []string{"PGPUSH_URL=" + srv.base, "PGPUSH_EMAIL=" + demoAdminEmail, "PGPUSH_PASSWORD=" + password},
			"tail", "order_changes")
		tail.waitStderr(t, "subscribed to order_changes on "+srv.base+" as "+demoAdminEmail)

		exec(t, pool, `INSERT INTO orders (order_number, total) VALUES ('ORD-1', 12.5)`)
		exec(t, pool, `UPDATE orders SET status = 'shipped' WHERE order_number = 'ORD-1'`)
		linePattern := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3}  (order:\w+)  (\d+)  (\{.*\})$`)
		for _, want := range []struct{ event, contains string }{
			{"order:created", `"order_number":"ORD-1"`},
			{"order:updated", `"changed_fields":{"status":"shipped"}`},
		} {
			line := tail.line(t)
			m := linePattern.FindStringSubmatch(line)
			if m == nil || m[1] != want.event || !strings.Contains(m[3], want.contains) {
				t.Fatalf("line %q, want time, %s, id and compact data containing %s", line, want.event, want.contains)
			}
			if strings.Contains(line, "\x1b") {
				t.Errorf("line %q has ANSI escapes, want none when stdout is not a terminal", line)
			}
		}
		tail.interrupt(t)
	})

	t.Run("JSONFilterSince", func(t *testing.T) {
		t.Parallel()
		pool, url, password := newShop(t)
		srv := startServer(t, url, nil)
		for _, status := range []string{"pending", "paid", "pending"} {
			exec(t, pool, `INSERT INTO orders (order_number, status) VALUES ('ORD-' || gen_random_uuid(), $1)`, status)
		}
		ids := eventIDs(t, pool, "order_changes")
		tail := startTail(t, bin, []string{"PGPUSH_URL=" + srv.base, "PGPUSH_EMAIL=" + demoAdminEmail, "PGPUSH_PASSWORD=" + password},
			"tail", "order_changes", "--json", "--since", ids[0], "--filter", `{"status":"pending"}`)
		tail.waitStderr(t, "subscribed to order_changes")
		// Replayed: after the first event, only order 3 is pending.
		checkJSONLine(t, tail.line(t), ids[2], "order:created", 3)
		exec(t, pool, `INSERT INTO orders (order_number, status) VALUES ('ORD-4', 'paid')`)
		exec(t, pool, `INSERT INTO orders (order_number, status) VALUES ('ORD-5', 'pending')`)
		ids = eventIDs(t, pool, "order_changes")
		checkJSONLine(t, tail.line(t), ids[4], "order:created", 5) // live, and order 4 filtered out
		tail.interrupt(t)
	})

	t.Run("Database", func(t *testing.T) {
		t.Parallel()
		pool, url, _ := newShop(t)
		startServer(t, url, nil) // its sequencer numbers what committed
		exec(t, pool, `INSERT INTO orders (order_number) VALUES ('ORD-1')`)
		tail := startTail(t, bin, nil, "tail", "order_changes", "--database-url", url)
		tail.waitStderr(t, "reading order_changes from the database's event log")
		// An event on another channel first: tail shows only its channel.
		exec(t, pool, `INSERT INTO products (sku, name, price) VALUES ('A1', 'Tea', 3)`)
		exec(t, pool, `UPDATE orders SET status = 'shipped' WHERE order_number = 'ORD-1'`)
		line := tail.line(t)
		if !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3}  order:updated  \d+  \{.*"changed_fields":\{"status":"shipped"\}.*\}$`).MatchString(line) ||
			!strings.Contains(line, `"order_number":"ORD-1"`) {
			t.Fatalf("line %q, want order 1's update as the server would send it, compact", line)
		}
		tail.interrupt(t)

		ids := eventIDs(t, pool, "order_changes")
		replay := startTail(t, bin, nil, "tail", "order_changes", "--database-url", url, "--json", "--since", ids[0])
		checkJSONLine(t, replay.line(t), ids[1], "order:updated", 1)
		replay.interrupt(t)
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		_, url, password := newShop(t)
		srv := startServer(t, url, nil)
		login := []string{"PGPUSH_URL=" + srv.base, "PGPUSH_EMAIL=" + demoAdminEmail}
		tests := []struct {
			name string
			env  []string
			args []string
			want string
		}{
			{"no channel", nil, []string{"tail"}, "wrong number of arguments"},
			{"two channels", nil, []string{"tail", "a", "b"}, "wrong number of arguments"},
			{"bad channel", nil, []string{"tail", "no spaces"}, "invalid channel name"},
			{"unknown flag", nil, []string{"tail", "order_changes", "--bogus"}, "flag provided but not defined: -bogus"},
			{"filter not JSON", nil, []string{"tail", "order_changes", "--filter", "status=paid"}, "--filter must be a JSON object"},
			{"filter not an object", nil, []string{"tail", "order_changes", "--filter", "[1]"}, "--filter must be a JSON object"},
			{"filter in database mode", nil, []string{"tail", "order_changes", "--filter", "{}", "--database-url", url}, "--filter needs the server"},
			{"since not an id in database mode", nil, []string{"tail", "order_changes", "--since", "yesterday", "--database-url", url}, `--since "yesterday" is not an event id`},
			{"since refused by the server", append(login, "PGPUSH_PASSWORD="+password), []string{"tail", "order_changes", "--since", "yesterday"}, `invalid "since"`},
			{"since unknown in database mode", nil, []string{"tail", "order_changes", "--since", "999999", "--database-url", url}, "event 999999 is not in the event log"},
			{"bad database url", nil, []string{"tail", "order_changes", "--database-url", "postgres://127.0.0.1:1/x?connect_timeout=2"}, "connect to the database"},
			{"wrong password", append(login, "PGPUSH_PASSWORD=wrong"), []string{"tail", "order_changes"}, "log in as " + demoAdminEmail + ": wrong email or password"},
			{"email without password", login, []string{"tail", "order_changes"}, "PGPUSH_PASSWORD is not"},
			{"no server", []string{"PGPUSH_URL=http://127.0.0.1:1"}, []string{"tail", "order_changes"}, "connection refused"},
			{"unknown channel", append(login, "PGPUSH_PASSWORD="+password), []string{"tail", "no_such_changes"}, `unknown channel "no_such_changes"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				cmd := osexec.Command(bin, tt.args...)
				cmd.Env = tailEnv(tt.env)
				var stdout, stderr strings.Builder
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				var exitErr *osexec.ExitError
				if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
					t.Fatalf("pgpush %v: %v (stderr %q), want exit status 1", tt.args, err, stderr.String())
				}
				lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
				if len(lines) != 1 || !strings.HasPrefix(lines[0], "pgpush: ") || !strings.Contains(lines[0], tt.want) {
					t.Errorf("stderr %q, want one line \"pgpush: …%s…\"", stderr.String(), tt.want)
				}
				if stdout.Len() != 0 {
					t.Errorf("stdout %q, want nothing", stdout.String())
				}
			})
		}
	})
}

// eventIDs lists channel's event ids in delivery order, once the
// sequencer has numbered every one of them.
func eventIDs(t *testing.T, pool *pgxpool.Pool, channel string) []string {
	t.Helper()
	dbtest.Eventually(t, waitTimeout, func() bool {
		var unnumbered int
		err := pool.QueryRow(t.Context(), `
			SELECT count(*) FROM pgpush.events e
			WHERE e.channel = $1 AND NOT EXISTS (SELECT 1 FROM pgpush.commits c WHERE c.xid = e.xid)`, channel).Scan(&unnumbered)
		return err == nil && unnumbered == 0
	})
	rows, err := pool.Query(t.Context(), `
		SELECT e.id::text FROM pgpush.events e JOIN pgpush.commits c ON c.xid = e.xid
		WHERE e.channel = $1 ORDER BY c.seq, e.id`, channel)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkJSONLine checks a --json line is exactly the §3 event object, with
// the given id, of event on order orderID.
func checkJSONLine(t *testing.T, line, id, event string, orderID int) {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &raw); err != nil {
		t.Fatalf("line %q is not a JSON object: %v", line, err)
	}
	if len(raw) != 5 {
		t.Errorf("line %q has %d fields, want id, channel, event, data, timestamp", line, len(raw))
	}
	var ev client.Event
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	var row struct {
		ID int `json:"id"`
	}
	if err := ev.Decode(&row); err != nil {
		t.Fatal(err)
	}
	if ev.ID != id || ev.Channel != "order_changes" || ev.Event != event || row.ID != orderID {
		t.Errorf("line %q, want event %s: %s of order %d", line, id, event, orderID)
	}
	if !regexp.MustCompile(`"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`).MatchString(line) {
		t.Errorf("line %q: timestamp is not ISO-8601 UTC with milliseconds", line)
	}
}

// tailEnv is the test binary's environment without PGPUSH_* and NO_COLOR,
// plus extra.
func tailEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PGPUSH_") && !strings.HasPrefix(kv, "NO_COLOR=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// tailProcess is `pgpush tail` running as a child process, its output
// read line by line.
type tailProcess struct {
	cmd    *osexec.Cmd
	stdout chan string
	stderr chan string
	exited chan struct{}
	err    error // set before exited is closed
}

func startTail(t *testing.T, bin string, env []string, args ...string) *tailProcess {
	t.Helper()
	cmd := osexec.Command(bin, args...)
	cmd.Env = tailEnv(env)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &tailProcess{cmd: cmd, stdout: make(chan string, 1000), stderr: make(chan string, 1000), exited: make(chan struct{})}
	scan := func(r *bufio.Scanner, ch chan<- string, done chan<- struct{}) {
		for r.Scan() {
			ch <- r.Text()
		}
		close(ch)
		done <- struct{}{}
	}
	scanned := make(chan struct{}, 2)
	outScanner := bufio.NewScanner(stdout)
	outScanner.Buffer(nil, 16<<20)
	go scan(outScanner, p.stdout, scanned)
	go scan(bufio.NewScanner(stderr), p.stderr, scanned)
	go func() {
		// Wait only after both pipes are drained, as os/exec requires.
		<-scanned
		<-scanned
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// line waits for the next stdout line.
func (p *tailProcess) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.stdout:
		if !ok {
			t.Fatalf("pgpush tail exited (%v) before printing the line wanted; stderr: %s", p.wait(), p.drainStderr())
		}
		return l
	case <-time.After(waitTimeout):
		t.Fatalf("no line from pgpush tail in time; stderr: %s", p.drainStderr())
		return ""
	}
}

// waitStderr waits for a stderr line containing want.
func (p *tailProcess) waitStderr(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(waitTimeout)
	var seen []string
	for {
		select {
		case l, ok := <-p.stderr:
			if !ok {
				t.Fatalf("pgpush tail exited (%v) without saying %q; stderr: %q", p.wait(), want, seen)
			}
			if strings.Contains(l, want) {
				return
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("pgpush tail did not say %q in time; stderr: %q", want, seen)
		}
	}
}

func (p *tailProcess) wait() error {
	select {
	case <-p.exited:
		return p.err
	case <-time.After(waitTimeout):
		return errors.New("still running")
	}
}

func (p *tailProcess) drainStderr() string {
	var lines []string
	for {
		select {
		case l, ok := <-p.stderr:
			if !ok {
				return strings.Join(lines, "\n")
			}
			lines = append(lines, l)
		default:
			return strings.Join(lines, "\n")
		}
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and checks tail exits 0 with no
// error line.
func (p *tailProcess) interrupt(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(); err != nil {
		t.Errorf("pgpush tail after Ctrl-C: %v, want exit 0; stderr: %s", err, p.drainStderr())
	}
	if rest := p.drainStderr(); strings.Contains(rest, "pgpush: ") {
		t.Errorf("stderr after Ctrl-C %q, want no error", rest)
	}
}

// TestTailFormat covers the human line: key order kept, data compacted,
// changed fields in bold only with emphasis.
func TestTailFormat(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 1, 25, 10, 30, 0, 123e6, time.UTC)
	clock := ts.Local().Format("15:04:05.000")
	tests := []struct {
		name     string
		event    string
		data     string
		emphasis bool
		want     string
	}{
		{"updated, plain", "order:updated", `{"id": 1, "status": "paid", "total": 9.5, "changed_fields": {"status": "paid"}}`, false,
			`{"id":1,"status":"paid","total":9.5,"changed_fields":{"status":"paid"}}`},
		{"updated, emphasis", "order:updated", `{"id":1,"status":"paid","total":9.5,"changed_fields":{"status":"paid","total":9.5}}`, true,
			`{"id":1,` + ansiBold + `"status":"paid"` + ansiReset + `,` + ansiBold + `"total":9.5` + ansiReset + `,"changed_fields":{"status":"paid","total":9.5}}`},
		{"created, emphasis", "order:created", `{"z":1,"a":{"b": [1, 2]}}`, true, `{"z":1,"a":{"b":[1,2]}}`},
		{"not an object", "x:y", `[1, 2]`, true, `[1,2]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := client.Event{ID: "42", Event: tt.event, Data: json.RawMessage(tt.data), Timestamp: ts}
			got := formatEventLine(ev, tt.emphasis)
			want := clock + "  " + tt.event + "  42  " + tt.want + "\n"
			if got != want {
				t.Errorf("formatEventLine =\n %q\nwant\n %q", got, want)
			}
		})
	}
}

// TestTailHelp: --help prints the usage with an example, once.
func TestTailHelp(t *testing.T) {
	t.Parallel()
	stdout, stderr, err := runCLI(t, nil, "", "tail", "--help")
	if err != nil {
		t.Fatalf("pgpush tail --help: %v", err)
	}
	if n := strings.Count(stdout, "Usage: pgpush tail"); n != 1 || !strings.Contains(stdout, "Example:") {
		t.Errorf("stdout %q: usage %d times, want once with an example", stdout, n)
	}
	if stderr != "" {
		t.Errorf("stderr %q, want nothing", stderr)
	}
}
