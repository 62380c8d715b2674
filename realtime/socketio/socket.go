package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
)

// MaxQueueBytes caps what one socket may have queued and unsent (each
// packet counted with a small overhead). Past it, Emit returns ErrQueueFull
// and the socket is closed: a slow client must not hold the server's memory
// or stall the publisher.
const MaxQueueBytes = 1 << 20

// eventBuffer is how many incoming events wait for the OnConnect function
// before the transport stops reading from the client (backpressure).
const eventBuffer = 16

var (
	// ErrClosed is returned when sending on a socket that has ended.
	ErrClosed = errors.New("socketio: socket closed")
	// ErrQueueFull is returned by Emit when the socket's send queue is over
	// MaxQueueBytes; the socket is closed.
	ErrQueueFull = errors.New("socketio: send queue full")
	// ErrAckSent is returned by a second call to an Event's Ack.
	ErrAckSent = errors.New("socketio: ack already sent")

	errBadRawPacket = errors.New("socketio: not an encoded Socket.IO message")
)

// Socket is one client connected to the default namespace "/". It is safe
// for concurrent use. Only the session's transport writes to the client:
// Emit, EmitRaw and Ack queue packets and return.
type Socket struct {
	id   string
	sess *session
	auth json.RawMessage

	// evMu lets the session close events while a sender may be blocked on
	// it: senders hold the read lock, the closer the write lock.
	evMu     sync.RWMutex
	evClosed bool
	events   chan Event
}

// Event is an EVENT packet from the client.
type Event struct {
	Name string
	Args []json.RawMessage
	// Ack answers the client's acknowledgement callback with args (an ACK
	// packet). It is nil when the client asked for no ack; a second call
	// returns ErrAckSent.
	Ack func(args ...any) error
}

// ID returns the Socket.IO session id: random and URL-safe, distinct from
// the Engine.IO session id.
func (s *Socket) ID() string { return s.id }

// Request returns a copy of the handshake request (headers, cookies,
// RemoteAddr, URL) without its body. Its context is not canceled when the
// handshake request ends.
func (s *Socket) Request() *http.Request { return s.sess.req }

// Auth returns the CONNECT packet's auth payload (a JSON object), or nil.
func (s *Socket) Auth() json.RawMessage { return s.auth }

// Events returns the incoming EVENT packets in order. It is closed when the
// socket ends. The reader must keep up: while its buffer is full the client
// is not read, and a client not read for pingTimeout is disconnected.
func (s *Socket) Events() <-chan Event { return s.events }

// Done is closed when the socket starts closing, for whatever reason.
func (s *Socket) Done() <-chan struct{} { return s.sess.closing }

// Close disconnects the socket from the server side: it queues a
// DISCONNECT packet (the client's 'disconnect' event gets reason "io server
// disconnect") and then closes the transport. reason is logged.
func (s *Socket) Close(reason string) { s.sess.close(reason, true) }

// Emit sends the event with args, each encoded with encoding/json. It
// never blocks for long: it queues the packet and returns ErrClosed after
// close, or ErrQueueFull (closing the socket) when more than MaxQueueBytes
// would be waiting.
func (s *Socket) Emit(event string, args ...any) error {
	p, err := EncodeEvent(event, args...)
	if err != nil {
		return err
	}
	return s.sess.send(p)
}

// EmitRaw sends an already encoded message, such as the result of
// EncodeEvent or `42["order:updated",{…}]`, so that one encoding serves
// many sockets. packet is queued as is and must not be modified afterwards.
// It returns the errors of Emit.
func (s *Socket) EmitRaw(packet []byte) error {
	_, err := s.EmitRawWithin(packet, MaxQueueBytes)
	return err
}

// EmitRawWithin is EmitRaw that queues only while no more than limit bytes
// would be waiting: over limit (and within MaxQueueBytes) it reports false
// and no error, so a producer that can wait (a replay) paces itself on
// Drained instead of overflowing the queue.
func (s *Socket) EmitRawWithin(packet []byte, limit int) (queued bool, err error) {
	if len(packet) < 2 || packet[0] != engineMessage || packet[1] < packetConnect || packet[1] > packetBinaryAck ||
		bytes.IndexByte(packet, recordSeparator) >= 0 {
		return false, errBadRawPacket
	}
	return s.sess.sendWithin(packet, limit)
}

// Drained is rung (a buffered channel of one) whenever the transport takes
// the queued packets.
func (s *Socket) Drained() <-chan struct{} { return s.sess.queue.drained }

// EncodeEvent encodes an EVENT for EmitRaw: `42["event",args…]`.
func EncodeEvent(event string, args ...any) ([]byte, error) {
	if slices.Contains(reservedEvents, event) {
		return nil, fmt.Errorf("socketio: emit %q: reserved event name", event)
	}
	data, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return nil, fmt.Errorf("socketio: encode %q: %w", event, err)
	}
	return encodeMessage(packetEvent, -1, data), nil
}

// EncodeRawEvent is EncodeEvent for one argument already encoded as JSON,
// which is copied as is: the fan-out encodes an event once and shares the
// packet. The caller checks payload is valid JSON and event is not
// reserved.
func EncodeRawEvent(event string, payload []byte) []byte {
	name, _ := json.Marshal(event)
	data := make([]byte, 0, len(name)+len(payload)+3)
	data = append(data, '[')
	data = append(data, name...)
	data = append(data, ',')
	data = append(data, payload...)
	data = append(data, ']')
	return encodeMessage(packetEvent, -1, data)
}

// deliver hands ev to the OnConnect function, blocking until it is taken
// or the socket closes; it reports whether ev was taken.
func (s *Socket) deliver(ev Event) bool {
	s.evMu.RLock()
	defer s.evMu.RUnlock()
	if s.evClosed {
		return false
	}
	select {
	case s.events <- ev:
		return true
	case <-s.sess.closing:
		return false
	}
}

// closeEvents closes events once the session is closing; senders blocked
// in deliver return first because closing is closed.
func (s *Socket) closeEvents() {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	if !s.evClosed {
		s.evClosed = true
		close(s.events)
	}
}

// newEvent builds the Event for an EVENT packet.
func (s *Socket) newEvent(p packet) Event {
	var ev Event
	_ = json.Unmarshal(p.Args[0], &ev.Name) // checked by decodePacket
	ev.Args = p.Args[1:]
	if p.ID >= 0 {
		id := p.ID
		var sent atomic.Bool
		ev.Ack = func(args ...any) error {
			if args == nil {
				args = []any{}
			}
			data, err := json.Marshal(args)
			if err != nil {
				return fmt.Errorf("socketio: encode ack: %w", err)
			}
			if sent.Swap(true) {
				return ErrAckSent
			}
			return s.sess.send(encodeMessage(packetAck, id, data))
		}
	}
	return ev
}
