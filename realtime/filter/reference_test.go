package filter

import (
	"bytes"
	"encoding/json"
	"io"
	"math/big"
	"strconv"
	"strings"
)

// This file holds realtime's grant rule as of commit e0f546c
// (realtime/event.go), copied because this package may not import
// realtime: MatchAttrs must keep its meaning.

func matchesAttr(field json.RawMessage, attr string) bool {
	if n := len(field); n >= 2 && field[0] == '"' && field[n-1] == '"' && bytes.IndexByte(field, '\\') < 0 {
		return string(field[1:n-1]) == attr
	}
	if string(field) == attr && attr != "" && (attr[0] == '-' || attr[0] >= '0' && attr[0] <= '9') {
		return json.Valid(field)
	}
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

func decodeValue(raw json.RawMessage) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return v, true
}

func numbersEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	if len(a) > 64 || len(b) > 64 || strings.ContainsAny(string(a), "eE/") || strings.ContainsAny(string(b), "eE/") {
		x, errA := strconv.ParseFloat(string(a), 64)
		y, errB := strconv.ParseFloat(string(b), 64)
		return errA == nil && errB == nil && x == y
	}
	x, okA := new(big.Rat).SetString(string(a))
	y, okB := new(big.Rat).SetString(string(b))
	return okA && okB && x.Cmp(y) == 0
}
