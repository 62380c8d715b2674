// Package realtime owns live delivery: the listener that turns PostgreSQL
// notifications into events, the hub that fans them out to subscriptions,
// each socket's read and write pumps, and the /ws message protocol.
package realtime

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/realtime/filter"
	"github.com/pgpush/pgpush/realtime/socketio"
)

// timestampLayout is ISO-8601 UTC with milliseconds and a Z, as SPEC §3 asks.
const timestampLayout = "2006-01-02T15:04:05.000Z"

// Position orders events for delivery: by commit (Seq), then by order of
// insertion inside the transaction (ID).
type Position struct {
	Seq int64
	ID  int64
}

// After reports whether p comes after q in delivery order.
func (p Position) After(q Position) bool {
	return p.Seq > q.Seq || (p.Seq == q.Seq && p.ID > q.ID)
}

// Event is one change or custom event read from pgpush.events. It is
// immutable once dispatched and shared by every subscriber: the wire form is
// encoded once, not once per subscriber.
type Event struct {
	Pos     Position
	Channel string
	Name    string          // e.g. "order:updated"
	Data    json.RawMessage // a JSON object
	Time    time.Time
	// Origin is the socket a room or notification event came from
	// ("<instance>:<conn>"), empty for row changes.
	Origin string
	// Xid is the transaction that wrote the event: a snapshot subscription
	// skips the events its rows already reflect.
	Xid uint64
	// Old holds, for an update, the old values of the changed fields: what
	// a subscription judges the row before the update by, to tell a
	// subscriber it can no longer see the row (<entity>:left). It never
	// leaves the server.
	Old json.RawMessage

	// Each wire form is built once, on first use, and shared by every
	// socket that needs it: /ws frames are kept with their WebSocket
	// header, so a delivery is only a write.
	envelope    frameCache // §3 event object (JSON)
	wsEnvelope  frameCache // envelope as a WebSocket text frame
	sioEnvelope frameCache // envelope as a Socket.IO EVENT packet
	wsRaw       frameCache // Data (a room or notification frame) as a WebSocket frame
	sioRaw      frameCache // Data as a Socket.IO packet
	sseEnvelope frameCache // envelope as a Server-Sent Event
	sseRaw      frameCache
	broadcast   frameCache // {"type":TYPE,"data":{row}} (JSON)
	wsBcast     frameCache
	sioBcast    frameCache
	sseBcast    frameCache

	matchOnce sync.Once
	match     *filter.Fields

	// The row before the update, built once from Data and Old.
	beforeOnce   sync.Once
	beforeFields *filter.Fields
	left         *Event
}

// frameCache holds one lazily built encoding.
type frameCache struct {
	once sync.Once
	b    []byte
}

func (f *frameCache) get(build func() []byte) []byte {
	f.once.Do(func() { f.b = build() })
	return f.b
}

