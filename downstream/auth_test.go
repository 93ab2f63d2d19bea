package downstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/wstest"
)

// testKeys are the signing keys of the access-control tests, made once:
// an RSA key takes a while.
var testKeys = sync.OnceValue(func() (k struct {
	rsa, otherRSA *rsa.PrivateKey
	ec            *ecdsa.PrivateKey
	rsaPEM, ecPEM []byte
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.otherRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	k.rsaPEM = publicPEM(&k.rsa.PublicKey)
	k.ecPEM = publicPEM(&k.ec.PublicKey)
	return k
})

func publicPEM(pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

const (
	staticToken = "st4tic-t0ken-Zq8XwK"
	hsSecret    = "hs256-secret-for-tests-only"
)

// signJWT returns a token for the channels, valid for an hour unless
// edit changes its claims.
func signJWT(t *testing.T, m jwt.SigningMethod, key any, channels []string, edit func(*jwt.RegisteredClaims)) string {
	t.Helper()
	c := JWTClaims{Channels: channels, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   "user-1",
		IssuedAt:  jwt.NewNumericDate(time.Now()),
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}}
	if edit != nil {
		edit(&c.RegisteredClaims)
	}
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatalf("signing a %s token: %v", m.Alg(), err)
	}
	return s
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// authChannels are the channels of the access-control tests, each with
// its own upstream, by name: "ticker/btc", "prices" and "news". Every
// server made by serve shares them.
type authChannels struct {
	feeds map[string]*feed
	chans map[string]*bridge.Channel
}

func newAuthChannels(t *testing.T) *authChannels {
	t.Helper()
	a := &authChannels{feeds: map[string]*feed{}, chans: map[string]*bridge.Channel{}}
	for _, name := range []string{"ticker/btc", "prices", "news"} {
		f := newFeed(t)
		a.feeds[name] = f
		a.chans[name] = newChannel(t, f, bridge.Options{Name: name})
	}
	return a
}

// push sends data on a channel's upstream.
func (a *authChannels) push(t *testing.T, name, data string) {
	t.Helper()
	a.feeds[name].text(t, data)
}

// authServer serves the channels with access control: "/<name>" for each,
// and "/public/news" on a public route.
type authServer struct {
	*testServer
	logs   *wstest.Buffer
	opened atomic.Int64 // channels opened by the private route
}

func (a *authChannels) serve(t *testing.T, ao AuthOptions) *authServer {
	t.Helper()
	auth, err := NewAuthorizer(ao)
	if err != nil {
		t.Fatalf("NewAuthorizer: %v", err)
	}
	as := &authServer{logs: new(wstest.Buffer)}
	s := New(Options{Heartbeat: time.Minute, Auth: auth, Logger: wstest.Logger(t, as.logs)})
	name := func(r *http.Request) string { return strings.TrimPrefix(r.URL.Path, "/") }
	mux := http.NewServeMux()
	mux.Handle("/", s.Route(Route{
		Name: name,
		Open: func(r *http.Request) (*bridge.Channel, error) {
			as.opened.Add(1)
			if ch, ok := a.chans[name(r)]; ok {
				return ch, nil
			}
			return nil, ErrNotFound
		},
	}))
	mux.Handle("/public/news", s.Route(Route{
		Name:   func(*http.Request) string { return "news" },
		Open:   Static(a.chans["news"]),
		Public: true,
	}))
	as.testServer = serveHandler(t, s, mux)
	return as
}

// readable checks that an SSE stream and a WebSocket at path, opened with
// the request headers hdr (and the query in path), both deliver an event
// of the channel.
func (as *authServer) readable(t *testing.T, a *authChannels, channel, path string, hdr http.Header) {
	t.Helper()
	sc := as.openSSE(t, path, hdr)
	if sc.resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE %s: status %d, want 200", path, sc.resp.StatusCode)
	}
	checkSSEHeaders(t, sc.resp.Header)
	wc, resp, err := as.dialWSVia(t, as.Client(), path, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket %s: %v (status %d)", path, err, status)
	}
	a.push(t, channel, "to "+channel)
	sc.expectData(t, "to "+channel)
	expectText(t, wc, "to "+channel)
}

