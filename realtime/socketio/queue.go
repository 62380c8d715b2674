package socketio

import "sync"

// packetOverheadBytes is what one queued packet costs besides its bytes
// (slice header, bookkeeping); counting it bounds a queue of tiny packets.
const packetOverheadBytes = 32

// sendQueue holds encoded Engine.IO packets until the session's transport
// takes them: a polling GET or the WebSocket write pump, one at a time.
// Producers never block. mu guards packets and size; ready and emptied are
// doorbells that carry no state, so a consumer re-checks the queue after
// each ring.
type sendQueue struct {
	mu      sync.Mutex
	packets [][]byte
	size    int // bytes of capped packets, with packetOverheadBytes each

	ready   chan struct{} // rung on every push
	emptied chan struct{} // rung when take empties the queue
	drained chan struct{} // the same, for the application (Socket.Drained)
}

func newSendQueue() *sendQueue {
	return &sendQueue{ready: make(chan struct{}, 1), emptied: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
}

// push appends p unless the capped bytes would exceed limit. p must not be
// modified afterwards: EmitRaw shares one packet among many queues.
func (q *sendQueue) push(p []byte, limit int) bool {
	q.mu.Lock()
	if q.size+len(p)+packetOverheadBytes > limit {
		q.mu.Unlock()
		return false
	}
	q.size += len(p) + packetOverheadBytes
	q.packets = append(q.packets, p)
	q.mu.Unlock()
	ring(q.ready)
	return true
}

// pushControl appends control packets (ping, DISCONNECT, close) at once,
// uncapped: they are few and tiny, and must get through a full queue.
func (q *sendQueue) pushControl(packets ...[]byte) {
	q.mu.Lock()
	q.packets = append(q.packets, packets...)
	q.mu.Unlock()
	ring(q.ready)
}

// take removes and returns every queued packet.
func (q *sendQueue) take() [][]byte {
	q.mu.Lock()
	packets := q.packets
	q.packets = nil
	q.size = 0
	q.mu.Unlock()
	if len(packets) > 0 {
		ring(q.emptied)
		ring(q.drained)
	}
	return packets
}

// len returns the number of queued packets.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.packets)
}

// ring rings a doorbell channel of capacity 1 without blocking.
func ring(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
