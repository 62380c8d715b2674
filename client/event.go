package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// timestampLayout is the server's event timestamp: ISO-8601 UTC with
// milliseconds and a Z (SPEC §3).
const timestampLayout = "2006-01-02T15:04:05.000Z"

// Event is one change or custom event on a channel, exactly as the server
// sends it (SPEC §3):
//
//	{"id":"1842","channel":"order_changes","event":"order:updated",
//	 "data":{"id":123,"status":"paid","changed_fields":{"status":"paid"}},
//	 "timestamp":"2026-01-25T10:30:00.000Z"}
type Event struct {
	// ID is opaque: unique, but not an ordered number. Resume after it with
	// SubscribeOptions.Since.
	ID      string
	Channel string
	// Event is the name, such as "order:updated".
	Event string
	// Data is the JSON object: the new row (created, updated), the old row
	// (deleted, left), {} (truncated), or a custom event's payload.
	Data      json.RawMessage
	Timestamp time.Time
}

// wireEvent is the §3 shape. ID is raw so that a number is accepted too.
type wireEvent struct {
	ID        json.RawMessage `json:"id"`
	Channel   string          `json:"channel"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp string          `json:"timestamp"`
}

// UnmarshalJSON reads the §3 shape. The id may be a string or a number.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	id, err := eventID(w.ID)
	if err != nil {
		return err
	}
	ts, err := time.Parse(time.RFC3339Nano, w.Timestamp)
	if err != nil && w.Timestamp != "" {
		return fmt.Errorf("event %s: bad timestamp %q", id, w.Timestamp)
	}
	*e = Event{ID: id, Channel: w.Channel, Event: w.Event, Data: w.Data, Timestamp: ts}
	return nil
}

// MarshalJSON writes the §3 shape, so that an Event round-trips.
func (e Event) MarshalJSON() ([]byte, error) {
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	id, _ := json.Marshal(e.ID)
	return json.Marshal(wireEvent{
		ID:        id,
		Channel:   e.Channel,
		Event:     e.Event,
		Data:      data,
		Timestamp: e.Timestamp.UTC().Format(timestampLayout),
	})
}

// eventID accepts "1842" and 1842.
func eventID(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errors.New(`event without "id"`)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("bad event id: %w", err)
		}
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", fmt.Errorf("bad event id %s", raw)
	}
	return n.String(), nil
}

// Entity is the part of the event name before its last colon: "order" for
// "order:updated". It is "" for a name without a colon.
func (e Event) Entity() string {
	i := strings.LastIndexByte(e.Event, ':')
	if i < 0 {
		return ""
	}
	return e.Event[:i]
}

// Action is the part of the event name after its last colon: "created",
// "updated", "deleted", "left", "truncated" for row changes, or a custom
// event's own suffix ("low" for "stock:low").
func (e Event) Action() string {
	return e.Event[strings.LastIndexByte(e.Event, ':')+1:]
}

// ChangedFields returns data.changed_fields of an updated event (column →
// new value, only the columns whose value changed), or nil when the event
// has none.
func (e Event) ChangedFields() map[string]json.RawMessage {
	var d struct {
		Changed map[string]json.RawMessage `json:"changed_fields"`
	}
	if json.Unmarshal(e.Data, &d) != nil {
		return nil
	}
	return d.Changed
}

// Decode unmarshals Data into v, typically a struct of the row's columns.
func (e Event) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode data of event %s: %w", e.ID, err)
	}
	return nil
}

// Snapshot is the current state of a subscription's rows (SPEC §3.2),
// delivered once, before the first event, when SubscribeOptions.Snapshot
// is set. Every change committed after Position arrives as an event; none
// that Rows already reflect arrives again.
type Snapshot struct {
	Channel string
	// Rows are in primary-key order, each the same JSON shape as an
	// event's Data.
	Rows []json.RawMessage
	// Position is the event id the rows are current as of.
	Position string
}

// Subscribed tells that delivery on a channel is active, after Subscribe
// and again after each reconnect.
type Subscribed struct {
	Channel string
	// Resumed is true when the server was asked to replay from an event
	// id (after a reconnect, or with SubscribeOptions.Since); Since is
	// that id.
	Resumed bool
	Since   string
	// Position is the server's position at subscription time, if any
	// event exists yet.
	Position string
}

// Broadcast is a frame sent to every socket without a subscription, such
// as {"type":"new_product","data":{row}} from `pgpush watch --broadcast`.
type Broadcast struct {
	Type string
	// Frame is the whole frame as received.
	Frame json.RawMessage
}
