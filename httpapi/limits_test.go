package httpapi

import (
	"net/http"
	"testing"
	"time"
)

func TestKeyedLimiterTakeAndRefund(t *testing.T) {
	t.Parallel()
	k := newKeyedLimiter(time.Hour, 2)
	if !k.take("a") || !k.take("a") {
		t.Fatal("the first two takes of a 2-token bucket failed")
	}
	if k.take("a") {
		t.Fatal("a third take succeeded; the bucket holds 2")
	}
	if !k.take("b") {
		t.Fatal("another key shares a's bucket")
	}
	k.refund("a")
	if !k.take("a") {
		t.Fatal("a refunded token cannot be taken again")
	}
	k.refund("a")
	k.refund("a")
	k.refund("a")
	if !k.take("a") || !k.take("a") || k.take("a") {
		t.Fatal("refunds filled the bucket past its burst")
	}
}

func TestClientIPAndSecure(t *testing.T) {
	t.Parallel()
	proxies, err := ParseProxies("10.0.0.0/8, 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseProxies("not-an-address"); err == nil {
		t.Fatal("ParseProxies accepted garbage")
	}
	tests := []struct {
		name, remote, xff, proto string
		proxies                  Proxies
		wantIP                   string
		wantSecure               bool
	}{
		{"direct", "203.0.113.5:4000", "", "", proxies, "203.0.113.5", false},
		{"forged header from a client", "203.0.113.5:4000", "198.51.100.1", "https", proxies, "203.0.113.5", false},
		{"through a trusted proxy", "127.0.0.1:4000", "198.51.100.1", "https", proxies, "198.51.100.1", true},
		{"chain of trusted proxies", "127.0.0.1:4000", "198.51.100.1, 10.1.2.3", "http", proxies, "198.51.100.1", false},
		{"client-supplied prefix ignored", "127.0.0.1:4000", "1.2.3.4, 198.51.100.1", "", proxies, "198.51.100.1", false},
		{"no proxies trusted", "127.0.0.1:4000", "198.51.100.1", "https", nil, "127.0.0.1", false},
		{"ipv6 peer", "[2001:db8::1]:4000", "", "", proxies, "2001:db8::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if tt.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			if got := tt.proxies.ClientIP(r); got != tt.wantIP {
				t.Errorf("ClientIP() = %q, want %q", got, tt.wantIP)
			}
			if got := tt.proxies.Secure(r); got != tt.wantSecure {
				t.Errorf("Secure() = %t, want %t", got, tt.wantSecure)
			}
		})
	}
}
