package main

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"time"
)

// The dashboard (SPEC section 9): one page, its script and its stylesheet,
// embedded in the binary. It needs nothing from outside: no CDN, no font,
// no build step.

//go:embed web
var webFiles embed.FS

// dashboardCSP allows the page its own script, stylesheet and streams, and
// nothing else: no inline script, no other origin, no framing.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; object-src 'none'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// dashboardHandler serves the dashboard page at "/" and its assets at
// "/app.js" and "/app.css"; any other path is 404.
func dashboardHandler() http.Handler {
	assets := map[string]asset{
		"/":        loadAsset("web/index.html", "text/html; charset=utf-8"),
		"/app.js":  loadAsset("web/app.js", "text/javascript; charset=utf-8"),
		"/app.css": loadAsset("web/app.css", "text/css; charset=utf-8"),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// ServeContent answers If-None-Match with 304 and HEAD without a body.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}

// loadAsset reads an embedded file; a missing one is a build mistake.
func loadAsset(name, contentType string) asset {
	b, err := webFiles.ReadFile(name)
	if err != nil {
		panic("dashboard: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return asset{body: b, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}
