package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/pgpush/pgpush/session"
)

// Stream is what a Server-Sent Events client asked for: the channels, an
// optional filter for all of them, and where to resume.
type Stream struct {
	Channels []string
	Filter   json.RawMessage
	// LastEventID is the Last-Event-ID header an EventSource sends when it
	// reconnects: every channel resumes after that event.
	LastEventID string
}

// sseKeepAlive is how often an idle stream gets a comment line, so proxies
// that close idle connections leave it open.
const sseKeepAlive = 15 * time.Second

// ServeSSE streams events to w as Server-Sent Events until the client
// leaves, the server shuts down or the client reads too slowly. It has the
// same principal, grants, filter, resume and slow-reader rule as /ws.
// The stream's work (subscribes, replays) runs with r's values but not its
// cancellation, which only tells that the client left.
func (h *Hub) ServeSSE(w http.ResponseWriter, r *http.Request, p *session.Principal, st Stream) {
	rc := http.NewResponseController(w)
	// The server's ReadTimeout would end the request's context (and so the
	// stream) while the client, as SSE clients do, sends nothing more.
	_ = rc.SetReadDeadline(time.Time{})
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	// Tells nginx not to buffer the stream.
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	t := &sseTransport{
		w:       w,
		rc:      rc,
		request: r.Context(),
		stream:  st,
		pumped:  pumped{queue: newSendQueue(h.opts.QueueBytes, h.opts.QueueMessages), keepAlive: sseKeepAliveLine},
	}
	c := h.newClient(p, t, wireSSE)
	t.c = c
	// Nothing to send at the close: the stream just ends.
	t.pump = newPump(c, t.queue, t.writeBatch, func() {})
	h.serve(context.WithoutCancel(r.Context()), c, greetingFrame(p, "event stream established"), "event stream opened")
}

// sseTransport is one text/event-stream response. The handler's goroutine
// waits in readLoop (an SSE client sends nothing after its request); its
// pump writes, as for /ws.
type sseTransport struct {
	c       *Client
	w       http.ResponseWriter
	rc      *http.ResponseController
	request context.Context // ends when the client goes away
	stream  Stream
	pumped
}

var sseKeepAliveLine = []byte(": keep-alive\n\n")

func (t *sseTransport) writeBatch(batch [][]byte) {
	c := t.c
	_ = t.rc.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteWait))
	for _, b := range batch {
		if _, err := t.w.Write(b); err != nil {
			c.closeWith(CloseGoingAway, "write failed")
			return
		}
	}
	if t.rc.Flush() != nil {
		c.closeWith(CloseGoingAway, "write failed")
	}
}

// readLoop subscribes to the stream's channels, then waits: the client
// says nothing more, it only goes away.
func (t *sseTransport) readLoop(ctx context.Context, c *Client) {
	since := json.RawMessage(nil)
	if t.stream.LastEventID != "" {
		since, _ = json.Marshal(t.stream.LastEventID)
	}
	c.subscribeStream(ctx, t.stream.Channels, since, t.stream.Filter)
	select {
	case <-t.request.Done():
	case <-c.closingCh:
	}
}

// finish waits for the pump to have seen the close: the response must
// not be written after the handler returns.
func (t *sseTransport) finish() { <-t.pump.done }

// sseEvent encodes one SSE event. data is one line of JSON (encoding/json
// never writes a raw newline), so it needs a single data: field.
func sseEvent(id, name string, data []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(data) + len(name) + len(id) + 24)
	if id != "" {
		b.WriteString("id: ")
		b.WriteString(id)
		b.WriteByte('\n')
	}
	b.WriteString("event: ")
	b.WriteString(name)
	b.WriteString("\ndata: ")
	b.Write(bytes.ReplaceAll(data, []byte("\n"), nil))
	b.WriteString("\n\n")
	return b.Bytes()
}

// sseControl turns a /ws control frame ({"type":T,...}) into an SSE event
// named T whose data is the frame.
func sseControl(frame []byte) []byte {
	var head struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(frame, &head) != nil || head.Type == "" || !sseSafeName(head.Type) {
		head.Type = "message"
	}
	return sseEvent("", head.Type, frame)
}

// sseSafeName keeps event names on their line.
func sseSafeName(s string) bool {
	return !bytes.ContainsAny([]byte(s), "\r\n")
}

// sseFrame is an event as an SSE event: id the event id (what
// Last-Event-ID resumes from), name the event name, data the §3 object.
func (e *Event) sseFrame() []byte {
	return e.sseEnvelope.get(func() []byte {
		name := e.Name
		if !sseSafeName(name) {
			name = "message"
		}
		return sseEvent(strconv.FormatInt(e.Pos.ID, 10), name, e.encoded())
	})
}
