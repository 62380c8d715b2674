package filter

import (
	"math/big"
	"strconv"
	"strings"
)

// A number's canonical key is its exact decimal value written one way:
// 45, 45.0, 4.5e1 and 450e-1 all become "45", so equality is string
// equality and an index can hash it. The form is plain decimal ("-0.25",
// "99.9", "100000") unless that would pad more than maxPlainZeros zeros, then
// scientific with one leading digit ("1e21", "-1.5e-30"). Plain keys never
// hold an 'e', so the two forms cannot collide.
//
// Nothing here expands an exponent: 1e999999999 is the short key
// "1e999999999". That is why numbers are not big.Rat: a client's filter
// could otherwise make us allocate gigabytes.
const (
	maxPlainZeros = 20 // every int64 and uint64 stays plain

	// maxExponent bounds a number's decimal exponent. A filter holding a
	// number beyond it is refused; in event data such a number is clamped
	// just past it, where it still orders correctly against every filter
	// number and equals none of them.
	maxExponent = 1_000_000_000_000_000_000
)

// canonNumber returns the canonical key of a valid JSON number literal. ok
// is false when the exponent is beyond maxExponent and clamp is false.
func canonNumber(lit string, clamp bool) (key string, ok bool) {
	neg := lit[0] == '-'
	body := lit
	if neg {
		body = lit[1:]
	}
	ip, fp, ex := splitNumber(body)

	// Fast path, no allocation: every number PostgreSQL's jsonb prints is
	// plain, and trimming trailing fraction zeros keeps a prefix of it.
	if ex == "" {
		trimmed := strings.TrimRight(fp, "0")
		n := len(lit) - (len(fp) - len(trimmed))
		if trimmed == "" && fp != "" {
			n-- // the dot of 45.0
		}
		switch {
		case ip == "0" && trimmed == "":
			return "0", true // also -0 and 0.000
		case trimmed == "" && len(ip)-len(strings.TrimRight(ip, "0")) <= maxPlainZeros,
			ip == "0" && len(trimmed)-len(strings.TrimLeft(trimmed, "0")) <= maxPlainZeros,
			ip != "0" && trimmed != "":
			return lit[:n], true
		}
	}

	digits := ip + fp
	lead := len(digits) - len(strings.TrimLeft(digits, "0"))
	d := strings.TrimRight(digits[lead:], "0")
	if d == "" {
		return "0", true // 0e999999999 is zero however large the exponent
	}
	e := int64(len(ip)-lead) + parseExponent(ex)
	if e > maxExponent || e < -maxExponent {
		if !clamp {
			return "", false
		}
		e = min(max(e, -maxExponent-1), maxExponent+1)
	}
	return formatNumber(neg, d, e), true
}

// splitNumber splits an unsigned JSON number into integer, fraction and
// exponent digits (the exponent with its sign, if any).
func splitNumber(s string) (ip, fp, ex string) {
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		s, ex = s[:i], s[i+1:]
	}
	ip, fp, _ = strings.Cut(s, ".")
	return ip, fp, ex
}

// parseExponent reads a JSON exponent, saturating far beyond maxExponent
// so that the sum with a digit count cannot overflow.
func parseExponent(ex string) int64 {
	neg := strings.HasPrefix(ex, "-")
	ex = strings.TrimLeft(ex, "+-")
	var e int64
	for i := 0; i < len(ex); i++ {
		e = e*10 + int64(ex[i]-'0')
		if e > 2*maxExponent {
			e = 2 * maxExponent
			break
		}
	}
	if neg {
		return -e
	}
	return e
}

// formatNumber writes 0.d × 10^e (d without leading or trailing zeros) in
// canonical form.
func formatNumber(neg bool, d string, e int64) string {
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	n := int64(len(d))
	switch {
	case e >= n && e-n <= maxPlainZeros: // integer
		b.WriteString(d)
		b.WriteString(strings.Repeat("0", int(e-n)))
	case e > 0 && e < n:
		b.WriteString(d[:e])
		b.WriteByte('.')
		b.WriteString(d[e:])
	case e <= 0 && -e <= maxPlainZeros:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", int(-e)))
		b.WriteString(d)
	default:
		b.WriteString(d[:1])
		if n > 1 {
			b.WriteByte('.')
			b.WriteString(d[1:])
		}
		b.WriteByte('e')
		b.WriteString(strconv.FormatInt(e-1, 10))
	}
	return b.String()
}

