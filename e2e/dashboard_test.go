package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// dashState is what a failed wait on the dashboard shows of it.
const dashState = `({
  poll: document.getElementById('poll-text').textContent,
  rows: [...document.querySelectorAll('#channels tbody tr')].map((tr) => tr.innerText),
  tail: document.getElementById('tail-path').textContent,
  tailState: document.getElementById('tail-state').textContent,
  stats: document.getElementById('tail-stats').textContent,
  note: document.getElementById('tail-note').textContent,
  events: [...document.querySelectorAll('#events li')].slice(0, 5).map((li) => li.innerText),
})`

// TestDashboard runs ws2sse -demo with a templated channel besides, and uses
// the dashboard as a person would: the demo channel is listed as connected,
// a templated channel opens from its form, the tails show events as they
// arrive, rendered as text, and pause and clear work. It leaves screenshots
// in $WS2SSE_SCREENSHOTS.
func TestDashboard(t *testing.T) {
	t.Parallel()
	p := newPage(t) // first: without a browser, the test stops here
	f := newFeed(t)
	s := startWS2SSE(t, fmt.Sprintf(`
[[channel]]
name = "ticker"
path = "/ticker/{symbol:[a-z0-9]{1,12}}"
url = "ws://%s/ws/{symbol}"
event_field = "type"
replay_on_connect = 10
`, f.host()), "-demo")

	checkDashboardHeaders(t, s.base)

	p.do("set the viewport", chromedp.EmulateViewport(1280, 800))
	p.navigate(s.base + "/")
	p.waitFor("the demo channel to be listed as connected",
		`document.querySelector('tr[data-channel="demo"] .badge')?.textContent === 'connected'`, dashState, 0)

	// A templated channel opens from its form.
	p.do("open ticker/btc from the form",
		chromedp.SendKeys(chromedp.CSS(`form[data-route="ticker"] input[name="symbol"]`), "btc"),
		chromedp.Click(chromedp.CSS(`form[data-route="ticker"] button[type="submit"]`)),
	)
	p.waitFor("the tail of /ticker/btc to open",
		`document.getElementById('tail-path').textContent === '/ticker/btc' && document.getElementById('tail-state').textContent === 'open'`,
		dashState, 0)
	btc := f.conn(t, "/ws/btc")
	btc.send(t, `{"type":"quote","symbol":"btc","bid":101.25,"ask":101.5}`)
	p.waitFor("the quote in the tail (named events are listened to once /channels lists their names)",
		`document.querySelector('#events li[data-kind="quote"]') !== null`, dashState, 0)
	p.waitFor("ticker/btc to be listed at its path",
		`document.querySelector('tr[data-channel="ticker/btc"]')?.dataset.path === '/ticker/btc'`, dashState, 0)

	// Data is text, never markup.
	const hostile = `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>bold?</b>`
	btc.send(t, hostile)
	p.waitFor("the hostile event in the tail", `document.querySelector('#events li[data-kind="message"]') !== null`, dashState, 0)
	shown := eval[string](p, `document.querySelector('#events li[data-kind="message"] .ev-data').textContent`)
	if shown != hostile {
		t.Errorf("the tail shows %q, want the data as text: %q", shown, hostile)
	}
	if n := eval[int](p, `document.querySelectorAll('#events img, #events script, #events b').length`); n != 0 {
		t.Errorf("event data became %d element(s) in the page", n)
	}
	if eval[bool](p, `window.pwned !== undefined`) {
		t.Error("event data ran as script")
	}

	// The demo channel: its tail fills, and the list shows its rate and
	// the tail as a client.
	p.do("choose the demo channel", chromedp.Click(chromedp.CSS(`tr[data-channel="demo"] button`)))
	p.waitFor("demo events in the tail",
		`document.getElementById('tail-path').textContent === '/demo' && document.querySelectorAll('#events li[data-kind="tick"][data-id]').length >= 5`,
		dashState, 0)
	p.waitFor("the demo channel's rate and client",
		`parseFloat(document.querySelector('tr[data-channel="demo"] .rate').textContent) > 0 &&
		 parseInt(document.querySelector('tr[data-channel="demo"] td[data-label="Clients"] .big').textContent, 10) >= 1`,
		dashState, 0)
	p.waitFor("a screenful of events", `document.querySelectorAll('#events li').length >= 14`, dashState, 0)
	saveScreenshots(t, p)

	// Pause holds new events back; clear empties the tail; resume shows
	// what came since.
	p.do("pause", chromedp.Click(chromedp.ID("tail-pause")))
	rows := eval[int](p, `document.querySelectorAll('#events li').length`)
	p.waitFor("events held while paused",
		`(m => m !== null && +m[1] >= 3)(document.getElementById('tail-stats').textContent.match(/paused, (\d+) new/))`, dashState, 0)
	if n := eval[int](p, `document.querySelectorAll('#events li').length`); n != rows {
		t.Errorf("paused tail went from %d to %d rows", rows, n)
	}
	p.do("clear", chromedp.Click(chromedp.ID("tail-clear")))
	if n := eval[int](p, `document.querySelectorAll('#events li').length`); n != 0 {
		t.Errorf("%d rows after clear, want 0", n)
	}
	p.do("resume", chromedp.Click(chromedp.ID("tail-pause")))
	p.waitFor("new events after resume", `document.querySelectorAll('#events li[data-kind="tick"]').length >= 2`, dashState, 0)
	if reconnects := eval[string](p, `document.getElementById('tail-stats').textContent`); !strings.Contains(reconnects, " 0 reconnects") {
		t.Errorf("tail stats %q, want no reconnect", reconnects)
	}

	// A paused tail keeps its rows when the channel shows a new event name;
	// on resume, the events of that name are replayed into it.
	p.do("choose ticker/btc again", chromedp.Click(chromedp.CSS(`tr[data-channel="ticker/btc"] button`)))
	p.waitFor("the tail of /ticker/btc with its replayed quote",
		`document.getElementById('tail-path').textContent === '/ticker/btc' && document.getElementById('tail-state').textContent === 'open' &&
		 document.querySelector('#events li[data-kind="quote"]') !== null`, dashState, 0)
	// A quote shown just before the pause: most likely after the last poll,
	// so it is among the rows a resync would take down and replay.
	btc.send(t, `{"type":"quote","symbol":"btc","bid":101.3,"ask":101.55}`)
	p.waitFor("the second quote in the tail", `document.querySelectorAll('#events li[data-kind="quote"]').length === 2`, dashState, 0)
	p.do("pause", chromedp.Click(chromedp.ID("tail-pause")))
	rows = eval[int](p, `document.querySelectorAll('#events li').length`)
	// A quote held back by the pause, which a poll then lists.
	btc.send(t, `{"type":"quote","symbol":"btc","bid":101.35,"ask":101.6}`)
	held := s.waitChannel(t, "ticker/btc", "the third quote listed", func(c channelInfo) bool { return c.Events == 4 })
	p.waitFor("the dashboard to list the third quote",
		`document.querySelector('tr[data-channel="ticker/btc"] code.id')?.textContent === `+jsString(held.LastEventID), dashState, 0)
	btc.send(t, `{"type":"trade","symbol":"btc","px":101.4}`)
	trade := s.waitChannel(t, "ticker/btc", "the trade listed", func(c channelInfo) bool { return slices.Contains(c.EventNames, "trade") })
	// The page learns the name in the poll that lists the trade's id.
	p.waitFor("the dashboard to list the trade",
		`document.querySelector('tr[data-channel="ticker/btc"] code.id')?.textContent === `+jsString(trade.LastEventID), dashState, 0)
	if n := eval[int](p, `document.querySelectorAll('#events li').length`); n != rows {
		t.Errorf("paused tail went from %d to %d rows when a new event name appeared", rows, n)
	}
	p.do("resume", chromedp.Click(chromedp.ID("tail-pause")))
	p.waitFor("the trade in the tail after resume", `document.querySelector('#events li[data-kind="trade"]') !== null`, dashState, 0)
	if n := eval[int](p, `document.querySelectorAll('#events li[data-kind="quote"]').length`); n != 3 {
		t.Errorf("%d quote rows after resume, want 3: each event once, the one held by the pause too", n)
	}

	if probs := p.consoleProblems(); len(probs) > 0 {
		t.Errorf("the page reported errors (a CSP refusal, a failed load, an exception):\n%s", strings.Join(probs, "\n"))
	}
}