// refused checks that a request for path with the headers hdr is refused
// with status over both transports, with a one-line reason, before any
// channel is opened; it returns the SSE response's body.
func (as *authServer) refused(t *testing.T, path string, hdr http.Header, status int) string {
	t.Helper()
	opened := as.opened.Load()
	c := as.openSSE(t, path, hdr)
	resp := c.resp
	if resp.StatusCode != status {
		t.Fatalf("GET %s: status %d, want %d", path, resp.StatusCode, status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	body := string(b)
	if strings.Contains(resp.Header.Get("Content-Type"), "event-stream") {
		t.Errorf("GET %s: refused with a stream", path)
	}
	if line := strings.TrimSuffix(body, "\n"); line == "" || strings.Contains(line, "\n") {
		t.Errorf("GET %s: reason %q, want one line", path, body)
	}
	challenge := resp.Header.Get("WWW-Authenticate")
	if status == http.StatusUnauthorized && !strings.HasPrefix(challenge, "Bearer") {
		t.Errorf("GET %s: WWW-Authenticate %q on 401, want a Bearer challenge", path, challenge)
	}

	_, wresp, err := as.dialWSVia(t, as.Client(), path, hdr)
	if err == nil {
		t.Fatalf("WebSocket %s: accepted, want %d", path, status)
	}
	if wresp == nil || wresp.StatusCode != status {
		t.Fatalf("WebSocket %s: %v, want status %d", path, err, status)
	}
	if status == http.StatusUnauthorized && !strings.HasPrefix(wresp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WebSocket %s: WWW-Authenticate %q on 401", path, wresp.Header.Get("WWW-Authenticate"))
	}
	if n := as.opened.Load(); n != opened {
		t.Errorf("%s: a refused request opened a channel", path)
	}
	return body
}

// TestAuthTokenKinds: a static token and a JWT of each algorithm open a
// stream.
func TestAuthTokenKinds(t *testing.T) {
	k := testKeys()
	a := newAuthChannels(t)
	all := []string{"*"}
	for _, tc := range []struct {
		name string
		opts AuthOptions
		tok  func(t *testing.T) string
	}{
		{"static", AuthOptions{Tokens: []string{"other", staticToken}}, func(*testing.T) string { return staticToken }},
		{"HS256", AuthOptions{JWTSecret: []byte(hsSecret)}, func(t *testing.T) string {
			return signJWT(t, jwt.SigningMethodHS256, []byte(hsSecret), all, nil)
		}},
		{"RS256", AuthOptions{JWTPublicKey: k.rsaPEM}, func(t *testing.T) string {
			return signJWT(t, jwt.SigningMethodRS256, k.rsa, all, nil)
		}},
		{"ES256", AuthOptions{JWTPublicKey: k.ecPEM}, func(t *testing.T) string {
			return signJWT(t, jwt.SigningMethodES256, k.ec, all, nil)
		}},
		{"static beside a JWT key", AuthOptions{Tokens: []string{staticToken}, JWTPublicKey: k.ecPEM}, func(*testing.T) string { return staticToken }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := a.serve(t, tc.opts)
			as.readable(t, a, "ticker/btc", "/ticker/btc", bearer(tc.tok(t)))
			as.readable(t, a, "prices", "/prices", http.Header{"Authorization": {"bearer " + tc.tok(t)}})
		})
	}
}

// TestAuthRefused: each way a token can fail, and the status it gets.
func TestAuthRefused(t *testing.T) {
	k := testKeys()
	a := newAuthChannels(t)
	hs := a.serve(t, AuthOptions{Tokens: []string{staticToken}, JWTSecret: []byte(hsSecret)})
	rs := a.serve(t, AuthOptions{JWTPublicKey: k.rsaPEM})
	es := a.serve(t, AuthOptions{JWTPublicKey: k.ecPEM})
	static := a.serve(t, AuthOptions{Tokens: []string{staticToken}})
	secret := []byte(hsSecret)
	ticker := []string{"ticker/*"}
	expired := func(c *jwt.RegisteredClaims) {
		c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	}
	notYet := func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }

	for _, tc := range []struct {
		name   string
		as     *authServer
		hdr    http.Header
		status int
	}{
		{"missing", hs, nil, 401},
		{"empty bearer", hs, bearer(""), 401},
		{"not bearer", hs, http.Header{"Authorization": {"Basic " + staticToken}}, 401},
		{"garbage", hs, bearer("garbage.not-a.token"), 401},
		{"unknown static", static, bearer("st4tic-t0ken-Zq8XwL"), 401},
		{"JWT without a key", static, bearer(signJWT(t, jwt.SigningMethodHS256, secret, ticker, nil)), 401},
		{"expired", hs, bearer(signJWT(t, jwt.SigningMethodHS256, secret, ticker, expired)), 401},
		{"not yet valid", hs, bearer(signJWT(t, jwt.SigningMethodHS256, secret, ticker, notYet)), 401},
		{"bad signature HS256", hs, bearer(signJWT(t, jwt.SigningMethodHS256, []byte("another secret"), ticker, nil)), 401},
		{"bad signature RS256", rs, bearer(signJWT(t, jwt.SigningMethodRS256, k.otherRSA, ticker, nil)), 401},
		{"expired RS256", rs, bearer(signJWT(t, jwt.SigningMethodRS256, k.rsa, ticker, expired)), 401},
		{"tampered claims", rs, bearer(tamper(t, signJWT(t, jwt.SigningMethodRS256, k.rsa, []string{"prices"}, nil), ticker)), 401},
		// Algorithm confusion: an HS256 token whose secret is the server's
		// public key.
		{"HS256 signed with the RSA public key", rs, bearer(signJWT(t, jwt.SigningMethodHS256, k.rsaPEM, ticker, nil)), 401},
		{"HS256 signed with the EC public key", es, bearer(signJWT(t, jwt.SigningMethodHS256, k.ecPEM, ticker, nil)), 401},
		{"RS256 to an ES256 server", es, bearer(signJWT(t, jwt.SigningMethodRS256, k.rsa, ticker, nil)), 401},
		{"alg none", hs, bearer(signJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ticker, nil)), 401},
		{"another channel", hs, bearer(signJWT(t, jwt.SigningMethodHS256, secret, []string{"prices"}, nil)), 403},
		{"no channels", hs, bearer(signJWT(t, jwt.SigningMethodHS256, secret, nil, nil)), 403},
		{"another channel RS256", rs, bearer(signJWT(t, jwt.SigningMethodRS256, k.rsa, []string{"ticker/eth"}, nil)), 403},
		{"another channel ES256", es, bearer(signJWT(t, jwt.SigningMethodES256, k.ec, []string{"ticker"}, nil)), 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.as.refused(t, "/ticker/btc", tc.hdr, tc.status)
		})
	}
	wstest.Eventually(t, "no clients", func() bool {
		for _, ch := range a.chans {
			if clients(ch) != 0 {
				return false
			}
		}
		return true
	})
}

