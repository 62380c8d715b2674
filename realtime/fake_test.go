package realtime

import (
	"context"
	"sync"
)

// fakeTransport is a transport with no connection: frames pile up until
// the test takes them, and a cap makes a socket "slow" on demand. The hub
// cannot tell it from a socket.
type fakeTransport struct {
	mu       sync.Mutex
	frames   [][]byte
	capacity int // 0: unlimited
	closed   chan struct{}
	room     chan struct{}
	pushed   chan struct{} // rung on every accepted push
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{closed: make(chan struct{}), room: make(chan struct{}, 1), pushed: make(chan struct{}, 1)}
}

func (f *fakeTransport) push(frame []byte) bool { return f.pushWithin(frame, f.capacity) }

func (f *fakeTransport) pushBelow(frame []byte) bool { return f.pushWithin(frame, f.capacity/2) }

func (f *fakeTransport) pushWithin(frame []byte, limit int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.capacity > 0 && len(f.frames) >= limit {
		return false
	}
	f.frames = append(f.frames, frame)
	signal(f.pushed)
	return true
}

func (f *fakeTransport) drained() <-chan struct{} { return f.room }
func (f *fakeTransport) flush()                   {}
func (f *fakeTransport) queuePing()               {}

func (f *fakeTransport) closing() { close(f.closed) }

func (f *fakeTransport) readLoop(context.Context, *Client) {}
func (f *fakeTransport) finish()                           {}

// take removes and returns the queued frames.
func (f *fakeTransport) take() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.frames
	f.frames = nil
	if len(out) > 0 {
		signal(f.room)
	}
	return out
}