// checkDashboardHeaders checks what the server sends with the page and its
// assets.
func checkDashboardHeaders(t *testing.T, base string) {
	t.Helper()
	for _, c := range []struct{ path, contentType, contains string }{
		{"/", "text/html; charset=utf-8", "<script src=\"app.js\""},
		{"/app.js", "text/javascript; charset=utf-8", "EventSource"},
		{"/app.css", "text/css; charset=utf-8", "prefers-color-scheme"},
	} {
		status, h, body := get(t, base+c.path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d, want 200 (is the dashboard mounted at /, /app.js and /app.css?)", c.path, status)
		}
		if got := h.Get("Content-Type"); got != c.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.contentType)
		}
		if got := h.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", c.path, got)
		}
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("GET %s: Content-Security-Policy %q, want default-src 'self' and nothing unsafe", c.path, csp)
		}
		if !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: body does not contain %q", c.path, c.contains)
		}
	}
	// Nothing from another origin: no external script, stylesheet or font.
	_, _, page := get(t, base+"/")
	for _, ext := range []string{"http://", "https://", "//"} {
		for _, attr := range []string{`src="` + ext, `href="` + ext} {
			if strings.Contains(page, attr) {
				t.Errorf("the page loads something from another origin: %s", attr)
			}
		}
	}
	if status, _, _ := get(t, base+"/no-such-page"); status != http.StatusNotFound {
		t.Errorf("GET /no-such-page: %d, want 404", status)
	}
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// saveScreenshots writes the dashboard as a laptop shows it, in light and
// dark, and as a phone shows it, to $WS2SSE_SCREENSHOTS, else to a
// directory removed after the test.
func saveScreenshots(t *testing.T, p *page) {
	t.Helper()
	dir := os.Getenv("WS2SSE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	save := func(name string) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, p.screenshot(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	p.do("scroll to the top and move the mouse off the links",
		chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 1, 1))
	save("dashboard.png")

	dark := emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}
	if _, err := chromedp.Call(p.ctx, emulation.SetEmulatedMedia, dark); err != nil {
		t.Fatalf("dark mode: %v", err)
	}
	save("dashboard-dark.png")
	if _, err := chromedp.Call(p.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatalf("light mode: %v", err)
	}

	p.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	p.do("scroll to the top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	save("dashboard-phone.png")
	p.do("laptop viewport", chromedp.EmulateViewport(1280, 800))
}
