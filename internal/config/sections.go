package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// config reads the whole document.
func (p *parser) config(doc map[string]any) *Config {
	cfg := Default()
	root := p.newTable(nil, doc)
	if t := root.sub("server"); t != nil {
		p.server(t, &cfg.Server)
	}
	if v, key, ok := root.take("auth"); ok {
		if t, ok := p.asTable(key, v); ok {
			cfg.Auth = p.auth(t)
		}
	}
	if t := root.sub("downstream"); t != nil {
		p.downstream(t, &cfg.Downstream)
	}
	if t := root.sub("upstream"); t != nil {
		p.upstream(t, &cfg.Upstream)
	}
	if v, key, ok := root.take("channel"); ok {
		cfg.Channels = p.channels(key, v, cfg.Upstream, cfg.Server.Dashboard)
	}
	if v, key, ok := root.take("cluster"); ok {
		if t, ok := p.asTable(key, v); ok {
			cfg.Cluster = p.cluster(t)
		}
	}
	root.done()
	return cfg
}

func (p *parser) server(t *table, s *Server) {
	if v, key, ok := t.text("listen"); ok {
		if ValidListen(v.val) {
			s.Listen = v.val
		} else {
			p.add(key, `must be host:port, like ":8080" or "127.0.0.1:8080", not %s`, v)
		}
	}
	if origins, key, ok := t.texts("cors_origins"); ok {
		s.CORSOrigins = nil
		for i, o := range origins {
			if o.val == "" {
				p.add(key.index(i), "empty origin")
				continue
			}
			s.CORSOrigins = append(s.CORSOrigins, o.val)
		}
	}
	t.integer("max_clients", &s.MaxClients, 1)
	t.integer("max_clients_per_ip", &s.MaxClientsPerIP, 0)
	if proxies, key, ok := t.texts("trusted_proxies"); ok {
		s.TrustedProxies = nil
		for i, v := range proxies {
			pfx, err := parsePrefix(v.val)
			if err != nil {
				p.add(key.index(i), "want an IP address or a CIDR prefix like \"10.0.0.0/8\", not %s", v)
				continue
			}
			s.TrustedProxies = append(s.TrustedProxies, pfx)
		}
	}
	t.oneOf("overload", &s.Overload, OverloadRetry, OverloadReject)
	t.duration("shutdown_grace", &s.ShutdownGrace, false)
	t.boolean("dashboard", &s.Dashboard)
	t.str("tls_cert", &s.TLSCert)
	t.str("tls_key", &s.TLSKey)
	t.done()

	switch {
	case s.TLSCert != "" && s.TLSKey == "":
		p.add(t.key.child("tls_cert"), "tls_key must be set too")
	case s.TLSCert == "" && s.TLSKey != "":
		p.add(t.key.child("tls_key"), "tls_cert must be set too")
	}
}

// parsePrefix parses a CIDR prefix, or a single address as a prefix of one.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// ValidListen reports whether s is host:port with a numeric port.
func ValidListen(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && strconv.FormatUint(n, 10) == port
}

