package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgpush/pgpush/client"
	"github.com/pgpush/pgpush/db"
)

const (
	// tailDefaultURL is where `pgpush demo` and `pgpush serve` listen by default.
	tailDefaultURL = "http://localhost:3000"
	// tailCloseWait bounds closing the client (and logging out) on exit.
	tailCloseWait = 5 * time.Second
	// tailIdleCheck is how long the database mode waits for a doorbell
	// before reading the log anyway (as the server's listener does).
	tailIdleCheck = 5 * time.Second
	// tailBatch bounds one read of the event log in database mode.
	tailBatch = 1000
	// tailMaxBackoff caps the database mode's reconnect delay.
	tailMaxBackoff = 5 * time.Second
)

// ANSI SGR sequences for the emphasis of changed fields on a terminal.
const (
	ansiBold  = "\x1b[1m"
	ansiReset = "\x1b[0m"
)

func runTail(ctx context.Context, args []string, cio cmdIO) error {
	fs := newFlagSet("tail",
		"pgpush tail CHANNEL [--filter JSON] [--since ID] [--json] [--url URL] [--database-url URL]\n\n"+
			"Prints a channel's events live, one line each, through the server\n"+
			"($PGPUSH_URL, logged in as $PGPUSH_EMAIL with $PGPUSH_PASSWORD, or\n"+
			"anonymously without them). With --database-url it reads the event log\n"+
			"straight from the database instead: an admin tool, no grants applied.",
		`PGPUSH_EMAIL=admin@example.com PGPUSH_PASSWORD=… pgpush tail order_changes --filter '{"status":"paid"}'`, cio)
	serverURL := fs.String("url", orDefault(cio.getenv("PGPUSH_URL"), tailDefaultURL), "server URL (default: $PGPUSH_URL, else "+tailDefaultURL+")")
	filter := fs.String("filter", "", `only events whose data passes this JSON filter, e.g. '{"status":"paid"}'`)
	since := fs.String("since", "", "first replay the channel's events after this event id")
	jsonLines := fs.Bool("json", false, "print each event as one JSON line, exactly as the server sends it")
	// No $DATABASE_URL default, unlike the admin commands: a developer who
	// exported it for `serve` must still see what the server sends.
	dbURL := fs.String("database-url", "", "read the event log from this database, without a server (admin tool: no grants, no filter)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	channel := pos[0]
	if !db.ValidChannel(channel) {
		return fmt.Errorf("tail: invalid channel name %q (1 to 200 letters, digits, _ . : -)", channel)
	}
	if *filter != "" {
		f := bytes.TrimSpace([]byte(*filter))
		if !json.Valid(f) || f[0] != '{' {
			return errors.New(`tail: --filter must be a JSON object, e.g. '{"status":"paid"}'`)
		}
		if *dbURL != "" {
			return errors.New("tail: --filter needs the server, which evaluates filters; it cannot be used with --database-url")
		}
	}
	if *since != "" && *dbURL != "" {
		// Ids are opaque to clients: only the database mode reads them,
		// and the server says itself what it does not accept.
		if _, err := strconv.ParseInt(*since, 10, 64); err != nil {
			return fmt.Errorf("tail: --since %q is not an event id", *since)
		}
	}
	p := &eventPrinter{w: cio.stdout, json: *jsonLines, emphasis: isTerminal(cio.stdout) && cio.getenv("NO_COLOR") == "" && cio.getenv("TERM") != "dumb"}
	if *dbURL != "" {
		return tailDatabase(ctx, *dbURL, channel, *since, p, cio.stderr)
	}
	return tailServer(ctx, *serverURL, channel, json.RawMessage(*filter), *since, p, cio)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// tailServer prints the channel's events as a subscriber of the server
// sees them, through the Go client: grants, --match and the filter apply,
// and a lost connection resumes from the last event printed.
func tailServer(ctx context.Context, serverURL, channel string, filter json.RawMessage, since string, p *eventPrinter, cio cmdIO) error {
	email := cio.getenv("PGPUSH_EMAIL")
	password := cio.getenv("PGPUSH_PASSWORD")
	if email != "" && password == "" {
		return errors.New("tail: PGPUSH_EMAIL is set but PGPUSH_PASSWORD is not")
	}
	status := func(format string, args ...any) {
		fmt.Fprintf(cio.stderr, "pgpush tail: "+format+"\n", args...)
	}
	// A failed write to stdout (a closed pipe) ends the command.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	printEvent := func(ev client.Event) {
		if err := p.print(ev); err != nil {
			cancel(&writeError{err})
		}
	}
	c, err := client.New(serverURL, client.Options{
		Email:    email,
		Password: password,
		OnState: func(sc client.StateChange) {
			switch {
			case sc.State == client.StateDisconnected && sc.Attempt == 1:
				status("connection lost (%v); reconnecting in %v", sc.Err, sc.Delay.Round(time.Millisecond))
			case sc.State == client.StateDisconnected && sc.Attempt > 1:
				status("reconnect attempt %d failed (%v); next in %v", sc.Attempt-1, sc.Err, sc.Delay.Round(time.Millisecond))
			case sc.State == client.StateConnected && sc.Attempt > 0:
				status("reconnected")
			}
		},
		OnError: func(err error) { status("%v", err) },
	})
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	if err := c.Connect(ctx); err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tailCloseWait)
		defer cancel()
		_ = c.Close(closeCtx)
	}()
	var subscribedOnce bool
	sub, err := c.Subscribe(ctx, channel, client.SubscribeOptions{
		Filter:  filter,
		Since:   since,
		OnEvent: printEvent,
		OnResync: func() {
			status("resync required: the events after the last one seen are no longer kept (EVENT_RETENTION); going on with live events")
		},
		OnSubscribed: func(s client.Subscribed) {
			if subscribedOnce && s.Resumed {
				status("resumed %s after event %s", channel, s.Since)
			}
			subscribedOnce = true
		},
	})
	if err != nil {
		return tailExit(ctx, err)
	}
	who := "anonymously"
	if u := c.User(); u != nil {
		who = "as " + u.Email
	}
	status("subscribed to %s on %s %s (Ctrl-C to stop)", channel, serverURL, who)
	select {
	case <-ctx.Done():
		return tailExit(ctx, nil)
	case <-sub.Done():
		if errors.Is(sub.Err(), client.ErrClosed) && c.Err() != nil {
			return fmt.Errorf("tail: %w", c.Err())
		}
		return fmt.Errorf("tail: subscription to %s ended: %w", channel, sub.Err())
	}
}

