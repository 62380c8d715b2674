package client_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pgpush/pgpush/client"
)

func TestEventNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		event, entity, action string
	}{
		{"order:updated", "order", "updated"},
		{"order_item:created", "order_item", "created"},
		{"stock:low", "stock", "low"},
		{"a:b:deleted", "a:b", "deleted"},
		{"ping", "", "ping"},
		{"", "", ""},
	}
	for _, tt := range tests {
		ev := client.Event{Event: tt.event}
		if got := ev.Entity(); got != tt.entity {
			t.Errorf("Event{%q}.Entity() = %q, want %q", tt.event, got, tt.entity)
		}
		if got := ev.Action(); got != tt.action {
			t.Errorf("Event{%q}.Action() = %q, want %q", tt.event, got, tt.action)
		}
	}
}

func TestChangedFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want map[string]string
	}{
		{"updated", `{"id":1,"status":"paid","changed_fields":{"status":"paid","total":10.5}}`, map[string]string{"status": `"paid"`, "total": "10.5"}},
		{"created", `{"id":1}`, nil},
		{"not an object", `[1]`, nil},
		{"changed_fields not an object", `{"changed_fields":3}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := client.Event{Data: json.RawMessage(tt.data)}.ChangedFields()
			if len(got) != len(tt.want) {
				t.Fatalf("ChangedFields() = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if string(got[k]) != v {
					t.Errorf("ChangedFields()[%q] = %s, want %s", k, got[k], v)
				}
			}
		})
	}
}

func TestEventJSON(t *testing.T) {
	t.Parallel()
	wire := `{"id":"1842","channel":"order_changes","event":"order:updated","data":{"id":123,"changed_fields":{"status":"paid"}},"timestamp":"2026-01-25T10:30:00.000Z"}`
	var ev client.Event
	if err := json.Unmarshal([]byte(wire), &ev); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 1, 25, 10, 30, 0, 0, time.UTC)
	if ev.ID != "1842" || ev.Channel != "order_changes" || ev.Event != "order:updated" || !ev.Timestamp.Equal(want) {
		t.Errorf("decoded %+v, want id 1842 on order_changes at %v", ev, want)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != wire {
		t.Errorf("round trip:\n got %s\nwant %s", b, wire)
	}

	// A number id is accepted too.
	if err := json.Unmarshal([]byte(`{"id":7,"channel":"c","event":"e","data":{},"timestamp":"2026-01-25T10:30:00.000Z"}`), &ev); err != nil || ev.ID != "7" {
		t.Errorf("numeric id: got %q, %v; want \"7\"", ev.ID, err)
	}
	for _, bad := range []string{`{"channel":"c"}`, `{"id":"1","timestamp":"yesterday"}`, `{"id":{}}`} {
		if err := json.Unmarshal([]byte(bad), &ev); err == nil {
			t.Errorf("Unmarshal(%s) succeeded, want an error", bad)
		}
	}
}

// FuzzEventJSON: decoding server input never panics, and what decodes
// encodes and decodes again to the same event.
func FuzzEventJSON(f *testing.F) {
	f.Add(`{"id":"1842","channel":"order_changes","event":"order:updated","data":{"id":123,"changed_fields":{"status":"paid"}},"timestamp":"2026-01-25T10:30:00.000Z"}`)
	f.Add(`{"id":7,"channel":"c","event":"e","data":{},"timestamp":"2026-01-25T10:30:00.000Z"}`)
	f.Add(`{"id":"1","data":null}`)
	f.Fuzz(func(t *testing.T, s string) {
		var ev client.Event
		if json.Unmarshal([]byte(s), &ev) != nil {
			return
		}
		_ = ev.ChangedFields()
		_, _ = ev.Entity(), ev.Action()
		b, err := json.Marshal(ev)
		if err != nil {
			return // data that is not valid JSON on its own, such as null bytes
		}
		var again client.Event
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("re-decode %s: %v", b, err)
		}
		if again.ID != ev.ID || again.Event != ev.Event || again.Channel != ev.Channel ||
			!again.Timestamp.Equal(ev.Timestamp.Truncate(time.Millisecond)) {
			t.Fatalf("round trip changed %+v into %+v", ev, again)
		}
	})
}