// decimal is a canonical key taken apart for ordering: the value is
// ±0.(d1 d2) × 10^e. The digits are two substrings of the key so that taking
// "99.9" apart allocates nothing.
type decimal struct {
	sign   int // -1, 0, 1
	e      int64
	d1, d2 string
}

func parseCanon(key string) decimal {
	if key == "0" {
		return decimal{}
	}
	x := decimal{sign: 1}
	if key[0] == '-' {
		x.sign, key = -1, key[1:]
	}
	if m, ex, sci := strings.Cut(key, "e"); sci {
		x.e = parseExponent(ex) + 1
		x.d1 = m[:1]
		if len(m) > 1 {
			x.d2 = m[2:]
		}
		return x
	}
	ip, fp, _ := strings.Cut(key, ".")
	if ip == "0" {
		z := len(fp) - len(strings.TrimLeft(fp, "0"))
		x.e, x.d1 = -int64(z), fp[z:]
		return x
	}
	x.e, x.d1, x.d2 = int64(len(ip)), ip, fp
	if fp == "" {
		x.d1 = strings.TrimRight(ip, "0")
	}
	return x
}

func (x decimal) digit(i int) byte {
	if i < len(x.d1) {
		return x.d1[i]
	}
	return x.d2[i-len(x.d1)]
}

// compareDecimal returns -1, 0 or 1 as a is less than, equal to or greater
// than b.
func compareDecimal(a, b decimal) int {
	if a.sign != b.sign {
		return cmpInt(int64(a.sign), int64(b.sign))
	}
	if a.sign == 0 {
		return 0
	}
	c := cmpInt(a.e, b.e)
	if c == 0 {
		na, nb := len(a.d1)+len(a.d2), len(b.d1)+len(b.d2)
		for i := range min(na, nb) {
			if c = cmpInt(int64(a.digit(i)), int64(b.digit(i))); c != 0 {
				return c * a.sign
			}
		}
		// Equal so far: canonical digits end in a non-zero digit, so the
		// one with more digits is larger. Stopping here also bounds the
		// work by the shorter number, the filter's, however long the
		// event's is.
		c = cmpInt(int64(na), int64(nb))
	}
	return c * a.sign
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// attrNumber returns the canonical key of a grant attribute that reads as
// a number, as realtime's matchesAttr read it: a JSON number, or what
// big.Rat accepts without an exponent ("+45", "045", ".5", "0x2d").
// Exponent forms that are not JSON ("+1e5", "0x1p4") stay strings:
// matchesAttr compared the former as float64, which no key can express.
func attrNumber(attr string) (string, bool) {
	if isJSONNumber(attr) {
		return canonNumber(attr, false)
	}
	// big.Rat only on short literals with no exponent, decimal or binary
	// ("0x1p99999999999" would take gigabytes), so its cost is bounded.
	if len(attr) > 64 || strings.ContainsAny(attr, "eEpP/") {
		return "", false
	}
	r, ok := new(big.Rat).SetString(attr)
	if !ok {
		return "", false
	}
	// A JSON number is a terminating decimal: only 2s and 5s in the
	// denominator. Other values (0x1p-3 is fine, 1/3 is not) equal none.
	den := new(big.Int).Set(r.Denom())
	places := 0
	for _, p := range []int64{2, 5} {
		n, q, m := 0, big.NewInt(p), new(big.Int)
		for {
			d, rem := new(big.Int).QuoRem(den, q, m)
			if rem.Sign() != 0 {
				break
			}
			den, n = d, n+1
		}
		places = max(places, n)
	}
	if den.Cmp(big.NewInt(1)) != 0 {
		return "", false
	}
	return canonNumber(r.FloatString(places), false)
}

// isJSONNumber reports whether s is exactly one JSON number literal.
func isJSONNumber(s string) bool {
	end, ok := scanNumber(s, 0)
	return ok && end == len(s)
}

// scanNumber checks the JSON number grammar from s[i] and returns where the
// literal ends.
func scanNumber(s string, i int) (int, bool) {
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return i, false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