// tailExit is the command's result once ctx may have ended: nil for
// Ctrl-C, the write error when stdout failed, else err.
func tailExit(ctx context.Context, err error) error {
	var werr *writeError
	if errors.As(context.Cause(ctx), &werr) {
		return fmt.Errorf("tail: %w", werr.err)
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("tail: %w", err)
}

// tailDatabase reads the event log directly, in delivery order, as a
// server's listener that is not the sequencer does: it follows the
// sequencer (LISTEN on its announcements), then reads everything numbered
// after the cursor, on each announcement and every few seconds. It only
// reads, and numbers nothing: events appear once a running server's
// sequencer has numbered them, so it needs one running. Unlike a
// subscriber it sees every event of the channel: no grant, --match or
// filter applies, and the per-subscriber "left" events are not there.
func tailDatabase(ctx context.Context, dbURL, channel, since string, p *eventPrinter, stderr io.Writer) error {
	cfg, err := db.ParseConfig(dbURL, db.ApplicationName)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	// The first connection fails fast: a wrong URL is an error, not a retry.
	conn, err := tailConnect(ctx, cfg)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	var cursor [2]int64 // (commit seq, event id) of the last event read
	if since != "" {
		id, _ := strconv.ParseInt(since, 10, 64) // checked by runTail
		seq, err := db.PositionOf(ctx, conn, id)
		if errors.Is(err, db.ErrEventExpired) {
			conn.Close(context.WithoutCancel(ctx))
			return fmt.Errorf("tail: event %s is not in the event log (older than the retention, or never existed)", since)
		}
		if err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return fmt.Errorf("tail: %w", err)
		}
		cursor = [2]int64{seq, id}
	} else {
		seq, id, err := db.LastPosition(ctx, conn)
		if err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return fmt.Errorf("tail: %w", err)
		}
		cursor = [2]int64{seq, id}
	}
	fmt.Fprintf(stderr, "pgpush tail: reading %s from the database's event log (admin mode: every event, no grants) (Ctrl-C to stop)\n", channel)

	attempt := 0
	for {
		if conn != nil {
			err = tailLog(ctx, conn, channel, &cursor, p)
			conn.Close(context.WithoutCancel(ctx))
			conn = nil
			if ctx.Err() != nil {
				return nil
			}
			var werr *writeError
			if errors.As(err, &werr) {
				return fmt.Errorf("tail: %w", werr.err)
			}
			fmt.Fprintf(stderr, "pgpush tail: database connection lost (%v); reconnecting\n", err)
			attempt = 0
		}
		attempt++
		if !sleepCtx(ctx, min(time.Duration(100<<min(attempt, 16))*time.Millisecond, tailMaxBackoff)) {
			return nil
		}
		if conn, err = tailConnect(ctx, cfg); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(stderr, "pgpush tail: reconnect (attempt %d): %v\n", attempt, err)
		}
	}
}

