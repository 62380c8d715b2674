package realtime

import "sync"

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
	writeBatch func(batch [][]byte)
	writeClose func()

	mu      sync.Mutex
	running bool // a writer goroutine runs, or the close is done
	done    chan struct{}
}

func newPump(queue *sendQueue, closing <-chan struct{}, writeBatch func([][]byte), writeClose func()) *pump {
	return &pump{queue: queue, closing: closing, writeBatch: writeBatch, writeClose: writeClose, done: make(chan struct{})}
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
	go p.run()
}

func (p *pump) run() {
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
			p.mu.Lock()
			if p.queue.len() == 0 && !isClosed(p.closing) {
				p.running = false
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			continue
		}
		p.writeBatch(batch)
		clear(batch)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
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

func (q *pumped) ping() {
	q.queue.pushControl(q.keepAlive)
	q.pump.kick()
}
