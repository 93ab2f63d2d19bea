package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"wss://feed.example.com/v1/stream", "wss://feed.example.com/v1/stream"},
		{"wss://user:secret@feed.example.com/v1", "wss://REDACTED@feed.example.com/v1"},
		{"ws://user@127.0.0.1:9000/x", "ws://REDACTED@127.0.0.1:9000/x"},
		{"wss://h/x?token=secret", "wss://h/x?token=REDACTED"},
		{"wss://h/x?b=secret&a=1&a=2&empty=", "wss://h/x?b=REDACTED&a=REDACTED&a=REDACTED&empty=REDACTED"},
		{"wss://h/x?secret", "wss://h/x?REDACTED"},
		{"wss://u:p%40ss@h/x?token=secret#frag-secret", "wss://REDACTED@h/x?token=REDACTED"},
		{"ws://u:secret@[::1/x?token=secret", "(unparsable URL, REDACTED)"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactorScrubsURLVariants(t *testing.T) {
	const raw = "wss://user:se%2Fcret@feed.example.com:8443/v1?token=secret&q=a+b"
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	r := newRedactor(raw, u)
	safe := "wss://REDACTED@feed.example.com:8443/v1?token=REDACTED&q=REDACTED"
	sentinel := errors.New("sentinel")
	for _, msg := range []string{
		raw,
		u.String(),
		u.Redacted(),
		// As net/http's client reports it, with the scheme it dialed.
		`Get "https://user:***@feed.example.com:8443/v1?token=secret&q=a+b": dial tcp: refused`,
		// Pieces only.
		`Get "http://user:***@feed.example.com:8443/v1?token=secret&q=a+b": x`,
		"query ?token=secret&q=a+b, userinfo user:se%2Fcret@ and user:se/cret@",
	} {
		err := r.err(fmt.Errorf("failed: %s: %w", msg, sentinel))
		got := err.Error()
		if strings.Contains(got, "cret") {
			t.Errorf("redacted %q to %q: still has the secret", msg, got)
		}
		if !errors.Is(err, sentinel) {
			t.Errorf("redacted error no longer matches its sentinel")
		}
		if errors.Unwrap(err) != nil {
			t.Errorf("redacted error unwraps to the original")
		}
		if strings.Contains(msg, "s://") && !strings.Contains(got, safe) {
			t.Errorf("redacted %q to %q, want %q in it", msg, got, safe)
		}
	}
	if r.err(nil) != nil {
		t.Error("err(nil) != nil")
	}
}
