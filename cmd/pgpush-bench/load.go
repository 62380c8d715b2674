package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
)

// epoch is the one clock writers and receivers share: every timestamp is
// time.Since(epoch), which is monotonic within this process.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// rowsPerWriter is how many rows each writer owns in update mode, so that
// writers never wait on each other's row locks.
const rowsPerWriter = 1000

// writeLoad is what the writers do.
type writeLoad struct {
	URL      string
	Writers  int
	Rate     float64 // rows/s over all writers; 0 is as fast as possible
	Mode     string  // insert or update
	Payload  int     // bytes of the payload column
	Duration time.Duration
	// Customer, when set, gives each inserted row's customer_id from its
	// key (the per-user scenarios); nil keeps one customer per sequence.
	Customer func(key uint64) int64
	// BackendCPU, when set, receives the CPU seconds the writers'
	// PostgreSQL backends used (read from /proc just before they close:
	// a backend lives exactly as long as its writer's connection), so a
	// run can tell the writers' share of PostgreSQL's CPU from the
	// listener's. Only meaningful when PostgreSQL runs on this machine.
	BackendCPU *float64
}

const (
	insertSQL = `INSERT INTO bench_orders (bench_k, status, total, customer_id, payload) VALUES ($1, 'paid', 99.99, $2, $3)`
	updateSQL = `UPDATE bench_orders SET bench_k = $1, payload = $3, updated_at = now() WHERE id = $2`
)

// runWriters writes for the load's duration and returns when every
// writer has stopped. A writer stops between statements, never by
// cancelling one, so every recorded row is known to be committed and every
// committed row is recorded. committed counts rows as they commit.
func runWriters(ctx context.Context, l writeLoad, committed *atomic.Int64) (commitLog, time.Duration, error) {
	conns := make([]*pgx.Conn, l.Writers)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.WithoutCancel(ctx))
			}
		}
	}()
	for i := range conns {
		cfg, err := pgx.ParseConfig(l.URL)
		if err != nil {
			return nil, 0, fmt.Errorf("parse database url: %w", err)
		}
		cfg.RuntimeParams["application_name"] = "pgpush-bench-writer"
		if conns[i], err = pgx.ConnectConfig(ctx, cfg); err != nil {
			return nil, 0, fmt.Errorf("connect writer: %w", err)
		}
	}
	payload := strings.Repeat("x", l.Payload)
	sql := insertSQL
	if l.Mode == "update" {
		sql = updateSQL
	}
	log := make(commitLog, l.Writers)
	errs := make([]error, l.Writers)
	var interval time.Duration
	if l.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(l.Writers) / l.Rate)
	}
	start := time.Now()
	end := start.Add(l.Duration)
	var wg sync.WaitGroup
	for w := range l.Writers {
		wg.Go(func() {
			// Writers are staggered so a paced load arrives evenly.
			next := start.Add(interval * time.Duration(w) / time.Duration(l.Writers))
			for n := 0; ; n++ {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
				}
				if !time.Now().Before(end) || ctx.Err() != nil {
					return
				}
				arg := int64(w*100000 + n%100000) // customer_id on insert
				if l.Customer != nil {
					arg = l.Customer(makeKey(w, n))
				}
				if l.Mode == "update" {
					arg = int64(w*rowsPerWriter + n%rowsPerWriter + 1) // the row's id
				}
				execCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				_, err := conns[w].Exec(execCtx, sql, int64(makeKey(w, n)), arg, payload)
				at := now()
				cancel()
				if err != nil {
					// The row's fate is unknown; stop so the log stays exact.
					errs[w] = fmt.Errorf("writer %d: %w", w, err)
					return
				}
				log[w] = append(log[w], at)
				committed.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if l.BackendCPU != nil {
		*l.BackendCPU = 0
		for _, c := range conns {
			if secs, err := cpuSeconds(int(c.PgConn().PID())); err == nil {
				*l.BackendCPU += secs
			}
		}
	}
	return log, elapsed, errors.Join(errs...)
}

// target is where subscribers connect.
type target struct {
	URL       string      // ws://127.0.0.1:port/ws
	Header    http.Header // the session cookie, if any
	Subscribe []byte      // the subscribe frame; nil when the URL alone subscribes
	Instance  int
}

// subscriber is one socket. Only its reader goroutine touches recs until
// the reader has returned.
type subscriber struct {
	conn     *websocket.Conn
	instance int
	count    atomic.Int64 // keyed frames received
	warm     atomic.Bool  // a warm-up row arrived
	recs     []receipt
	closeErr error       // why the reader stopped; read it only once done
	done     atomic.Bool // the reader has returned
}

var dialer = &websocket.Dialer{
	HandshakeTimeout: 30 * time.Second,
	ReadBufferSize:   2048,
	WriteBufferSize:  512,
}

// dial opens a socket, subscribes and waits for the confirmation. A
// subscribe answered with an error (the server may not have reloaded
// the new trigger yet) is retried until ctx ends.
func dial(ctx context.Context, t target) (*subscriber, error) {
	conn, resp, err := dialer.DialContext(ctx, t.URL, t.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", t.URL, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", t.URL, err)
	}
	s := &subscriber{conn: conn, instance: t.Instance}
	if t.Subscribe == nil {
		return s, nil
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	_ = conn.SetReadDeadline(deadline)
	defer conn.SetReadDeadline(time.Time{})
	if err := conn.WriteMessage(websocket.TextMessage, t.Subscribe); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("wait for subscribed: %w", err)
		}
		var m struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(msg, &m)
		switch m.Type {
		case "subscribed":
			return s, nil
		case "error":
			if !sleepCtx(ctx, 200*time.Millisecond) {
				conn.Close()
				return nil, fmt.Errorf("subscribe refused: %s", m.Message)
			}
			if err := conn.WriteMessage(websocket.TextMessage, t.Subscribe); err != nil {
				conn.Close()
				return nil, fmt.Errorf("subscribe: %w", err)
			}
		}
	}
}