// wireEvent is the exact shape of SPEC §3.
type wireEvent struct {
	ID        string          `json:"id"`
	Channel   string          `json:"channel"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp string          `json:"timestamp"`
}

// encoded returns the event's JSON frame, built on first use.
func (e *Event) encoded() []byte {
	return e.envelope.get(func() []byte {
		data := e.Data
		if len(data) == 0 {
			data = json.RawMessage("{}")
		}
		b, err := json.Marshal(wireEvent{
			ID:        strconv.FormatInt(e.Pos.ID, 10),
			Channel:   e.Channel,
			Event:     e.Name,
			Data:      data,
			Timestamp: e.Time.UTC().Format(timestampLayout),
		})
		if err != nil {
			// Data came from a jsonb column, so it is valid JSON; keep the
			// frame well-formed even if that ever stops being true.
			b, _ = json.Marshal(wireEvent{ID: strconv.FormatInt(e.Pos.ID, 10), Channel: e.Channel,
				Event: e.Name, Data: json.RawMessage("{}"), Timestamp: e.Time.UTC().Format(timestampLayout)})
		}
		return b
	})
}

// frame returns the event in a wire form: the §3 object, or with raw its
// data as the frame itself (rooms and notifications).
func (e *Event) frame(wire wireForm, raw bool) []byte {
	switch {
	case raw && wire == wireSocketIO:
		return e.sioRaw.get(func() []byte { return toSocketIO(e.Data) })
	case raw && wire == wireSSE:
		return e.sseRaw.get(func() []byte { return sseControl(e.Data) })
	case wire == wireSSE:
		return e.sseFrame()
	case raw:
		return e.wsRaw.get(func() []byte { return wsTextFrame(e.Data) })
	case wire == wireSocketIO:
		return e.sioEnvelope.get(func() []byte { return socketIOPacket(e.Name, e.encoded()) })
	default:
		return e.wsEnvelope.get(func() []byte { return wsTextFrame(e.encoded()) })
	}
}

// fields returns what grants and filters judge the event by, decoded once
// per event however many subscriptions look: the data of a change, or the
// data a notification carries (not the frame around it), so that a
// grant's --match means the same on every delivery path: live, replayed,
// pending (joinChannel) and sent to everyone (Dispatch).
func (e *Event) fields() *filter.Fields {
	e.matchOnce.Do(func() {
		data := e.Data
		if e.isNotification() {
			data = notificationData(e.Data)
		}
		e.match = filter.Decode(data)
	})
	return e.match
}

// before returns the row as it was before an update, decoded, and the
// <entity>:left event that carries it; nil for any other event.
func (e *Event) before() (*filter.Fields, *Event) {
	e.beforeOnce.Do(func() {
		entity, action, ok := strings.Cut(e.Name, ":")
		if len(e.Old) == 0 || !ok || action != "updated" {
			return
		}
		var row, old map[string]json.RawMessage
		if json.Unmarshal(e.Data, &row) != nil || json.Unmarshal(e.Old, &old) != nil {
			return
		}
		delete(row, "changed_fields")
		for k, v := range old {
			row[k] = v
		}
		data, err := json.Marshal(row)
		if err != nil {
			return
		}
		e.beforeFields = filter.Decode(data)
		e.left = &Event{Pos: e.Pos, Channel: e.Channel, Name: entity + ":left", Data: data, Time: e.Time, Xid: e.Xid}
	})
	return e.beforeFields, e.left
}

// rowChange reports whether e is a captured row change (or the left it
// means): what a snapshot's rows already reflect when its transaction is
// visible to the snapshot. Custom events are named freely; one named like
// a row change on a watched table's channel counts as one.
func (e *Event) rowChange() bool {
	_, action, ok := strings.Cut(e.Name, ":")
	if !ok || e.Origin != "" {
		return false
	}
	switch action {
	case "created", "updated", "deleted", "truncated", "left":
		return true
	}
	return false
}

// truncates reports whether e says a watched table was emptied: every
// subscriber of the channel gets it, whatever its filter or --match. Only
// an event with no data passes, so a custom event named like one can
// carry nothing past a grant.
func (e *Event) truncates() bool {
	return strings.HasSuffix(e.Name, ":truncated") && string(bytes.TrimSpace(e.Data)) == "{}"
}

// isNotification reports whether e is a notification-received frame:
// only pgpush writes notification channels (db.ReservedChannel), so a
// custom event named like one cannot pass for one.
func (e *Event) isNotification() bool {
	return e.Name == notificationEvent && strings.HasPrefix(e.Channel, db.NotifyPrefix)
}

// notificationData is the "data" a notification carries inside its
// notification-received frame ({"type":…,"data":{…,"data":{…}}}), or
// nothing when it has none.
func notificationData(frame json.RawMessage) json.RawMessage {
	var outer struct {
		Data struct {
			Data json.RawMessage `json:"data"`
		} `json:"data"`
	}
	if json.Unmarshal(frame, &outer) != nil {
		return nil
	}
	return outer.Data.Data
}

// broadcastFrame is the Ocha-style announcement {"type":TYPE,"data":{row}}
// that --broadcast sends to every socket.
func (e *Event) broadcastFrame(wire wireForm) []byte {
	msg := e.broadcast.get(func() []byte {
		data := e.Data
		if len(data) == 0 {
			data = json.RawMessage("{}")
		}
		b, _ := json.Marshal(struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}{e.Name, data})
		return b
	})
	switch wire {
	case wireSocketIO:
		return e.sioBcast.get(func() []byte { return toSocketIO(msg) })
	case wireSSE:
		return e.sseBcast.get(func() []byte { return sseControl(msg) })
	}
	return e.wsBcast.get(func() []byte { return wsTextFrame(msg) })
}

// socketIOPacket encodes a Socket.IO EVENT packet: 42["name",payload].
func socketIOPacket(name string, payload []byte) []byte {
	return socketio.EncodeRawEvent(name, payload)
}

// toSocketIO turns a /ws frame into the Socket.IO event a socket.io client
// expects: {"type":T,"data":D} becomes emit(T, D); any other {"type":T,...}
// becomes emit(T, {...rest}); a change event becomes emit(event, frame).
func toSocketIO(frame []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(frame, &m) != nil {
		return socketIOPacket("message", frame)
	}
	var name string
	if raw, ok := m["type"]; ok && json.Unmarshal(raw, &name) == nil {
		delete(m, "type")
		if data, ok := m["data"]; ok && len(m) == 1 {
			return socketIOPacket(name, data)
		}
		rest, _ := json.Marshal(m)
		return socketIOPacket(name, rest)
	}
	if raw, ok := m["event"]; ok && json.Unmarshal(raw, &name) == nil {
		return socketIOPacket(name, frame)
	}
	return socketIOPacket("message", frame)
}
