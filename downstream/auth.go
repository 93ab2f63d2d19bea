package downstream

import (
	"crypto/elliptic"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// AuthOptions configure access control. With none of them set, every
// channel is public.
type AuthOptions struct {
	// Tokens are static bearer tokens; each opens every channel.
	Tokens []string
	// JWTSecret is an HS256 key.
	JWTSecret []byte
	// JWTPublicKey is a PEM-encoded RSA or ECDSA public key, for RS256 and
	// ES256 tokens.
	JWTPublicKey []byte
}

// JWTClaims are the claims ws2sse reads from a token: the standard ones
// (exp, nbf are checked) and "channels", a list of channel-name patterns in
// which "*" matches any run of characters.
type JWTClaims struct {
	Channels []string `json:"channels"`
	jwt.RegisteredClaims
}

// Authorizer decides whether a request may read a channel.
type Authorizer struct {
	tokens  [][]byte
	key     any // HS256 secret or public key; nil without JWT
	methods []string
}

// LoadAuthOptions reads the PEM file at publicKeyPath into the options.
func LoadAuthOptions(tokens []string, secret, publicKeyPath string) (AuthOptions, error) {
	o := AuthOptions{Tokens: tokens, JWTSecret: []byte(secret)}
	if publicKeyPath != "" {
		pem, err := os.ReadFile(publicKeyPath)
		if err != nil {
			return o, fmt.Errorf("failed to read the JWT public key: %w", err)
		}
		o.JWTPublicKey = pem
	}
	return o, nil
}

// NewAuthorizer returns an Authorizer for the options. It fails for a
// public key it cannot use (ES256 needs a P-256 key), and for a secret and
// a public key together.
func NewAuthorizer(o AuthOptions) (*Authorizer, error) {
	a := &Authorizer{}
	for _, t := range o.Tokens {
		a.tokens = append(a.tokens, []byte(t))
	}
	switch {
	case len(o.JWTSecret) > 0 && len(o.JWTPublicKey) > 0:
		return nil, errors.New("set a JWT secret or a JWT public key, not both")
	case len(o.JWTSecret) > 0:
		a.key, a.methods = o.JWTSecret, []string{"HS256"}
	case len(o.JWTPublicKey) > 0:
		if k, err := jwt.ParseRSAPublicKeyFromPEM(o.JWTPublicKey); err == nil {
			a.key, a.methods = k, []string{"RS256"}
		} else if k, err := jwt.ParseECPublicKeyFromPEM(o.JWTPublicKey); err == nil {
			if k.Curve != elliptic.P256() {
				return nil, fmt.Errorf("the JWT public key is on %s; ES256 needs P-256", k.Curve.Params().Name)
			}
			a.key, a.methods = k, []string{"ES256"}
		} else {
			return nil, errors.New("the JWT public key is neither an RSA nor an ECDSA public key in PEM form")
		}
	}
	return a, nil
}

// requestToken returns the request's token: the Authorization header's
// Bearer token, else the ws2sse_token cookie, else the access_token query
// parameter, since EventSource cannot set headers. An Authorization header
// of another scheme is not ours (a browser sends Basic credentials of the
// site with every request, EventSource too), so the others are looked at.
// Without credentials (a cross-site request let in by "*"), the cookie is
// not looked at.
func requestToken(r *http.Request, credentials bool) string {
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if tok = strings.TrimSpace(tok); tok != "" {
			return tok
		}
	}
	if c, err := r.Cookie("ws2sse_token"); credentials && err == nil && c.Value != "" {
		return c.Value
	}
	return r.URL.Query().Get("access_token")
}

// check returns 0 when the request may read the channel, else the status
// and a one-line reason that says nothing of the token itself.
func (a *Authorizer) check(r *http.Request, channel string, credentials bool) (int, string) {
	tok := requestToken(r, credentials)
	if tok == "" {
		return http.StatusUnauthorized, "missing token: send Authorization: Bearer, the ws2sse_token cookie or the access_token parameter"
	}
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare([]byte(tok), t) == 1 {
			return 0, ""
		}
	}
	if a.key == nil {
		return http.StatusUnauthorized, "invalid token"
	}
	var claims JWTClaims
	_, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return a.key, nil },
		jwt.WithValidMethods(a.methods))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return http.StatusUnauthorized, "invalid token: expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return http.StatusUnauthorized, "invalid token: not valid yet"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return http.StatusUnauthorized, "invalid token: bad signature"
	case err != nil:
		return http.StatusUnauthorized, "invalid token"
	}
	for _, p := range claims.Channels {
		if matchPattern(p, channel) {
			return 0, ""
		}
	}
	return http.StatusForbidden, "the token does not cover channel " + channel
}

// matchPattern reports whether name matches pattern, in which "*" matches
// any run of characters (including "/", so "ticker/*" covers every
// channel of the ticker template).
func matchPattern(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(name, mid)
		if i < 0 {
			return false
		}
		name = name[i+len(mid):]
	}
	return strings.HasSuffix(name, parts[len(parts)-1])
}
