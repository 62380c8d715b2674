package socketio

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	transportPolling   = "polling"
	transportWebsocket = "websocket"
)

// closeWriteWait bounds the last WebSocket writes of a closing session.
const closeWriteWait = time.Second

// maxNamespaceBytes bounds the namespace echoed in a CONNECT_ERROR.
const maxNamespaceBytes = 256

// errClientClosed stops the handling of a payload after the client's close
// or DISCONNECT packet; it is not a protocol error.
var errClientClosed = errors.New("client closed the session")

type upgradeState int

const (
	upgradeNone    upgradeState = iota
	upgradeProbing              // a WebSocket answered "3probe": polling GETs get noops
	upgradeDone                 // the session uses the WebSocket
)

// session is one Engine.IO session and, once the client sent CONNECT, its
// Socket. Its run goroutine owns the heartbeat and the teardown. Only the
// transport of the moment takes packets from queue: a polling GET (one at a
// time) or the WebSocket write pump, which alone writes to the conn after
// the upgrade.
type session struct {
	srv   *Server
	id    string
	req   *http.Request
	log   *slog.Logger
	queue *sendQueue

	pong      chan struct{} // doorbell: the client answered a ping
	connected chan struct{} // doorbell: the client sent CONNECT
	closing   chan struct{} // closed, under mu, when the session starts closing
	dead      chan struct{} // closed by run when the transports must stop
	left      chan struct{} // closed when the client sent close or DISCONNECT
	closeOnce sync.Once
	leftOnce  sync.Once

	// inMu serializes the handling of incoming packets (POST bodies and
	// WebSocket frames) so that events keep their order.
	inMu sync.Mutex

	mu        sync.Mutex // guards the fields below
	transport string
	upgrade   upgradeState
	probing   chan struct{} // closed when the current probe got "3probe"
	probeConn bool          // a WebSocket is probing (one at a time)
	getting   bool          // a polling GET is waiting
	posting   bool          // a polling POST is being read
	socket    *Socket
	polite    bool // see close
}

// close starts closing the session. polite means the client is assumed
// to listen: a connected one gets a Socket.IO DISCONNECT, and a polling one
// may fetch it and the close packet before the session dies. Otherwise
// (protocol error, timeout, client gone) the transport just closes. Later
// calls do nothing.
func (s *session) close(reason string, polite bool) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.polite = polite
		if polite && s.socket != nil {
			s.queue.pushControl(encodeMessage(packetDisconnect, -1, nil))
		}
		close(s.closing)
		s.mu.Unlock()
		s.log.Debug("session closing", "reason", reason)
	})
}

// run is the session's heartbeat: a ping every pingInterval, and close
// when the pong is not back within pingTimeout or no CONNECT came within
// connectTimeout. Then it tears the session down.
func (s *session) run() {
	interval, timeout := s.srv.pingInterval(), s.srv.pingTimeout()
	heartbeat := time.NewTimer(interval)
	defer heartbeat.Stop()
	connectTimer := time.NewTimer(connectTimeout)
	defer connectTimer.Stop()
	awaitingPong := false
	for open := true; open; {
		select {
		case <-heartbeat.C:
			if awaitingPong {
				s.close("ping timeout", false)
				continue
			}
			s.queue.pushControl([]byte{enginePing})
			awaitingPong = true
			heartbeat.Reset(timeout)
		case <-s.pong:
			if awaitingPong {
				awaitingPong = false
				heartbeat.Reset(interval)
			}
		case <-s.connected:
			connectTimer.Stop()
		case <-connectTimer.C:
			s.close("no connect packet", true)
		case <-s.closing:
			open = false
		}
	}
	s.teardown()
}

// teardown ends the socket's event stream, lets a polling client fetch
// the last packets, then stops the transports and forgets the session.
func (s *session) teardown() {
	s.mu.Lock()
	sock := s.socket
	flush := s.polite && s.transport == transportPolling
	s.mu.Unlock()
	if sock != nil {
		sock.closeEvents()
	}
	if flush {
		// DISCONNECT first, the close packet in a later response: the
		// client handles a DISCONNECT a tick after its payload, so a close
		// packet in the same payload would win, and the client would
		// report "transport close" instead of "io server disconnect".
		timer := time.NewTimer(closeFlushWait)
		defer timer.Stop()
		if s.awaitFlush(timer.C) {
			s.queue.pushControl([]byte{engineClose})
			s.awaitFlush(timer.C)
		}
	}
	close(s.dead)
	s.srv.remove(s)
}

