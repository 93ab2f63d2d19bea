package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The browser: one headless Chromium for the whole run, started by the first
// test that needs it. Each test gets a tab in a browser context of its own,
// so that no cookie, cache or connection is shared between tests.

// chromiumPath is the browser the tests drive; WS2SSE_CHROMIUM overrides it.
func chromiumPath() string {
	if p := os.Getenv("WS2SSE_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// waitTimeout bounds every wait on a condition in a page. It is generous: a
// loaded machine running -race must not flake.
const waitTimeout = 15 * time.Second

var browser struct {
	once sync.Once
	ctx  context.Context // the browser's chromedp context; tabs are opened under it
	err  error           // why the browser could not start
	stop func()          // ends the browser and removes its profile
}

func startBrowser() {
	path := chromiumPath()
	if _, err := os.Stat(path); err != nil {
		browser.err = fmt.Errorf("no browser at %s (set WS2SSE_CHROMIUM, or install Debian's chromium package)", path)
		return
	}
	profile, err := os.MkdirTemp("", "ws2sse-e2e-profile-")
	if err != nil {
		browser.err = err
		return
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1280, 800),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Do with no action starts the browser. Its context must be the
	// browser's own: the browser ends with the context of its first run.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		_ = os.RemoveAll(profile)
		browser.err = fmt.Errorf("failed to start %s: %w", path, err)
		return
	}
	browser.ctx = ctx
	browser.stop = func() {
		cancel()
		cancelAlloc()
		// The browser's helpers may still write to the profile for a
		// moment after it exits.
		for range 20 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func stopBrowser() {
	if browser.stop != nil {
		browser.stop()
	}
}

// page is one browser tab.
type page struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string // uncaught exceptions and errors the console reported; guarded by mu
}

// newPage opens a tab, closed when the test ends. Without a browser the test
// fails in CI (CI=true) and is skipped elsewhere.
func newPage(t *testing.T) *page {
	t.Helper()
	browser.once.Do(startBrowser)
	if browser.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser tests need Chromium: %v", browser.err)
		}
		t.Skipf("skipping the browser test: %v", browser.err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &page{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, p.onEvent); err != nil {
		t.Fatalf("failed to open a tab: %v", err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("failed to enable the console log: %v", err)
	}
	return p
}

// onEvent runs in the tab's event loop: it only records.
func (p *page) onEvent(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg = "uncaught: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			parts = append(parts, string(a.Value))
		}
		msg = "console.error: " + strings.Join(parts, " ")
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level != cdplog.EntryLevelError {
			return
		}
		msg = fmt.Sprintf("%s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	p.mu.Lock()
	p.problems = append(p.problems, msg)
	p.mu.Unlock()
}

// consoleProblems returns what the page reported as errors so far.
func (p *page) consoleProblems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

// do runs actions, failing the test on an error or after waitTimeout.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// navigate loads url and waits for it.
func (p *page) navigate(url string) {
	p.t.Helper()
	p.do("navigate to "+url, chromedp.Navigate(url))
}

// eval evaluates a JavaScript expression in the page, awaiting it when it
// is a promise, and decodes its JSON value.
func eval[T any](p *page, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// run evaluates JavaScript for its effect.
func (p *page) run(js string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](js, chromedp.EvalAwaitPromise)); err != nil {
		p.t.Fatalf("evaluating %s: %v", js, err)
	}
}

// waitFor polls the JavaScript expression cond in the page until it is
// truthy. When it is not within timeout (waitTimeout when 0), the test
// fails, showing the value of the expression state, which should say why.
func (p *page) waitFor(what, cond, state string, timeout time.Duration) {
	p.t.Helper()
	if timeout == 0 {
		timeout = waitTimeout
	}
	ctx, cancel := context.WithTimeout(p.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err == nil {
		return
	}
	if !errors.Is(err, chromedp.ErrPollingTimeout) {
		p.t.Fatalf("waiting for %s: %v", what, err)
	}
	msg := fmt.Sprintf("timed out after %s waiting for %s", timeout, what)
	if state != "" {
		sctx, scancel := context.WithTimeout(p.ctx, 5*time.Second)
		defer scancel()
		if s, err := chromedp.Run(sctx, chromedp.Evaluate[string]("JSON.stringify("+state+")")); err == nil {
			msg += "; page state: " + s
		}
	}
	if probs := p.consoleProblems(); len(probs) > 0 {
		msg += "; the page reported: " + strings.Join(probs, "; ")
	}
	p.t.Fatal(msg)
}

// screenshot captures the viewport as PNG.
func (p *page) screenshot() []byte {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	return b
}

// recorderJS defines record(name, url, names) in a page: it opens an
// EventSource on url, listens to the given event names, and keeps what it
// sees in streams[name]: the events, how often it opened, its errors, and
// every readyState it was seen in.
const recorderJS = `
window.streams = {};
window.record = function (name, url, names) {
  const r = { events: [], opens: 0, errors: 0, states: [], seen: {}, t0: performance.now() };
  const es = new EventSource(url);
  r.es = es;
  const note = () => { r.seen[es.readyState] = true; };
  note();
  r.watch = setInterval(note, 10);
  es.addEventListener('open', () => { r.opens++; note(); });
  es.addEventListener('error', () => { r.errors++; r.states.push(es.readyState); note(); });
  for (const n of names) {
    es.addEventListener(n, (e) => r.events.push({ type: e.type, data: e.data, id: e.lastEventId }));
  }
  streams[name] = r;
  return true;
};
true`

// recordFeed opens origin's /healthz in p, loads the recorder there and
// records /feed as the stream "a", listening to the event names (a
// JavaScript array), and waits until its EventSource is open.
func (p *page) recordFeed(origin, names string) {
	p.t.Helper()
	p.navigate(origin + "/healthz")
	p.run(recorderJS)
	p.run(`record("a", "/feed", ` + names + `)`)
	p.waitFor("the EventSource a to open", `streams.a.es.readyState === 1`, `streams.a`, 0)
}

// sseEvent is one event a recorder saw.
type sseEvent struct {
	Type string `json:"type"`
	Data string `json:"data"`
	ID   string `json:"id"`
}

// recorded returns the events the recorder name has seen.
func recorded(p *page, name string) []sseEvent {
	p.t.Helper()
	return eval[[]sseEvent](p, "streams["+jsString(name)+"].events")
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
