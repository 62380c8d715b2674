package filter

import "testing"

func TestCanonNumber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lit  string
		want string
	}{
		{"45", "45"},
		{"45.0", "45"},
		{"4.5e1", "45"},
		{"450e-1", "45"},
		{"0.45E+2", "45"},
		{"-45.000", "-45"},
		{"0", "0"},
		{"-0", "0"},
		{"-0.0e7", "0"},
		{"0e999999999999999999999", "0"},
		{"99.90", "99.9"},
		{"100.00", "100"},
		{"0.050", "0.05"},
		{"5e-3", "0.005"},
		{"12.5e0", "12.5"},
		{"9007199254740993", "9007199254740993"},
		{"9007199254740992.0", "9007199254740992"},
		{"9.007199254740993e15", "9007199254740993"},
		{"18446744073709551615", "18446744073709551615"},
		{"1e20", "100000000000000000000"},
		{"1e21", "1e21"},
		{"1000000000000000000000", "1e21"},
		{"-1.5e-30", "-1.5e-30"},
		{"0.000000000000000000001", "0.000000000000000000001"}, // 20 zeros: still plain
		{"0.0000000000000000000001", "1e-22"},
		{"0.1e-21", "1e-22"},
		{"1e999999999", "1e999999999"},
		{"123.456e-999999999", "1.23456e-999999997"},
	}
	for _, tt := range tests {
		got, ok := canonNumber(tt.lit, false)
		if !ok || got != tt.want {
			t.Errorf("canonNumber(%s) = %q, %t, want %q, true", tt.lit, got, ok, tt.want)
		}
	}
}

func TestCanonNumberOutOfRange(t *testing.T) {
	t.Parallel()
	// Clamped, an event's number stays on the far side of the largest (or
	// smallest) number a filter may hold.
	tests := []struct {
		lit   string
		limit string // the extreme in-range filter number on its side
		want  int    // compareDecimal(clamped, limit)
	}{
		{"1e1000000000000000000", "9.9e999999999999999999", 1},
		{"-1e99999999999999999999999999", "-9.9e999999999999999999", -1},
		{"1e-1000000000000000002", "1e-1000000000000000000", -1},
		{"-1e-1000000000000000002", "-1e-1000000000000000000", 1},
	}
	for _, tt := range tests {
		if got, ok := canonNumber(tt.lit, false); ok {
			t.Errorf("canonNumber(%s, false) = %q, true, want out of range", tt.lit, got)
		}
		limit, ok := canonNumber(tt.limit, false)
		if !ok {
			t.Fatalf("canonNumber(%s, false) out of range, want in range", tt.limit)
		}
		got, ok := canonNumber(tt.lit, true)
		if c := compareDecimal(parseCanon(got), parseCanon(limit)); !ok || c != tt.want {
			t.Errorf("canonNumber(%s, true) = %q, %t, compares %d with %s, want %d", tt.lit, got, ok, c, tt.limit, tt.want)
		}
		if c := compareDecimal(parseCanon(got), parseCanon("0")); c != parseCanon(limit).sign {
			t.Errorf("canonNumber(%s, true) = %q has the wrong sign", tt.lit, got)
		}
	}
}

func TestCompareDecimal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"45", "4.5e1", 0},
		{"99.99", "100", -1},
		{"100", "99.99", 1},
		{"-100", "-99.99", -1},
		{"-1", "0", -1},
		{"0", "0.0001", -1},
		{"0.0001", "1e-5", 1},
		{"9007199254740993", "9007199254740992", 1},
		{"1e21", "999999999999999999999", 1},
		{"1.5e-30", "1.49999e-30", 1},
		{"1.5e-30", "1.5e-30", 0},
		{"12.5", "12.50001", -1},
		{"1", "1.0000000001", -1},
		{"-1.5", "-1.5000001", 1},
		{"1e21", "1.000000000000000000001e21", -1},
		{"100", "100.5", -1},
		{"120", "12e1", 0},
		{"1e999999999", "1e999999998", 1},
		{"-1e999999999", "-1e999999998", -1},
	}
	for _, tt := range tests {
		a, _ := canonNumber(tt.a, false)
		b, _ := canonNumber(tt.b, false)
		if got := compareDecimal(parseCanon(a), parseCanon(b)); got != tt.want {
			t.Errorf("compareDecimal(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestAttrNumber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attr string
		want string // "" means not a number
	}{
		{"45", "45"},
		{"45.0", "45"},
		{"4.5e1", "45"},
		{"+45", "45"},
		{"045", "45"},
		{".5", "0.5"},
		{"5.", "5"},
		{"0x2d", "45"},
		{"1_000", "1000"},
		{"0x1p-3", ""}, // binary exponents are not expanded either
		{"0x1p99999999999", ""},
		{"-0", "0"},
		{"1/2", ""},
		{"+1e5", ""},
		{" 45", ""},
		{"abc", ""},
		{"", ""},
		{"NaN", ""},
		{"Inf", ""},
		{"true", ""},
		{"1e1000000000000000000", ""},
	}
	for _, tt := range tests {
		got, ok := attrNumber(tt.attr)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("attrNumber(%q) = %q, %t, want %q", tt.attr, got, ok, tt.want)
		}
	}
}
