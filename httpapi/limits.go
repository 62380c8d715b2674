package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// keyedLimiter is a token bucket per key (an address, an account), with
// idle keys forgotten so that memory stays bounded under a spray of keys.
// Unlike rate.Limiter it can give a token back exactly, which is what
// "only failures count" needs.
type keyedLimiter struct {
	every time.Duration // one token comes back per every
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxKeys bounds the map; past it, idle buckets are swept on insert.
const maxKeys = 100_000

func newKeyedLimiter(every time.Duration, burst int) *keyedLimiter {
	return &keyedLimiter{every: every, burst: burst, buckets: make(map[string]*bucket)}
}

// refilled returns key's bucket brought up to now. Callers hold k.mu.
func (k *keyedLimiter) refilled(key string, now time.Time) *bucket {
	b, ok := k.buckets[key]
	if !ok {
		if len(k.buckets) >= maxKeys || now.Sub(k.swept) > time.Minute {
			k.sweep(now)
		}
		if len(k.buckets) >= maxKeys {
			// Still full of live keys: answer as if limited rather than grow.
			return &bucket{tokens: 0, last: now}
		}
		b = &bucket{tokens: float64(k.burst), last: now}
		k.buckets[key] = b
		return b
	}
	b.tokens = min(float64(k.burst), b.tokens+float64(now.Sub(b.last))/float64(k.every))
	b.last = now
	return b
}

// sweep drops buckets idle long enough to have refilled completely: they
// are indistinguishable from new ones.
func (k *keyedLimiter) sweep(now time.Time) {
	full := k.every * time.Duration(k.burst)
	for key, b := range k.buckets {
		if now.Sub(b.last) > full {
			delete(k.buckets, key)
		}
	}
	k.swept = now
}

// take spends one of key's tokens, or reports that none is left. Taking it
// before the slow password check is what stops parallel guesses from all
// passing the check.
func (k *keyedLimiter) take(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.refilled(key, time.Now())
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// refund gives back a token taken for an attempt that did not fail.
func (k *keyedLimiter) refund(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.refilled(key, time.Now())
	b.tokens = min(float64(k.burst), b.tokens+1)
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