func (p *parser) auth(t *table) *Auth {
	a := &Auth{}
	before := len(p.problems)
	if tokens, key, ok := t.texts("tokens"); ok {
		for i, tok := range tokens {
			switch {
			case tok.val == "":
				p.add(key.index(i), "empty token")
			case strings.IndexFunc(tok.val, isSpaceOrControl) >= 0:
				p.add(key.index(i), "a token must not contain spaces or control characters")
			default:
				a.Tokens = append(a.Tokens, tok.val)
			}
		}
	}
	t.str("jwt_secret", &a.JWTSecret)
	t.str("jwt_public_key", &a.JWTPublicKey)
	t.done()

	switch {
	case a.JWTSecret != "" && a.JWTPublicKey != "":
		p.add(t.blame("jwt_public_key"), "set jwt_secret or jwt_public_key, not both")
	case len(a.Tokens) == 0 && a.JWTSecret == "" && a.JWTPublicKey == "" && len(p.problems) == before:
		p.add(t.key, "no tokens, jwt_secret or jwt_public_key: only public channels could be opened")
	}
	return a
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

func (p *parser) downstream(t *table, d *Downstream) {
	t.duration("heartbeat", &d.Heartbeat, true)
	t.duration("retry", &d.Retry, false)
	t.integer("queue", &d.Queue, 1)
	t.duration("write_timeout", &d.WriteTimeout, true)
	t.done()
}

// upstream reads [upstream] or [channel.upstream] over u, which holds the
// defaults, and checks the keys that depend on each other where this table
// sets one of them.
func (p *parser) upstream(t *table, u *Upstream) {
	t.duration("ping_interval", &u.PingInterval, false)
	t.duration("pong_timeout", &u.PongTimeout, false)
	t.duration("read_timeout", &u.ReadTimeout, false)
	t.duration("backoff_min", &u.BackoffMin, true)
	t.duration("backoff_max", &u.BackoffMax, true)
	t.size("max_message", &u.MaxMessage)
	t.done()

	if (t.has("ping_interval") || t.has("pong_timeout")) && u.PingInterval > 0 {
		switch {
		case u.PongTimeout == 0:
			p.add(t.blame("pong_timeout", "ping_interval"), "pong_timeout must be more than 0s while pings are on")
		case u.PongTimeout >= u.PingInterval:
			p.add(t.blame("pong_timeout", "ping_interval"), "pong_timeout (%s) must be less than ping_interval (%s)", u.PongTimeout, u.PingInterval)
		}
	}
	if (t.has("backoff_min") || t.has("backoff_max")) && u.BackoffMin > u.BackoffMax {
		p.add(t.blame("backoff_min", "backoff_max"), "backoff_min (%s) must not be more than backoff_max (%s)", u.BackoffMin, u.BackoffMax)
	}
}

// nodeRE is what a cluster node name may be.
var nodeRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func (p *parser) cluster(t *table) *Cluster {
	c := &Cluster{Lease: 5 * time.Second, Prefix: "ws2sse"}
	if u, key, ok := t.text("redis"); ok {
		if msg := checkRedisURL(u); msg != "" {
			p.add(key, "%s", msg)
		} else {
			c.Redis = u.val
		}
	} else if !t.has("redis") {
		p.add(t.key.child("redis"), `missing: [cluster] needs the Redis URL, like "redis://localhost:6379/0"`)
	}
	if v, key, ok := t.text("node"); ok {
		if v.val == "" || nodeRE.MatchString(v.val) {
			c.Node = v.val // "": the default
		} else {
			p.add(key, "must be 1 to 128 of A-Z a-z 0-9 . _ : -, not %s", v)
		}
	}
	if t.duration("lease", &c.Lease, true) && c.Lease < time.Second {
		p.add(t.key.child("lease"), "must be at least 1s, got %s", c.Lease)
	}
	if v, key, ok := t.text("prefix"); ok {
		if nodeRE.MatchString(v.val) && !strings.ContainsAny(v.val, "{}") {
			c.Prefix = v.val
		} else {
			p.add(key, "must be 1 to 128 of A-Z a-z 0-9 . _ : -, not %s", v)
		}
	}
	t.done()
	return c
}

// checkRedisURL returns what is wrong with a Redis URL, without ever quoting
// it: it may hold a password.
func checkRedisURL(u text) string {
	parsed, err := url.Parse(u.val)
	if err != nil {
		return "not a valid URL"
	}
	switch parsed.Scheme {
	case "redis", "rediss":
		if parsed.Host == "" {
			return "missing host"
		}
		if db := strings.Trim(parsed.Path, "/"); db != "" {
			if _, err := strconv.ParseUint(db, 10, 16); err != nil {
				return "the path must be a database number, like /0"
			}
		}
	case "unix":
		if parsed.Path == "" {
			return "missing socket path: unix:///path/to/redis.sock"
		}
	case "":
		return "missing scheme: the URL must start with redis://, rediss:// or unix://"
	default:
		if u.env {
			return "the scheme must be redis, rediss or unix"
		}
		return fmt.Sprintf("the scheme must be redis, rediss or unix, not %q", parsed.Scheme)
	}
	return ""
}
