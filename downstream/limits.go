package downstream

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// limiter caps the clients of every transport together, and per client IP.
type limiter struct {
	max, perIP int
	trusted    []netip.Prefix // proxies whose X-Forwarded-For is believed

	mu    sync.Mutex
	total int                // guarded by mu
	byIP  map[netip.Addr]int // guarded by mu; only with perIP
}

func newLimiter(max, perIP int, trusted []netip.Prefix) *limiter {
	return &limiter{max: max, perIP: perIP, trusted: trusted, byIP: make(map[netip.Addr]int)}
}

// acquire takes a slot for a client at ip and reports whether there was
// one. Every successful acquire is followed by one release.
func (l *limiter) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return false
	}
	if l.perIP > 0 {
		if l.byIP[ip] >= l.perIP {
			return false
		}
		l.byIP[ip]++
	}
	l.total++
	return true
}

func (l *limiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP > 0 {
		if n := l.byIP[ip] - 1; n > 0 {
			l.byIP[ip] = n
		} else {
			delete(l.byIP, ip)
		}
	}
}

// clientIP returns the address of the client: the peer of the connection,
// or, when that peer is a trusted proxy, the address before the last
// trusted one in X-Forwarded-For (read right to left, so that a client
// cannot choose it by sending the header itself).
func (l *limiter) clientIP(r *http.Request) netip.Addr {
	ip := peerIP(r.RemoteAddr)
	if !l.isTrusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // a malformed hop: trust nothing before it
		}
		ip = hop.Unmap()
		if !l.isTrusted(ip) {
			return ip
		}
	}
	return ip
}

func (l *limiter) isTrusted(ip netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func peerIP(remoteAddr string) netip.Addr {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}
