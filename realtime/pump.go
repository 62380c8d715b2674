package realtime

import (
	"sync"
	"sync/atomic"
)

// pump is a socket's writer: a goroutine that runs only while the
// socket's queue holds frames, so an idle socket costs none. Whoever
// pushes onto the queue calls kick afterwards, and so does closeWith. The
// writer that sees the client closing runs writeClose and ends for good,
// closing done: no frame is written after that, and no writer starts
// again. The writer re-checks the queue and the close under mu before it
// stops, and kick takes mu after the push it follows, so no push is left
// unwritten.
type pump struct {
	queue      *sendQueue
	closing    <-chan struct{} // the client's closingCh
	closed     *atomic.Bool    // and its flag
	writeBatch func(batch [][]byte)
	writeClose func()
	// writeNow, when the transport has it, writes without blocking and
	// returns how much the kernel took (see flushInline).
	writeNow func(b []byte) int

	mu      sync.Mutex
	running bool // a writer goroutine runs, or the close is done
	done    chan struct{}
}

func newPump(c *Client, queue *sendQueue, writeBatch func([][]byte), writeClose func()) *pump {
	return &pump{queue: queue, closing: c.closingCh, closed: &c.closed, writeBatch: writeBatch, writeClose: writeClose, done: make(chan struct{})}
}

// kick starts the writer unless one is running.
func (p *pump) kick() {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return
	}
	p.running = true
	p.mu.Unlock()
	go p.run(nil)
}

// flushInline is kick for the fan-out: it writes what is queued on the
// calling goroutine, without blocking, and starts a writer goroutine only
// for what the socket does not take at once (its kernel buffer is full) or
// when it cannot write inline. A delivery to a socket that keeps up then
// costs one write and no goroutine, no wake-up and no deadline. frames and
// buf are the caller's scratch space, returned for the next socket; wrote
// says whether it wrote.
func (p *pump) flushInline(frames [][]byte, buf []byte) (_ [][]byte, _ []byte, wrote bool) {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return frames, buf, false
	}
	p.running = true
	p.mu.Unlock()
	if p.writeNow == nil || p.closed.Load() {
		go p.run(nil)
		return frames, buf, false
	}
	frames = p.queue.drain(frames[:0])
	data := buf[:0]
	if len(frames) == 1 {
		data = frames[0]
	} else {
		for _, f := range frames {
			data = append(data, f...)
		}
		buf = data
	}
	if len(data) > 0 {
		wrote = true
		if n := p.writeNow(data); n < len(data) {
			go p.run(unwritten(frames, n))
			clear(frames)
			return frames, buf, wrote
		}
	}
	clear(frames)
	if !p.stopIfIdle() {
		go p.run(nil)
	}
	return frames, buf, wrote
}

// stopIfIdle ends the writer's turn unless frames or a close came after
// its last drain; under mu, so a kick that follows a push either sees the
// writer running or starts one. It reports whether the turn ended.
func (p *pump) stopIfIdle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queue.len() == 0 && !p.closed.Load() {
		p.running = false
		return true
	}
	return false
}

// unwritten is what is left of frames once their first n bytes are
// written, in a slice of its own.
func unwritten(frames [][]byte, n int) [][]byte {
	for i, f := range frames {
		if n < len(f) {
			rest := append([][]byte{f[n:]}, frames[i+1:]...)
			return rest
		}
		n -= len(f)
	}
	return nil
}

// run is the writer goroutine. pending is the rest of a batch begun
// inline: it goes first, whatever else happens, since the stream may end
// inside one of its frames.
func (p *pump) run(pending [][]byte) {
	if len(pending) > 0 {
		p.writeBatch(pending)
	}
	var batch [][]byte
	for {
		select {
		case <-p.closing:
			// A close requested meanwhile wins over queued frames: a slow
			// client must not get its backlog first.
			p.writeClose()
			close(p.done)
			return // running stays true: no writer after the close
		default:
		}
		batch = p.queue.drain(batch[:0])
		if len(batch) == 0 {
			if p.stopIfIdle() {
				return
			}
			continue
		}
		p.writeBatch(batch)
		clear(batch)
	}
}

// pumped is the queue side of a transport whose frames its pump writes
// (/ws, SSE): pushes, replay pacing, the keep-alive and the close all end
// in a kick.
type pumped struct {
	queue     *sendQueue
	pump      *pump
	keepAlive []byte // the transport's heartbeat frame
}

func (q *pumped) push(frame []byte) bool { return q.queue.push(frame) }

func (q *pumped) pushBelow(frame []byte) bool {
	if !q.queue.pushBelow(frame) {
		return false
	}
	q.pump.kick()
	return true
}

func (q *pumped) drained() <-chan struct{} { return q.queue.room }

func (q *pumped) flush() { q.pump.kick() }

func (q *pumped) closing() { q.pump.kick() }

func (q *pumped) queuePing() { q.queue.pushControl(q.keepAlive) }
