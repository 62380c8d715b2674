package realtime

import (
	"sync"
)

// sendQueue is a socket's bounded outbox. Any goroutine may push; only the
// write pump drains. push never blocks, so a slow socket can never hold up
// the fan-out: when the queue is over its cap, push fails and the caller
// closes the socket with 1013.
type sendQueue struct {
	maxBytes    int
	maxMessages int

	mu    sync.Mutex
	msgs  [][]byte
	bytes int

	ready chan struct{} // one token: the write pump has something to send
	room  chan struct{} // one token: the write pump just drained
}

// minQueuedFrames frames are always accepted, whatever their size: one
// large row produces two frames for a socket that also gets the broadcast
// feed, and a row of any size must arrive whole. The bound on a slow
// socket's memory is then this many frames of the largest row, plus the cap.
const minQueuedFrames = 4

func newSendQueue(maxBytes, maxMessages int) *sendQueue {
	return &sendQueue{
		maxBytes:    maxBytes,
		maxMessages: maxMessages,
		ready:       make(chan struct{}, 1),
		room:        make(chan struct{}, 1),
	}
}

// pushBelow appends msg unless that would pass the given caps, and wakes
// the writer; it reports success.
func (q *sendQueue) pushBelow(msg []byte, maxBytes, maxMessages int) bool {
	if !q.pushQuiet(msg, maxBytes, maxMessages) {
		return false
	}
	signal(q.ready)
	return true
}

// pushQuiet appends without waking the writer: the fan-out queues a run of
// events first and wakes each writer once, so that a busy socket gets
// them in one write instead of one write per frame.
func (q *sendQueue) pushQuiet(msg []byte, maxBytes, maxMessages int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) >= minQueuedFrames && (q.bytes+len(msg) > maxBytes || len(q.msgs)+1 > maxMessages) {
		return false
	}
	q.msgs = append(q.msgs, msg)
	q.bytes += len(msg)
	return true
}

// drain takes everything queued. Only the write pump calls it.
func (q *sendQueue) drain(into [][]byte) [][]byte {
	q.mu.Lock()
	into = append(into, q.msgs...)
	clear(q.msgs)
	q.msgs = q.msgs[:0]
	q.bytes = 0
	q.mu.Unlock()
	signal(q.room)
	return into
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