// tamper replaces the channels of a signed token, keeping its signature.
func tamper(t *testing.T, tok string, channels []string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	var c JWTClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	c.Channels = channels
	forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SigningString()
	if err != nil {
		t.Fatal(err)
	}
	return parts[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2]
}

// TestAuthTokenPlaces: the token can come in the Authorization header, the
// ws2sse_token cookie or the access_token query parameter, for both
// transports; the header comes first, then the cookie.
func TestAuthTokenPlaces(t *testing.T) {
	a := newAuthChannels(t)
	as := a.serve(t, AuthOptions{Tokens: []string{staticToken}, JWTSecret: []byte(hsSecret)})
	jwtTok := signJWT(t, jwt.SigningMethodHS256, []byte(hsSecret), []string{"prices"}, nil)
	cookie := func(tok string) http.Header { return http.Header{"Cookie": {"ws2sse_token=" + tok}} }

	for _, tok := range []string{staticToken, jwtTok} {
		t.Run("query", func(t *testing.T) {
			as.readable(t, a, "prices", "/prices?access_token="+tok, nil)
		})
		t.Run("cookie", func(t *testing.T) {
			as.readable(t, a, "prices", "/prices", cookie(tok))
		})
		t.Run("header over query", func(t *testing.T) {
			as.readable(t, a, "prices", "/prices?access_token=wrong", bearer(tok))
		})
		t.Run("cookie over query", func(t *testing.T) {
			as.readable(t, a, "prices", "/prices?access_token=wrong", cookie(tok))
		})
	}
	// Another scheme's credentials, such as the site's Basic ones that a
	// browser sends by itself, do not hide the token.
	basic := http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}
	t.Run("basic and query", func(t *testing.T) {
		as.readable(t, a, "prices", "/prices?access_token="+jwtTok, basic)
	})
	t.Run("basic and cookie", func(t *testing.T) {
		as.readable(t, a, "prices", "/prices", http.Header{"Authorization": basic["Authorization"], "Cookie": {"ws2sse_token=" + staticToken}})
	})
	t.Run("refused", func(t *testing.T) {
		as.refused(t, "/prices", basic, http.StatusUnauthorized)
		as.refused(t, "/prices?access_token=wrong", nil, http.StatusUnauthorized)
		as.refused(t, "/prices", cookie("wrong"), http.StatusUnauthorized)
		other := signJWT(t, jwt.SigningMethodHS256, []byte(hsSecret), []string{"news"}, nil)
		as.refused(t, "/prices?access_token="+other, nil, http.StatusForbidden)
		as.refused(t, "/prices", cookie(other), http.StatusForbidden)
	})
}