// read records every keyed frame until the socket closes. Frames of
// writers at or beyond nWriters are warm-up rows.
func (s *subscriber) read(nWriters int) {
	defer s.done.Store(true)
	buf := make([]byte, 0, 1024)
	for {
		_, r, err := s.conn.NextReader()
		if err != nil {
			s.closeErr = err
			return
		}
		buf, err = readAll(buf[:0], r)
		at := now()
		if err != nil {
			s.closeErr = err
			return
		}
		k, ok := findKey(buf)
		if !ok {
			continue
		}
		if w, _ := splitKey(k); w >= nWriters {
			s.warm.Store(true)
			continue
		}
		s.recs = append(s.recs, receipt{key: k, at: at})
		s.count.Add(1)
	}
}

// readAll is io.ReadAll into a reused buffer.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// dialAll opens n sockets spread round-robin over targets, a few at a
// time, and starts a reader for each. It gives up at ctx's deadline.
func dialAll(ctx context.Context, targets []target, n, nWriters int, readers *sync.WaitGroup) ([]*subscriber, error) {
	const parallel = 32
	subs := make([]*subscriber, n)
	sem := make(chan struct{}, parallel)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			s, err := dial(ctx, targets[i%len(targets)])
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("socket %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			subs[i] = s
			readers.Go(func() { s.read(nWriters) })
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("open %d sockets: %w", n, ctx.Err())
	}
	if firstErr != nil {
		for _, s := range subs {
			if s != nil {
				s.conn.Close()
			}
		}
		return nil, firstErr
	}
	return subs, nil
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept.
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

// waitFor polls cond every 20ms until it holds or d passes; it reports
// whether cond held.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 20*time.Millisecond) {
			return cond()
		}
	}
}
