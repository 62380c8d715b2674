package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Engine.IO packet types (protocol v4): the first byte of every packet.
const (
	engineOpen    byte = '0'
	engineClose   byte = '1'
	enginePing    byte = '2'
	enginePong    byte = '3'
	engineMessage byte = '4'
	engineUpgrade byte = '5'
	engineNoop    byte = '6'
)

// Socket.IO packet types (protocol v5): the first byte of an Engine.IO
// message's data.
const (
	packetConnect      byte = '0'
	packetDisconnect   byte = '1'
	packetEvent        byte = '2'
	packetAck          byte = '3'
	packetConnectError byte = '4'
	packetBinaryEvent  byte = '5'
	packetBinaryAck    byte = '6'
)

// recordSeparator joins packets in an HTTP long-polling payload. JSON never
// contains it unescaped, so it cannot occur inside a text packet we encode.
const recordSeparator = 0x1e

// maxAckIDDigits keeps ack ids within JavaScript's safe integers (2^53).
const maxAckIDDigits = 15

var (
	errEmptyPacket = errors.New("empty packet")
	// errBinary: binary packets (base64 "b…" payloads, binary frames,
	// BINARY_EVENT, BINARY_ACK) are not supported; pgpush speaks JSON only.
	errBinary     = errors.New("binary packets are not supported")
	errBadUTF8    = errors.New("packet is not valid UTF-8")
	errBadPayload = errors.New("invalid payload for packet type")
)

// reservedEvents are names the JavaScript client uses for its own events;
// the reference parser refuses them in EVENT packets, in both directions.
var reservedEvents = []string{"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}

// enginePacket is one Engine.IO packet: a type byte and its data.
type enginePacket struct {
	Type byte
	Data []byte
}

// decodeEnginePacket parses one text packet (a WebSocket frame or one
// record of a polling payload). Data aliases b.
func decodeEnginePacket(b []byte) (enginePacket, error) {
	if len(b) == 0 {
		return enginePacket{}, errEmptyPacket
	}
	if b[0] == 'b' {
		return enginePacket{}, errBinary
	}
	if b[0] < engineOpen || b[0] > engineNoop {
		return enginePacket{}, fmt.Errorf("unknown engine.io packet type %q", b[0])
	}
	return enginePacket{Type: b[0], Data: b[1:]}, nil
}

// appendEnginePacket appends p's encoding to dst.
func appendEnginePacket(dst []byte, p enginePacket) []byte {
	return append(append(dst, p.Type), p.Data...)
}

// splitPayload splits a polling request body into its packets. The result
// aliases body.
func splitPayload(body []byte) [][]byte {
	return bytes.Split(body, []byte{recordSeparator})
}

// encodePayload joins encoded packets into one polling response body.
func encodePayload(packets [][]byte) []byte {
	return bytes.Join(packets, []byte{recordSeparator})
}

// packet is one Socket.IO packet (the data of an Engine.IO message).
type packet struct {
	Type      byte
	Namespace string          // "/" when the packet names none
	ID        int64           // ack id; -1 when absent
	Data      json.RawMessage // the JSON payload, nil when absent
	// Args holds the elements of Data for EVENT and ACK packets; for EVENT
	// Args[0] is the event name as a JSON string.
	Args []json.RawMessage
}

// decodePacket parses a Socket.IO packet as the reference parser does
// (namespace up to ',', then ack id digits, then JSON) and validates its
// payload for its type. Data aliases b; Args are copies.
func decodePacket(b []byte) (packet, error) {
	p := packet{Namespace: "/", ID: -1}
	if len(b) == 0 {
		return p, errEmptyPacket
	}
	if !utf8.Valid(b) {
		return p, errBadUTF8
	}
	p.Type = b[0]
	switch p.Type {
	case packetConnect, packetDisconnect, packetEvent, packetAck, packetConnectError:
	case packetBinaryEvent, packetBinaryAck:
		return p, errBinary
	default:
		return p, fmt.Errorf("unknown socket.io packet type %q", p.Type)
	}
	rest := b[1:]
	if len(rest) > 0 && rest[0] == '/' {
		nsp, after, found := bytes.Cut(rest, []byte{','})
		p.Namespace = string(nsp)
		rest = nil
		if found {
			rest = after
		}
	}
	digits := 0
	for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
		digits++
	}
	if digits > 0 {
		if p.Type != packetEvent && p.Type != packetAck {
			return p, fmt.Errorf("ack id on packet type %q", p.Type)
		}
		if digits > maxAckIDDigits {
			return p, errors.New("ack id too large")
		}
		id, err := strconv.ParseInt(string(rest[:digits]), 10, 64)
		if err != nil {
			return p, fmt.Errorf("ack id: %w", err)
		}
		p.ID = id
		rest = rest[digits:]
	}
	if len(rest) > 0 {
		if !json.Valid(rest) {
			return p, errors.New("payload is not valid JSON")
		}
		p.Data = rest
	}
	if err := p.validate(); err != nil {
		return p, err
	}
	return p, nil
}

// validate checks the payload against the packet type, as
// socket.io-parser's isPayloadValid does, and fills Args.
func (p *packet) validate() error {
	first := byte(0)
	if trimmed := bytes.TrimLeft(p.Data, " \t\r\n"); len(trimmed) > 0 {
		first = trimmed[0]
	}
	switch p.Type {
	case packetConnect:
		if p.Data != nil && first != '{' {
			return errBadPayload
		}
	case packetDisconnect:
		if p.Data != nil {
			return errBadPayload
		}
	case packetConnectError:
		if first != '{' && first != '"' {
			return errBadPayload
		}
	case packetEvent, packetAck:
		if first != '[' {
			return errBadPayload
		}
		if err := json.Unmarshal(p.Data, &p.Args); err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		if p.Type == packetEvent {
			var name string
			if len(p.Args) == 0 || json.Unmarshal(p.Args[0], &name) != nil {
				return errors.New("event packet without an event name")
			}
			if slices.Contains(reservedEvents, name) {
				return fmt.Errorf("reserved event name %q", name)
			}
		}
	}
	return nil
}

// appendPacket appends p's encoding to dst; Args are ignored (Data is the
// payload).
func appendPacket(dst []byte, p packet) []byte {
	dst = append(dst, p.Type)
	if p.Namespace != "" && p.Namespace != "/" {
		dst = append(append(dst, p.Namespace...), ',')
	}
	if p.ID >= 0 {
		dst = strconv.AppendInt(dst, p.ID, 10)
	}
	return append(dst, p.Data...)
}

// encodeMessage encodes a Socket.IO packet as an Engine.IO message, the
// form a transport sends: "4" + packet.
func encodeMessage(typ byte, id int64, data []byte) []byte {
	dst := make([]byte, 0, 2+maxAckIDDigits+len(data))
	dst = append(dst, engineMessage)
	return appendPacket(dst, packet{Type: typ, ID: id, Data: data})
}