func tailConnect(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(connectCtx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{db.SequencedChannel}.Sanitize()); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("listen: %w", err)
	}
	// The sequencer announces new numbers only while someone follows.
	if err := db.SequencerFollow(ctx, conn, true); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// tailLog prints what is after cursor, then waits for the doorbell (or the
// idle check) and does it again, until ctx ends or the connection fails.
// LISTEN was issued before the first read, so no commit falls in between.
func tailLog(ctx context.Context, conn *pgx.Conn, channel string, cursor *[2]int64, p *eventPrinter) error {
	for {
		for {
			rows, err := db.ChannelEventsBetween(ctx, conn, []string{channel}, cursor[0], cursor[1], math.MaxInt64, math.MaxInt64, tailBatch, 0)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if err := p.print(eventFromRow(r)); err != nil {
					return &writeError{err}
				}
				*cursor = [2]int64{r.Seq, r.ID}
			}
			if len(rows) < tailBatch {
				break
			}
		}
		waitCtx, cancel := context.WithTimeout(ctx, tailIdleCheck)
		_, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Idle: read the log anyway; it also checks the connection.
		default:
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// writeError is a failed write to stdout: no point going on.
type writeError struct{ err error }

func (e *writeError) Error() string { return "write: " + e.err.Error() }

// eventFromRow makes the §3 event the server would send for a log row.
func eventFromRow(r db.EventRow) client.Event {
	data := r.Data
	var compact bytes.Buffer
	if json.Compact(&compact, r.Data) == nil { // jsonb's text form has spaces
		data = compact.Bytes()
	}
	return client.Event{
		ID:        strconv.FormatInt(r.ID, 10),
		Channel:   r.Channel,
		Event:     r.Event,
		Data:      data,
		Timestamp: r.CreatedAt,
	}
}

// eventPrinter writes one line per event: JSON lines, or
// "15:04:05.000  order:updated  1842  {data}" with the changed fields in
// bold when emphasis is on (stdout is a terminal).
type eventPrinter struct {
	w        io.Writer
	json     bool
	emphasis bool

	mu  sync.Mutex
	err error
}

// print writes ev; after a failed write it only reports the error.
func (p *eventPrinter) print(ev client.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	var line []byte
	if p.json {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		line = append(b, '\n')
	} else {
		line = []byte(formatEventLine(ev, p.emphasis))
	}
	_, p.err = p.w.Write(line)
	return p.err
}

// formatEventLine is the human form of an event: local time of day, name,
// id and the data compacted, keys in the order the server sent them.
func formatEventLine(ev client.Event, emphasis bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  %s  ", ev.Timestamp.Local().Format("15:04:05.000"), ev.Event, ev.ID)
	var changed map[string]json.RawMessage
	if emphasis {
		changed = ev.ChangedFields()
	}
	if !writeObject(&b, ev.Data, changed) {
		var compact bytes.Buffer
		if json.Compact(&compact, ev.Data) == nil {
			b.Write(compact.Bytes())
		} else {
			b.Write(ev.Data)
		}
	}
	b.WriteByte('\n')
	return b.String()
}

// writeObject writes the JSON object data compactly, in its own key order,
// with the members named in bold set in bold. It reports false when data
// is not a JSON object, having written nothing.
func writeObject(b *strings.Builder, data json.RawMessage, bold map[string]json.RawMessage) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	var out strings.Builder
	out.WriteByte('{')
	for i := 0; dec.More(); i++ {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok {
			return false
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return false
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, value); err != nil {
			return false
		}
		if i > 0 {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		_, emphasise := bold[key]
		if emphasise && key != "changed_fields" {
			out.WriteString(ansiBold)
		}
		out.Write(k)
		out.WriteByte(':')
		out.Write(compact.Bytes())
		if emphasise && key != "changed_fields" {
			out.WriteString(ansiReset)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return false
	}
	out.WriteByte('}')
	b.WriteString(out.String())
	return true
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// sleepCtx waits for d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