// TestAuthChannelPatterns: a JWT opens the channels its "channels" claim
// names, with "*" matching any run of characters.
func TestAuthChannelPatterns(t *testing.T) {
	a := newAuthChannels(t)
	as := a.serve(t, AuthOptions{JWTSecret: []byte(hsSecret)})
	for _, tc := range []struct {
		channels     []string
		open, closed []string // channel names
	}{
		{[]string{"ticker/*"}, []string{"ticker/btc"}, []string{"prices", "news", "ticker"}},
		{[]string{"*"}, []string{"ticker/btc", "prices", "news"}, nil},
		{[]string{"prices"}, []string{"prices"}, []string{"ticker/btc", "prices2", "news"}},
		{[]string{"ticker/btc", "news"}, []string{"ticker/btc", "news"}, []string{"prices", "ticker/eth"}},
		{[]string{"*/btc", "pri*s"}, []string{"ticker/btc", "prices"}, []string{"news", "ticker/eth"}},
	} {
		t.Run(strings.Join(tc.channels, ","), func(t *testing.T) {
			hdr := bearer(signJWT(t, jwt.SigningMethodHS256, []byte(hsSecret), tc.channels, nil))
			for _, name := range tc.open {
				as.readable(t, a, name, "/"+name, hdr)
			}
			for _, name := range tc.closed {
				as.refused(t, "/"+name, hdr, http.StatusForbidden)
			}
		})
	}
}

// TestAuthPublicRoute: a public route needs no token, while the others on
// the same server still do.
func TestAuthPublicRoute(t *testing.T) {
	a := newAuthChannels(t)
	as := a.serve(t, AuthOptions{Tokens: []string{staticToken}})
	as.readable(t, a, "news", "/public/news", nil)
	// A bad token on a public route is not an error either.
	as.readable(t, a, "news", "/public/news", bearer("wrong"))
	as.refused(t, "/news", nil, http.StatusUnauthorized)
	as.readable(t, a, "news", "/news", bearer(staticToken))
}

