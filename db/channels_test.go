package db

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseControl(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("ab", 32)
	tests := []struct {
		payload string
		want    Control
		bad     bool
	}{
		{ReloadPayload, Control{Reload: true}, false},
		{LogoutPayloadPrefix + id, Control{SessionID: id}, false},
		{"logout:", Control{}, true},
		{"logout:XYZ", Control{}, true},
		{LogoutPayloadPrefix + strings.Repeat("a", 129), Control{}, true},
		{"", Control{}, true},
		{"RELOAD", Control{}, true},
	}
	for _, tt := range tests {
		got, err := ParseControl(tt.payload)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseControl(%q) = %+v, %v; want %+v, error %t", tt.payload, got, err, tt.want, tt.bad)
		}
	}
}

func TestValidNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		s     string
		valid func(string) bool
		want  bool
	}{
		{"name of 100", strings.Repeat("a", 100), ValidName, true},
		{"name of 101", strings.Repeat("a", 101), ValidName, false},
		{"room id of 200", strings.Repeat("r", 200), ValidBuiltinName, true},
		{"room id of 201", strings.Repeat("r", 201), ValidBuiltinName, false},
		{"room id with a colon", "a:b", ValidBuiltinName, false},
		{"empty room id", "", ValidBuiltinName, false},
		{"channel of 200", strings.Repeat("c", 200), ValidChannel, true},
		{"channel of 201", strings.Repeat("c", 201), ValidChannel, false},
		{"room channel of 205", RoomChannel(strings.Repeat("r", 200)), ValidChannel, true},
		{"notify channel of 207", NotifyChannel(strings.Repeat("n", 200)), ValidChannel, true},
		{"room channel of 206", RoomChannel(strings.Repeat("r", 201)), ValidChannel, false},
		{"long room channel with a colon", RoomChannel(strings.Repeat("r", 199) + ":"), ValidChannel, false},
	}
	for _, tt := range tests {
		if got := tt.valid(tt.s); got != tt.want {
			t.Errorf("%s: got %t, want %t", tt.name, got, tt.want)
		}
	}
}

// FuzzParseControl: the notification decoder never panics, and what it
// accepts re-encodes to the same payload.
func FuzzParseControl(f *testing.F) {
	for _, seed := range []string{"reload", LogoutPayloadPrefix + strings.Repeat("0f", 32), "logout:", "logout:zz", "x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		msg, err := ParseControl(payload)
		if err != nil {
			return
		}
		var again string
		if msg.Reload {
			again = ReloadPayload
		} else {
			again = LogoutPayloadPrefix + msg.SessionID
		}
		if again != payload {
			t.Fatalf("ParseControl(%q) = %+v, which encodes as %q", payload, msg, again)
		}
	})
}

// BenchmarkParseControl: the control notification decoder.
func BenchmarkParseControl(b *testing.B) {
	payload := "logout:" + fmt.Sprintf("%064x", 42)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseControl(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func TestValidChannelPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		want    bool
	}{
		{"order_changes", true},
		{"room:*", true},
		{"*", true},
		{"", false},
		{"**", false},
		{"a*b", false},
		{"bad name", false},
		{strings.Repeat("a", 200) + "*", true},
		{strings.Repeat("a", 201), false},
	}
	for _, tt := range tests {
		if got := ValidChannelPattern(tt.pattern); got != tt.want {
			t.Errorf("ValidChannelPattern(%q) = %t, want %t", tt.pattern, got, tt.want)
		}
	}
}

func TestReservedChannel(t *testing.T) {
	t.Parallel()
	for ch, want := range map[string]bool{
		RoomChannel("general"):  true,
		NotifyChannel("devops"): true,
		NotifyEveryoneChannel:   true,
		BroadcastChannel:        true,
		"order_changes":         false,
		"rooms":                 false,
	} {
		if got := ReservedChannel(ch); got != want {
			t.Errorf("ReservedChannel(%q) = %t, want %t", ch, got, want)
		}
	}
}

func TestValidChannel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want bool
	}{
		{"order_changes", true},
		{"room:general", true},
		{"a.b-c", true},
		{strings.Repeat("a", 200), true},
		{strings.Repeat("a", 201), false},
		{"", false},
		{"has space", false},
		{"room:*", false},
		{"it's", false},
		{"ünï", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ValidChannel(tt.name); got != tt.want {
				t.Errorf("ValidChannel(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}