// awaitFlush waits until a polling GET took the queued packets. It
// reports false when it gave up first: the deadline passed, the client
// left, or Shutdown stopped waiting.
func (s *session) awaitFlush(deadline <-chan time.Time) bool {
	force := s.srv.forced()
	for s.queue.len() > 0 {
		select {
		case <-s.queue.emptied:
		case <-s.left:
			return false
		case <-deadline:
			return false
		case <-force:
			return false
		}
	}
	select {
	case <-s.left:
		return false
	default:
		return true
	}
}

// clientLeft records that the client closed the session: nothing queued
// will be fetched any more.
func (s *session) clientLeft() {
	s.leftOnce.Do(func() { close(s.left) })
}

// send queues an encoded message from the application, within
// MaxQueueBytes.
func (s *session) send(p []byte) error {
	_, err := s.sendWithin(p, MaxQueueBytes)
	return err
}

// sendWithin queues p if no more than limit bytes would wait. Past
// MaxQueueBytes the client is too slow for the backlog to matter: it is
// dropped, so that DISCONNECT goes out next, and the session closes.
func (s *session) sendWithin(p []byte, limit int) (bool, error) {
	select {
	case <-s.closing:
		return false, ErrClosed
	default:
	}
	if s.queue.push(p, min(limit, MaxQueueBytes)) {
		return true, nil
	}
	if limit < MaxQueueBytes {
		return false, nil
	}
	s.queue.take()
	s.close("send queue full", true)
	return false, ErrQueueFull
}

// enterPoll claims one of the session's two polling slots (busy is
// s.getting or s.posting). A second request on a busy slot closes the
// session, as the reference server does; a refused request is answered here.
func (s *session) enterPoll(w http.ResponseWriter, busy *bool) (release func(), ok bool) {
	s.mu.Lock()
	switch {
	case s.transport != transportPolling:
		s.mu.Unlock()
		httpError(w, http.StatusBadRequest, "session uses another transport")
		return nil, false
	case *busy:
		s.mu.Unlock()
		httpError(w, http.StatusBadRequest, "overlapping polling request")
		s.close("overlapping polling request", false)
		return nil, false
	}
	*busy = true
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		*busy = false
		s.mu.Unlock()
	}, true
}

// servePoll answers a polling GET with the queued packets, waiting for
// some (a ping comes every pingInterval).
func (s *session) servePoll(w http.ResponseWriter, r *http.Request) {
	release, ok := s.enterPoll(w, &s.getting)
	if !ok {
		return
	}
	defer release()
	s.mu.Lock()
	probing := s.probing
	var noop <-chan time.Time
	if s.upgrade == upgradeProbing {
		// The client is about to pause polling; answer soon so it can.
		probing = nil
		t := time.NewTimer(upgradeNoopDelay)
		defer t.Stop()
		noop = t.C
	}
	s.mu.Unlock()

	// Long polls outlast a short http.Server WriteTimeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.srv.pingInterval() + writeWait))
	for {
		if packets := s.queue.take(); len(packets) > 0 {
			writePayload(w, packets)
			return
		}
		select {
		case <-s.queue.ready:
		case <-probing:
			writePayload(w, [][]byte{{engineNoop}})
			return
		case <-noop:
			writePayload(w, [][]byte{{engineNoop}})
			return
		case <-s.dead:
			writePayload(w, [][]byte{{engineClose}})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// serveData handles a polling POST: the client's packets.
func (s *session) serveData(w http.ResponseWriter, r *http.Request) {
	release, ok := s.enterPoll(w, &s.posting)
	if !ok {
		return
	}
	defer release()

	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/octet-stream") {
		httpError(w, http.StatusBadRequest, errBinary.Error())
		s.close("binary payload", false)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.srv.maxPayload())))
	if err != nil {
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			httpError(w, http.StatusRequestEntityTooLarge, "payload too large")
			s.close("payload too large", false)
			return
		}
		httpError(w, http.StatusBadRequest, "read body")
		return
	}
	s.inMu.Lock()
	for _, raw := range splitPayload(body) {
		if err = s.receive(raw); err != nil {
			break
		}
	}
	s.inMu.Unlock()
	if err != nil && !errors.Is(err, errClientClosed) {
		httpError(w, http.StatusBadRequest, "bad packet")
		s.close("bad packet: "+err.Error(), false)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	_, _ = io.WriteString(w, "ok")
}