// TestAuthNoTokenInOutput: no part of any token, accepted or refused,
// appears in the server's logs or in what it sends.
func TestAuthNoTokenInOutput(t *testing.T) {
	k := testKeys()
	a := newAuthChannels(t)
	secret := []byte(hsSecret)
	hs := a.serve(t, AuthOptions{Tokens: []string{staticToken}, JWTSecret: secret})
	rs := a.serve(t, AuthOptions{JWTPublicKey: k.rsaPEM})
	st := a.serve(t, AuthOptions{Tokens: []string{staticToken}})

	good := []string{
		staticToken,
		signJWT(t, jwt.SigningMethodHS256, secret, []string{"prices"}, nil),
	}
	goodRS := signJWT(t, jwt.SigningMethodRS256, k.rsa, []string{"prices"}, nil)
	expired := func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute)) }
	bad := map[string]int{ // token: status
		"wr0ng-st4tic-Pq9": http.StatusUnauthorized,
		signJWT(t, jwt.SigningMethodHS256, []byte("nope"), []string{"prices"}, nil): http.StatusUnauthorized,
		signJWT(t, jwt.SigningMethodHS256, secret, []string{"prices"}, expired):     http.StatusUnauthorized,
		signJWT(t, jwt.SigningMethodHS256, secret, []string{"ticker/*"}, nil):       http.StatusForbidden,
	}

	var sent []string // every body the servers sent
	t.Run("accepted", func(t *testing.T) {
		for i, tok := range good {
			for _, place := range []struct {
				path string
				hdr  http.Header
			}{
				{"/prices", bearer(tok)},
				{"/prices?access_token=" + tok, nil},
				{"/prices", http.Header{"Cookie": {"ws2sse_token=" + tok}}},
			} {
				c := hs.stream(t, place.path, place.hdr)
				wc, _, err := hs.dialWSVia(t, hs.Client(), place.path, place.hdr)
				if err != nil {
					t.Fatalf("WebSocket: %v", err)
				}
				data := fmt.Sprintf("event %d", i)
				a.push(t, "prices", data)
				c.expectData(t, data)
				expectText(t, wc, data)
				c.resp.Body.Close()
				wc.CloseNow()
				sent = append(sent, c.raw.String())
			}
		}
		c := rs.stream(t, "/prices?access_token="+goodRS, nil)
		a.push(t, "prices", "rs")
		c.expectData(t, "rs")
		c.resp.Body.Close()
		sent = append(sent, c.raw.String())
	})
	t.Run("refused", func(t *testing.T) {
		for tok, status := range bad {
			sent = append(sent,
				hs.refused(t, "/prices", bearer(tok), status),
				hs.refused(t, "/prices?access_token="+tok, nil, status),
				hs.refused(t, "/prices", http.Header{"Cookie": {"ws2sse_token=" + tok}}, status))
		}
		sent = append(sent,
			rs.refused(t, "/prices", bearer(good[1]), http.StatusUnauthorized),
			st.refused(t, "/prices", bearer(good[1]), http.StatusUnauthorized),
			st.refused(t, "/prices?access_token=wr0ng-st4tic-Pq9", nil, http.StatusUnauthorized))
	})
	// The sessions log when they end.
	wstest.Eventually(t, "every session to be logged", func() bool {
		return strings.Count(hs.logs.String(), "client session ended") == 2*3*len(good) &&
			strings.Count(rs.logs.String(), "client session ended") == 1
	})

	secrets := []string{hsSecret}
	for _, tok := range append(append(good, goodRS), slices.Collect(maps.Keys(bad))...) {
		secrets = append(secrets, tok)
		if parts := strings.Split(tok, "."); len(parts) == 3 {
			secrets = append(secrets, parts[1], parts[2]) // claims, signature
		}
	}
	outputs := map[string]string{"HS256 log": hs.logs.String(), "RS256 log": rs.logs.String(), "static log": st.logs.String()}
	for i, b := range sent {
		outputs[fmt.Sprintf("response %d", i)] = b
	}
	for what, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s contains a token or part of one (%.12s…): %q", what, s, out)
			}
		}
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"prices", "prices", true},
		{"prices", "prices2", false},
		{"prices", "xprices", false},
		{"prices", "", false},
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"**", "x", true},
		{"ticker/*", "ticker/btc", true},
		{"ticker/*", "ticker/", true},
		{"ticker/*", "ticker/btc/usd", true},
		{"ticker/*", "ticker", false},
		{"ticker/*", "prices", false},
		{"ticker/*", "xticker/btc", false},
		{"*/btc", "ticker/btc", true},
		{"*/btc", "ticker/btcx", false},
		{"t*r/*", "ticker/eth", true},
		{"t*r/*", "tick/eth", false},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
		{"a*b*c", "aXbYbZc", true},
		{"*ab*ab", "ab", false},
		{"*ab*ab", "abab", true},
		{"*ab*ab", "aabab", true},
		{"ab*ba", "aba", false},
		{"ab*ba", "abba", true},
		{"TICKER/*", "ticker/btc", false},
		{"ticker/*", "ticker/bt\u00e9", true},
	} {
		if got := matchPattern(tc.pattern, tc.name); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// TestNewAuthorizer: keys that could never verify a token are refused when
// the server starts, not with every request.
func TestNewAuthorizer(t *testing.T) {
	k := testKeys()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]AuthOptions{
		"not PEM":            {JWTPublicKey: []byte("not a key")},
		"junk PEM":           {JWTPublicKey: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})},
		"P-384":              {JWTPublicKey: publicPEM(&p384.PublicKey)},
		"secret and key":     {JWTSecret: []byte(hsSecret), JWTPublicKey: k.rsaPEM},
		"private key as PEM": {JWTPublicKey: privatePEM(t, k.ec)},
	} {
		if _, err := NewAuthorizer(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, o := range map[string]AuthOptions{
		"RSA":    {JWTPublicKey: k.rsaPEM},
		"P-256":  {JWTPublicKey: k.ecPEM},
		"secret": {JWTSecret: []byte(hsSecret), Tokens: []string{staticToken}},
		"tokens": {Tokens: []string{staticToken}},
	} {
		if _, err := NewAuthorizer(o); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func privatePEM(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestAuthCookieNotForAnyOrigin: a browser sends its cookies with a
// WebSocket to any site, and there is no CORS check on WebSocket. So an
// origin let in only by "*" must not be served on the strength of the
// cookie (cross-site WebSocket hijacking); a listed origin may be, and any
// origin may present a token it holds itself.
func TestAuthCookieNotForAnyOrigin(t *testing.T) {
	a := newAuthChannels(t)
	auth, err := NewAuthorizer(AuthOptions{Tokens: []string{staticToken}})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Heartbeat: time.Minute, Auth: auth, CORSOrigins: []string{"*", "https://app.example"},
		Logger: wstest.Logger(t)})
	ts := serveHandler(t, s, s.Route(Route{
		Name: func(*http.Request) string { return "prices" },
		Open: Static(a.chans["prices"]),
	}))
	hdr := func(origin string) http.Header {
		return http.Header{"Origin": {origin}, "Cookie": {"ws2sse_token=" + staticToken}}
	}

	_, resp, err := ts.dialWSVia(t, ts.Client(), "/prices", hdr("https://evil.example"))
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WebSocket from a foreign origin with the cookie: %v, want 401", err)
	}
	sc := ts.openSSE(t, "/prices", hdr("https://evil.example"))
	if sc.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("SSE from a foreign origin with the cookie: status %d, want 401", sc.resp.StatusCode)
	}

	listed, resp, err := ts.dialWSVia(t, ts.Client(), "/prices", hdr("https://app.example"))
	if err != nil {
		t.Fatalf("WebSocket from a listed origin with the cookie: %v (%v)", err, resp)
	}
	own, resp, err := ts.dialWSVia(t, ts.Client(), "/prices?access_token="+staticToken,
		http.Header{"Origin": {"https://evil.example"}})
	if err != nil {
		t.Fatalf("WebSocket from a foreign origin with its own token: %v (%v)", err, resp)
	}
	a.push(t, "prices", "hello")
	expectText(t, listed, "hello")
	expectText(t, own, "hello")
}
