package realtime

import (
	"sync"
)

// sendQueue is a /ws socket's bounded outbox of framed bytes. Any
// goroutine may push; only the writer drains. push never blocks, so a slow
// socket can never hold up the fan-out: when the queue is over its cap,
// push fails and the caller closes the socket with 1013.
type sendQueue struct {
	maxBytes    int
	maxMessages int

	mu    sync.Mutex
	msgs  [][]byte
	bytes int

	room chan struct{} // one token: the writer just drained a queue pushBelow may have refused
}

// minQueuedFrames frames are always accepted, whatever their size: one
// large row produces two frames for a socket that also gets the broadcast
// feed, and a row of any size must arrive whole. The bound on a slow
// socket's memory is then this many frames of the largest row, plus the cap.
const minQueuedFrames = 4

func newSendQueue(maxBytes, maxMessages int) *sendQueue {
	return &sendQueue{maxBytes: maxBytes, maxMessages: maxMessages, room: make(chan struct{}, 1)}
}

// push appends msg unless the queue is over its cap; it reports success.
func (q *sendQueue) push(msg []byte) bool { return q.pushWithin(msg, q.maxBytes, q.maxMessages) }

// pushBelow appends msg only while the queue is under half its cap.
func (q *sendQueue) pushBelow(msg []byte) bool {
	return q.pushWithin(msg, q.maxBytes/2, q.maxMessages/2)
}

func (q *sendQueue) pushWithin(msg []byte, maxBytes, maxMessages int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) >= minQueuedFrames && (q.bytes+len(msg) > maxBytes || len(q.msgs)+1 > maxMessages) {
		return false
	}
	q.msgs = append(q.msgs, msg)
	q.bytes += len(msg)
	return true
}

// pushControl appends a tiny control frame (a ping) whatever the cap: a
// full queue is the write deadline's business, not the heartbeat's.
func (q *sendQueue) pushControl(msg []byte) {
	q.mu.Lock()
	q.msgs = append(q.msgs, msg)
	q.mu.Unlock()
}

// len reports how many frames wait.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

// drain takes everything queued. Only the writer calls it. An emptied
// backing array is dropped rather than kept, so an idle socket holds no
// buffer.
func (q *sendQueue) drain(into [][]byte) [][]byte {
	q.mu.Lock()
	// pushBelow fails only with minQueuedFrames queued: a drain of fewer
	// has nobody to tell, which spares the fan-out a channel send per
	// socket.
	waited := len(q.msgs) >= minQueuedFrames
	into = append(into, q.msgs...)
	q.msgs = nil
	q.bytes = 0
	q.mu.Unlock()
	if waited {
		signal(q.room)
	}
	return into
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
