package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
)

var errClientClosing = errors.New("client is closing")

// Client is one WebSocket. Only its write pump calls conn's write methods
// (besides WriteControl, which gorilla allows concurrently); only its read
// pump reads. Everything else talks to it through send and closeWith.
type Client struct {
	id        uint64
	hub       *Hub
	conn      *websocket.Conn
	principal *Principal
	queue     *sendQueue
	log       *slog.Logger

	closeOnce   sync.Once
	closing     chan struct{}
	closeCode   int
	closeReason string

	mu   sync.Mutex // guards subs
	subs map[string]*subscription
}

// ServeConn runs a socket until it closes: it registers the client, sends
// the connected frame, runs the write pump in a goroutine and the read pump
// here, and cleans up before returning.
func (h *Hub) ServeConn(ctx context.Context, conn *websocket.Conn, p *Principal) {
	c := &Client{
		id:        h.nextID.Add(1),
		hub:       h,
		conn:      conn,
		principal: p,
		queue:     newSendQueue(h.opts.QueueBytes, h.opts.QueueMessages),
		closing:   make(chan struct{}),
		subs:      make(map[string]*subscription),
	}
	c.log = h.log.With("conn_id", c.id, "user_id", p.UserID)
	if !h.register(c) {
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(CloseGoingAway, "server shutting down"), time.Now().Add(h.opts.WriteWait))
		_ = conn.Close()
		return
	}
	defer h.unregister(c)
	h.stats.SocketsOpened.Add(1)
	c.log.Info("socket opened", "role", p.Role, "anonymous", p.Anonymous())

	c.send(connectedFrame(p))
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writePump()
	}()
	c.readPump(ctx)
	c.closeWith(CloseNormal, "")
	<-writerDone
	c.dropSubscriptions()
	c.log.Info("socket closed", "code", c.closeCode, "reason", c.closeReason)
}

// send queues a frame without blocking. A full queue means the peer is too
// slow: it is closed with 1013 and the caller moves on.
func (c *Client) send(frame []byte) bool {
	select {
	case <-c.closing:
		return false
	default:
	}
	if !c.queue.push(frame) {
		c.hub.stats.DroppedSlow.Add(1)
		if c.closeWith(CloseTryAgainLater, "client too slow") {
			c.hub.stats.SlowDisconnects.Add(1)
		}
		return false
	}
	return true
}

// closeWith asks the write pump to send a close frame and end the socket.
// The first reason wins; it reports whether this call was the first.
func (c *Client) closeWith(code int, reason string) bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closeCode = code
		c.closeReason = reason
		close(c.closing)
	})
	return first
}

func (c *Client) writePump() {
	ticker := time.NewTicker(c.hub.opts.pingPeriod())
	defer ticker.Stop()
	defer c.conn.Close()
	var batch [][]byte
	for {
		select {
		case <-c.queue.ready:
			batch = c.queue.drain(batch[:0])
			for _, frame := range batch {
				// A close requested meanwhile wins over queued frames: a
				// slow client must not get its backlog first.
				select {
				case <-c.closing:
					c.writeClose()
					return
				default:
				}
				_ = c.conn.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteWait))
				if err := c.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
					c.closeWith(CloseGoingAway, "write failed")
					return
				}
			}
			clear(batch)
		case <-ticker.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.hub.opts.WriteWait)); err != nil {
				c.closeWith(CloseGoingAway, "ping failed")
				return
			}
		case <-c.closing:
			c.writeClose()
			return
		}
	}
}

func (c *Client) writeClose() {
	_ = c.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(c.closeCode, c.closeReason), time.Now().Add(c.hub.opts.WriteWait))
}

func (c *Client) readPump(ctx context.Context) {
	c.conn.SetReadLimit(c.hub.opts.MaxFrameBytes)
	extend := func() { _ = c.conn.SetReadDeadline(time.Now().Add(c.hub.opts.PongWait)) }
	extend()
	c.conn.SetPongHandler(func(string) error { extend(); return nil })
	flood := rate.NewLimiter(rate.Limit(c.hub.opts.MessageRate), c.hub.opts.MessageBurst)
	for {
		kind, frame, err := c.conn.ReadMessage()
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				c.closeWith(CloseMessageTooBig, "frame too large")
			default:
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					c.closeWith(ce.Code, "closed by client")
				} else {
					c.closeWith(CloseGoingAway, "read failed")
				}
			}
			return
		}
		extend()
		if !flood.Allow() {
			c.closeWith(ClosePolicyViolation, "too many messages")
			return
		}
		if kind != websocket.TextMessage {
			c.send(errorFrame("malformed message: want a text frame with a JSON object"))
			continue
		}
		c.handle(ctx, frame)
		select {
		case <-c.closing:
			return
		default:
		}
	}
}