// serveUpgrade takes a WebSocket for a polling session: "2probe" →
// "3probe", pending GETs get a noop, and "5" switches the session to it.
func (s *session) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		httpError(w, http.StatusBadRequest, "expected a websocket upgrade")
		return
	}
	s.mu.Lock()
	if s.transport != transportPolling || s.probeConn {
		s.mu.Unlock()
		httpError(w, http.StatusBadRequest, "upgrade not allowed")
		return
	}
	s.probeConn = true
	s.mu.Unlock()

	conn, err := s.srv.upgrader().Upgrade(w, r, nil)
	if err == nil && s.probe(conn) {
		s.serveWebsocket(conn)
		return
	}
	if conn != nil {
		_ = conn.Close()
	}
	// The probe failed: the session goes on polling.
	s.mu.Lock()
	s.probeConn = false
	if s.upgrade == upgradeProbing {
		s.upgrade = upgradeNone
		s.probing = make(chan struct{})
	}
	s.mu.Unlock()
}

// probe runs the upgrade handshake on conn and reports whether the session
// now uses it.
func (s *session) probe(conn *websocket.Conn) bool {
	conn.SetReadLimit(int64(s.srv.maxPayload()))
	_ = conn.SetReadDeadline(time.Now().Add(s.srv.pingTimeout()))
	typ, msg, err := conn.ReadMessage()
	if err != nil || typ != websocket.TextMessage || string(msg) != "2probe" {
		return false
	}
	_ = conn.SetWriteDeadline(time.Now().Add(writeWait))
	if err := conn.WriteMessage(websocket.TextMessage, []byte("3probe")); err != nil {
		return false
	}
	s.mu.Lock()
	s.upgrade = upgradeProbing
	close(s.probing)
	s.mu.Unlock()

	// The client pauses polling (its pending GET got a noop), then sends
	// the upgrade packet.
	_ = conn.SetReadDeadline(time.Now().Add(s.srv.pingTimeout()))
	typ, msg, err = conn.ReadMessage()
	if err != nil || typ != websocket.TextMessage || string(msg) != string(engineUpgrade) {
		return false
	}
	// Even when the session is closing: the client stopped polling for
	// the upgrade, so its last packets (a DISCONNECT) can only reach it
	// here; the write pump sends what is queued, then the close frame.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transport = transportWebsocket
	s.upgrade = upgradeDone
	s.log.Debug("upgraded to websocket")
	return true
}

// serveWebsocket runs the session over conn: the write pump in a goroutine
// the Server owns, the read loop here.
func (s *session) serveWebsocket(conn *websocket.Conn) {
	conn.SetReadLimit(int64(s.srv.maxPayload()))
	pumpDone := make(chan struct{})
	if !s.srv.goOwned(func() {
		defer close(pumpDone)
		s.writePump(conn)
	}) {
		_ = conn.Close()
		s.close(errShuttingDown.Error(), false)
		return
	}
	err := s.readLoop(conn)
	reason := "websocket closed"
	if !errors.Is(err, errClientClosed) {
		var closeErr *websocket.CloseError
		if !errors.As(err, &closeErr) {
			reason = fmt.Sprintf("websocket read: %v", err)
		}
	}
	s.close(reason, false)
	<-pumpDone
}

// readLoop reads frames until the conn fails or a packet is bad. Only it
// reads from conn.
func (s *session) readLoop(conn *websocket.Conn) error {
	for {
		_ = conn.SetReadDeadline(time.Now().Add(s.srv.pingInterval() + s.srv.pingTimeout()))
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		if typ != websocket.TextMessage {
			return errBinary
		}
		s.inMu.Lock()
		err = s.receive(msg)
		s.inMu.Unlock()
		if err != nil {
			return err
		}
	}
}

