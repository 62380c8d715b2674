// Package realtime owns live delivery: the listener that turns PostgreSQL
// notifications into events, the hub that fans them out to subscriptions,
// each socket's read and write pumps, and the /ws message protocol.
package realtime

import (
	"bytes"
	"encoding/json"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"
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

	encodeOnce sync.Once
	encoded    []byte
	fieldsOnce sync.Once
	fields     map[string]json.RawMessage
}

// wireEvent is the exact shape of SPEC §3.
type wireEvent struct {
	ID        string          `json:"id"`
	Channel   string          `json:"channel"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp string          `json:"timestamp"`
}

// Encoded returns the event's JSON frame, built on first use.
func (e *Event) Encoded() []byte {
	e.encodeOnce.Do(func() {
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
		e.encoded = b
	})
	return e.encoded
}

// Field returns the raw JSON of data's top-level field name. The object is
// decoded once per event, on first use, however many subscriptions filter.
func (e *Event) Field(name string) (json.RawMessage, bool) {
	e.fieldsOnce.Do(func() {
		var m map[string]json.RawMessage
		if json.Unmarshal(e.Data, &m) == nil {
			e.fields = m
		}
	})
	v, ok := e.fields[name]
	return v, ok
}

// jsonEqual compares two JSON values by meaning: 45 equals 45.0, key order
// and white space do not matter.
func jsonEqual(a, b json.RawMessage) bool {
	va, okA := decodeValue(a)
	vb, okB := decodeValue(b)
	return okA && okB && valuesEqual(va, vb)
}

func decodeValue(raw json.RawMessage) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

func valuesEqual(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		return ok && numbersEqual(x, y)
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !valuesEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !valuesEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	default: // string, bool, nil
		return a == b
	}
}

// numbersEqual compares exactly, so that large ids beyond float64's 53 bits
// are not conflated.
func numbersEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	// big.Rat expands exponents (1e999999999) into memory: a client could
	// send such a filter value. Exponents and long literals compare as floats.
	if len(a) > 64 || len(b) > 64 || strings.ContainsAny(string(a), "eE/") || strings.ContainsAny(string(b), "eE/") {
		x, errA := strconv.ParseFloat(string(a), 64)
		y, errB := strconv.ParseFloat(string(b), 64)
		return errA == nil && errB == nil && x == y
	}
	x, okA := new(big.Rat).SetString(string(a))
	y, okB := new(big.Rat).SetString(string(b))
	return okA && okB && x.Cmp(y) == 0
}

// matchesAttr reports whether a data field equals a user attribute, which
// is always a string: "45" matches both 45 and "45".
func matchesAttr(field json.RawMessage, attr string) bool {
	v, ok := decodeValue(field)
	if !ok {
		return false
	}
	switch x := v.(type) {
	case string:
		return x == attr
	case json.Number:
		return numbersEqual(x, json.Number(attr))
	case bool:
		return strconv.FormatBool(x) == attr
	}
	return false
}

// broadcastFrame is the Ocha-style announcement {"type":TYPE,"data":{row}}
// that --broadcast sends to every socket.
func (e *Event) broadcastFrame() []byte {
	e.encodeOnce.Do(func() {
		data := e.Data
		if len(data) == 0 {
			data = json.RawMessage("{}")
		}
		e.encoded, _ = json.Marshal(struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}{e.Name, data})
	})
	return e.encoded
}
