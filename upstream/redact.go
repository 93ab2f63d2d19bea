package upstream

import (
	"cmp"
	"errors"
	"net/url"
	"slices"
	"strings"
)

const redacted = "REDACTED"

// Redact returns a URL safe to log: user information and every query value
// replaced by "REDACTED" (some feeds put a token in the user name). The fragment is dropped. A URL that does not parse
// yields a placeholder rather than its text.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL, " + redacted + ")"
	}
	return redactURL(u)
}

func redactURL(u *url.URL) string {
	r := *u
	if r.User != nil {
		r.User = url.User(redacted)
	}
	r.RawQuery = redactQuery(r.RawQuery)
	r.Fragment, r.RawFragment = "", ""
	return r.String()
}

// redactQuery keeps the keys of a raw query, in order, and replaces their
// values. A part without "=" may itself be a secret, so it is replaced whole.
func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if k, _, ok := strings.Cut(p, "="); ok {
			parts[i] = k + "=" + redacted
		} else if p != "" {
			parts[i] = redacted
		}
	}
	return strings.Join(parts, "&")
}

// redactor scrubs one upstream URL out of error messages. Errors from the
// handshake embed the URL as net/http saw it: with an http(s) scheme, the
// password replaced by "***" and the query intact.
type redactor struct {
	r *strings.Replacer // immutable
}

func newRedactor(rawURL string, u *url.URL) *redactor {
	safe := redactURL(u)
	full := []string{rawURL, u.String(), u.Redacted()}
	if _, ok := u.User.Password(); ok {
		// net/http's stripPassword, as used in a *url.Error.
		full = append(full, strings.Replace(u.String(), u.User.String()+"@", u.User.Username()+":***@", 1))
	}
	for _, f := range full {
		if rest, ok := strings.CutPrefix(f, "ws://"); ok {
			full = append(full, "http://"+rest)
		} else if rest, ok := strings.CutPrefix(f, "wss://"); ok {
			full = append(full, "https://"+rest)
		}
	}
	// Longest first, so a whole URL wins over a shorter variant of it.
	slices.SortFunc(full, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	full = slices.Compact(full)

	var pairs []string
	for _, f := range full {
		if f != "" && f != safe {
			pairs = append(pairs, f, safe)
		}
	}
	// Pieces, for a URL that reached an error in some other form.
	if u.RawQuery != "" {
		pairs = append(pairs, "?"+u.RawQuery, "?"+redactQuery(u.RawQuery))
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		_, escaped, _ := strings.Cut(u.User.String(), ":")
		pairs = append(pairs, ":"+escaped+"@", "@", ":"+pw+"@", "@")
	}
	return &redactor{r: strings.NewReplacer(pairs...)}
}

// err returns err with the URL's secrets scrubbed from its message. The
// result still matches the sentinels of err with errors.Is, but does not
// unwrap to it: the original message would leak through.
func (r *redactor) err(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: r.r.Replace(err.Error()), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