// writePump writes queued packets, one per frame, until the session dies;
// then it writes what is left (such as DISCONNECT) and a close frame. Only
// it writes to conn once the session uses it.
func (s *session) writePump(conn *websocket.Conn) {
	defer conn.Close()
	for {
		select {
		case <-s.queue.ready:
			for _, p := range s.queue.take() {
				_ = conn.SetWriteDeadline(time.Now().Add(writeWait))
				if err := conn.WriteMessage(websocket.TextMessage, p); err != nil {
					s.close(fmt.Sprintf("websocket write: %v", err), false)
					return
				}
			}
		case <-s.dead:
			_ = conn.SetWriteDeadline(time.Now().Add(closeWriteWait))
			for _, p := range s.queue.take() {
				if err := conn.WriteMessage(websocket.TextMessage, p); err != nil {
					return
				}
			}
			_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			return
		}
	}
}

// receive handles one Engine.IO packet from the client. The caller holds
// inMu.
func (s *session) receive(raw []byte) error {
	p, err := decodeEnginePacket(raw)
	if err != nil {
		return err
	}
	switch p.Type {
	case enginePong:
		ring(s.pong)
	case engineMessage:
		return s.receiveMessage(p.Data)
	case engineClose:
		s.clientLeft()
		s.close("client closed", false)
		return errClientClosed
	case engineNoop:
	default:
		return fmt.Errorf("unexpected engine.io packet type %q", p.Type)
	}
	return nil
}

// receiveMessage handles one Socket.IO packet from the client.
func (s *session) receiveMessage(data []byte) error {
	p, err := decodePacket(data)
	if err != nil {
		return fmt.Errorf("socket.io packet: %w", err)
	}
	if p.Namespace != "/" {
		// Only "/" is served; a CONNECT elsewhere is refused as the
		// reference server does, other packets there are ignored.
		if p.Type == packetConnect {
			if len(p.Namespace) > maxNamespaceBytes || strings.IndexByte(p.Namespace, recordSeparator) >= 0 {
				return errors.New("bad namespace")
			}
			refusal := appendPacket([]byte{engineMessage}, packet{
				Type: packetConnectError, Namespace: p.Namespace, ID: -1,
				Data: []byte(`{"message":"Invalid namespace"}`),
			})
			s.queue.pushControl(refusal)
		}
		return nil
	}
	s.mu.Lock()
	sock := s.socket
	s.mu.Unlock()
	switch p.Type {
	case packetConnect:
		return s.connect(p)
	case packetDisconnect:
		s.clientLeft()
		s.close("client disconnect", false)
		return errClientClosed
	case packetEvent:
		if sock == nil {
			return errors.New("event before connect")
		}
		sock.deliver(sock.newEvent(p))
	case packetAck:
		// The server asks for no acks; a stray one is harmless.
		if sock == nil {
			return errors.New("ack before connect")
		}
	default:
		return fmt.Errorf("unexpected socket.io packet type %q", p.Type)
	}
	return nil
}

// connect accepts the client's CONNECT to "/": it answers with the socket
// id and starts the OnConnect function.
func (s *session) connect(p packet) error {
	s.mu.Lock()
	if s.socket != nil {
		s.mu.Unlock()
		return errors.New("second connect")
	}
	select {
	case <-s.closing:
		s.mu.Unlock()
		return nil
	default:
	}
	if check := s.srv.CheckAuth; check != nil {
		if err := check(p.Data); err != nil {
			s.mu.Unlock()
			msg, _ := json.Marshal(map[string]string{"message": err.Error()})
			s.queue.pushControl(encodeMessage(packetConnectError, -1, msg))
			s.log.Debug("connect refused", "err", err)
			return nil
		}
	}
	sock := &Socket{
		id:     rand.Text(),
		sess:   s,
		auth:   bytes.Clone(p.Data),
		events: make(chan Event, eventBuffer),
	}
	s.socket = sock
	s.mu.Unlock()
	ring(s.connected)

	s.queue.pushControl(encodeMessage(packetConnect, -1, []byte(`{"sid":"`+sock.id+`"}`)))
	onConnect := s.srv.OnConnect
	if onConnect == nil {
		onConnect = func(s *Socket) {
			for range s.Events() {
			}
		}
	}
	if !s.srv.goOwned(func() {
		defer sock.Close("handler returned")
		onConnect(sock)
	}) {
		s.close(errShuttingDown.Error(), true)
		return nil
	}
	s.log.Debug("socket connected", "socket_id", sock.id)
	return nil
}
