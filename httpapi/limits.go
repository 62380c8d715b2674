package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyedLimiter is a token bucket per key (an address, an account), with
// idle keys forgotten so that memory stays bounded under a spray of keys.
type keyedLimiter struct {
	every time.Duration
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	limiter *rate.Limiter
	seen    time.Time
}

// maxKeys bounds the map; past it, idle buckets are swept on insert.
const maxKeys = 100_000

func newKeyedLimiter(every time.Duration, burst int) *keyedLimiter {
	return &keyedLimiter{every: every, burst: burst, buckets: make(map[string]*bucket)}
}

func (k *keyedLimiter) get(key string, now time.Time) *rate.Limiter {
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.buckets[key]
	if !ok {
		if len(k.buckets) >= maxKeys || now.Sub(k.swept) > time.Minute {
			k.sweep(now)
		}
		b = &bucket{limiter: rate.NewLimiter(rate.Every(k.every), k.burst)}
		k.buckets[key] = b
	}
	b.seen = now
	return b.limiter
}

// sweep drops buckets idle long enough to have refilled completely: they
// are indistinguishable from new ones.
func (k *keyedLimiter) sweep(now time.Time) {
	full := k.every * time.Duration(k.burst)
	for key, b := range k.buckets {
		if now.Sub(b.seen) > full {
			delete(k.buckets, key)
		}
	}
	k.swept = now
}

// allowed reports whether key has a token left, without taking it.
func (k *keyedLimiter) allowed(key string) bool {
	now := time.Now()
	return k.get(key, now).TokensAt(now) >= 1
}

// take spends one of key's tokens.
func (k *keyedLimiter) take(key string) {
	now := time.Now()
	k.get(key, now).AllowN(now, 1)
}

// connCounter counts open sockets per address.
type connCounter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func (c *connCounter) acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int)
	}
	if c.max > 0 && c.n[key] >= c.max {
		return false
	}
	c.n[key]++
	return true
}

func (c *connCounter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key]--; c.n[key] <= 0 {
		delete(c.n, key)
	}
}

// Proxies says which peers are trusted to report the client's address
// (X-Forwarded-For) and scheme (X-Forwarded-Proto). An empty list trusts
// no one, so a client cannot forge its address or claim TLS.
type Proxies []netip.Prefix

// ParseProxies parses a comma-separated list of CIDRs or addresses.
func ParseProxies(list string) (Proxies, error) {
	var out Proxies
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !strings.Contains(item, "/") {
			addr, err := netip.ParseAddr(item)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (p Proxies) trusts(addr netip.Addr) bool {
	for _, prefix := range p {
		if prefix.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}

func peerAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	return addr.Unmap(), err == nil
}

// ClientIP is the caller's address: the peer, or, when the peer is a
// trusted proxy, the nearest untrusted address in X-Forwarded-For.
func (p Proxies) ClientIP(r *http.Request) string {
	peer, ok := peerAddr(r)
	if !ok {
		return r.RemoteAddr
	}
	if !p.trusts(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		addr, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !p.trusts(addr.Unmap()) {
			return addr.Unmap().String()
		}
	}
	return peer.String()
}

// Secure reports whether the request reached us over TLS, directly or
// through a trusted proxy that says so.
func (p Proxies) Secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	peer, ok := peerAddr(r)
	return ok && p.trusts(peer) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