// handle acts on one client frame. Bad input is answered with an error
// frame; the socket stays open.
func (c *Client) handle(ctx context.Context, frame []byte) {
	msg, err := parseClientMessage(frame)
	if err != nil {
		c.send(errorFrame(err.Error()))
		return
	}
	switch msg.Type {
	case "ping":
		c.send(pongFrame)
	case "subscribe":
		c.subscribe(ctx, msg)
	case "unsubscribe":
		c.unsubscribe(msg)
	case "publish":
		c.publish(ctx, msg)
	default:
		c.send(errorFrame(fmt.Sprintf("unknown message type %q", truncate(msg.Type, 64))))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (c *Client) subscribe(ctx context.Context, msg clientMessage) {
	if msg.Channel == "" {
		c.send(errorFrame(`missing field "channel"`))
		return
	}
	since, resume, err := parseSince(msg.Since)
	if err != nil {
		c.send(channelErrorFrame(msg.Channel, err.Error()))
		return
	}
	c.mu.Lock()
	_, already := c.subs[msg.Channel]
	count := len(c.subs)
	c.mu.Unlock()
	if already {
		c.send(channelFrame("subscribed", msg.Channel))
		return
	}
	if count >= c.hub.opts.MaxSubscriptions {
		c.send(channelErrorFrame(msg.Channel, "too many subscriptions on this socket"))
		return
	}
	access, err := c.hub.auth.Access(ctx, c.principal, msg.Channel)
	if err != nil {
		c.send(channelErrorFrame(msg.Channel, accessMessage(err, msg.Channel)))
		return
	}

	s := &subscription{client: c, channel: msg.Channel, filter: msg.Filter, access: access, pending: true}
	c.mu.Lock()
	c.subs[msg.Channel] = s
	c.mu.Unlock()
	upTo := c.hub.addSubscription(s)
	c.send(channelFrame("subscribed", msg.Channel))
	if resume {
		c.replay(ctx, s, since, upTo)
	}
	s.activate()
}

// replay sends the channel's events after the client's last one up to the
// hub's position at subscription time; later ones were buffered live.
func (c *Client) replay(ctx context.Context, s *subscription, since int64, upTo Position) {
	ctx, cancel := context.WithTimeout(ctx, c.hub.opts.ReplayTimeout)
	defer cancel()
	from, err := c.hub.store.PositionOf(ctx, since)
	if errors.Is(err, ErrResyncRequired) {
		c.send(channelFrame("resync_required", s.channel))
		return
	}
	if err != nil {
		c.log.Error("resume subscription", "channel", s.channel, "err", err)
		c.send(channelFrame("resync_required", s.channel))
		return
	}
	access := s.currentAccess()
	err = c.hub.store.Replay(ctx, s.channel, from, upTo, func(ev *Event) error {
		if !s.visible(ev, access) {
			return nil
		}
		if err := c.queue.pushPaced(ctx, c.closing, ev.Encoded()); err != nil {
			return err
		}
		c.hub.stats.Delivered.Add(1)
		return nil
	})
	if err != nil && !errors.Is(err, errClientClosing) {
		c.log.Error("replay", "channel", s.channel, "err", err)
		// A partial replay would leave a silent gap: make the client resync.
		c.send(channelFrame("resync_required", s.channel))
	}
}

func accessMessage(err error, channel string) string {
	switch {
	case errors.Is(err, ErrUnknownChannel):
		return fmt.Sprintf("unknown channel %q", channel)
	case errors.Is(err, ErrForbidden):
		return fmt.Sprintf("not allowed on channel %q", channel)
	default:
		return "cannot check access right now, try again"
	}
}

func (c *Client) unsubscribe(msg clientMessage) {
	if msg.Channel == "" {
		c.send(errorFrame(`missing field "channel"`))
		return
	}
	c.mu.Lock()
	s, ok := c.subs[msg.Channel]
	delete(c.subs, msg.Channel)
	c.mu.Unlock()
	if ok {
		c.hub.removeSubscription(s)
		s.end()
	}
	c.send(channelFrame("unsubscribed", msg.Channel))
}

// endSubscription ends s from outside the read pump (a revoked grant).
func (c *Client) endSubscription(s *subscription, reason string) {
	c.mu.Lock()
	if c.subs[s.channel] != s {
		c.mu.Unlock()
		return
	}
	delete(c.subs, s.channel)
	c.mu.Unlock()
	c.hub.removeSubscription(s)
	s.end()
	c.send(channelErrorFrame(s.channel, reason))
	c.send(channelFrame("unsubscribed", s.channel))
}

func (c *Client) dropSubscriptions() {
	c.mu.Lock()
	subs := c.subs
	c.subs = map[string]*subscription{}
	c.mu.Unlock()
	for _, s := range subs {
		c.hub.removeSubscription(s)
		s.end()
	}
}

func (c *Client) publish(ctx context.Context, msg clientMessage) {
	if msg.Channel == "" || msg.Event == "" {
		c.send(errorFrame(`publish needs "channel" and "event"`))
		return
	}
	data := msg.Data
	if len(data) == 0 || string(data) == "null" {
		data = json.RawMessage("{}")
	}
	access, err := c.hub.auth.Access(ctx, c.principal, msg.Channel)
	if err == nil && !access.Publish {
		err = ErrForbidden
	}
	if err != nil {
		c.send(channelErrorFrame(msg.Channel, accessMessage(err, msg.Channel)))
		return
	}
	id, err := c.hub.store.Publish(ctx, msg.Channel, msg.Event, data)
	if err != nil {
		c.log.Error("publish", "channel", msg.Channel, "err", err)
		c.send(channelErrorFrame(msg.Channel, "publish failed"))
		return
	}
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Channel string `json:"channel"`
		ID      string `json:"id"`
	}{"published", msg.Channel, fmt.Sprint(id)})
	c.send(b)
}
