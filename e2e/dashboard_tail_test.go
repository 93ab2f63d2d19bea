package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// pollCounter counts the dashboard's finished polls of /channels in
// window.polls.
const pollCounter = `(() => {
  if (window.polls !== undefined) return;
  window.polls = 0;
  const fetch = window.fetch;
  window.fetch = (...args) => fetch(...args).then((r) => { setTimeout(() => { window.polls++; }, 50); return r; });
})()`

// TestDashboardTailNames: the tail of a templated channel whose value
// needs escaping shows its named events; a variable pattern in Go syntax
// that JavaScript reads otherwise is left to the server; upstream events
// named "open" and "error" are events like any other, not the stream's
// own, and JSON data is laid out without changing a number or a key. The page does not scroll back to the channel list on every poll,
// and closing the tail leaves the focus on its channel.
func TestDashboardTailNames(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	f := newFeed(t)
	s := startWS2SSE(t, fmt.Sprintf(`
[[channel]]
name = "ticker"
path = "/ticker/{symbol}"
url = "ws://%[1]s/ws/{symbol}"
event_field = "type"

[[channel]]
name = "letters"
path = '/l/{word:\pL+}'
url = "ws://%[1]s/ws/{word}"

[[channel]]
name = "feed"
path = "/feed"
url = "ws://%[1]s/ws/feed"
event_field = "type"
lazy = false
`, f.host()))
	p.do("set the viewport", chromedp.EmulateViewport(1280, 800))
	p.navigate(s.base + "/")
	p.run(pollCounter)

	// A value with a space, from the form.
	p.do("open ticker/a b from the form",
		chromedp.SendKeys(chromedp.CSS(`form[data-route="ticker"] input[name="symbol"]`), "a b"),
		chromedp.Click(chromedp.CSS(`form[data-route="ticker"] button[type="submit"]`)),
	)
	p.waitFor("the tail to open", `document.getElementById('tail-state').textContent === 'open'`, dashState, 0)
	f.conn(t, "/ws/a b").send(t, `{"type":"quote","n":1}`)
	p.waitFor("the quote in the tail, and the channel's row selected",
		`document.querySelector('#events li[data-kind="quote"]') !== null &&
		 document.querySelector('tr[data-channel="ticker/a b"]')?.classList.contains('selected')`, dashState, 0)

	// \pL is Go's (and JavaScript's only with the u flag).
	p.do("open letters/btc from the form",
		chromedp.SendKeys(chromedp.CSS(`form[data-route="letters"] input[name="word"]`), "btc"),
		chromedp.Click(chromedp.CSS(`form[data-route="letters"] button[type="submit"]`)),
	)
	p.waitFor("the tail of /l/btc", `document.getElementById('tail-path').textContent === '/l/btc'`, dashState, 0)

	// Events named "open" and "error" on /feed.
	p.run(`location.hash = '/feed'`)
	p.waitFor("the tail of /feed", `document.getElementById('tail-path').textContent === '/feed' && document.getElementById('tail-state').textContent === 'open'`, dashState, 0)
	up := f.conn(t, "/ws/feed")
	up.send(t, `{"type":"open","px":101.50,"k":1,"k":2}`)
	up.send(t, `{"type":"error","n":2}`)
	last := s.waitChannel(t, "feed", "both names listed", func(c channelInfo) bool { return len(c.EventNames) == 2 })
	p.waitFor("the dashboard to list the second event",
		`document.querySelector('tr[data-channel="feed"] code.id')?.textContent === `+jsString(last.LastEventID), dashState, 0)
	p.waitFor("both events in the tail",
		`document.querySelectorAll('#events li[data-kind="open"], #events li[data-kind="error"]').length === 2`, dashState, 0)
	// Two more polls: a stream of its own reopened or failing would show by then.
	p.run(`window.pollsAt = window.polls`)
	p.waitFor("two more polls", `window.polls >= window.pollsAt + 2`, dashState, 0)
	rows := eval[[]string](p, `[...document.querySelectorAll('#events li')].map((li) => li.dataset.kind + ' ' + (li.item ? li.item.data : ''))`)
	want := []string{`error {"type":"error","n":2}`, `open {"type":"open","px":101.50,"k":1,"k":2}`}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("tail rows %q, want %q", rows, want)
	}
	// Laid out for reading, with the numbers and keys as they came.
	shown := eval[string](p, `document.querySelector('#events li[data-kind="open"] .ev-data').textContent`)
	if want := `{ "type": "open", "px": 101.50, "k": 1, "k": 2 }`; shown != want {
		t.Errorf("the open event shows as %s, want %s", shown, want)
	}

	// The page stays where it was scrolled, though the focused channel
	// button is rebuilt by every poll.
	p.do("set a short viewport", chromedp.EmulateViewport(1280, 420))
	p.run(`document.querySelector('tr[data-channel="feed"] button').focus()`)
	p.run(`window.scrollTo(0, document.body.scrollHeight)`)
	y := eval[float64](p, `window.scrollY`)
	if y == 0 {
		t.Fatal("the page does not scroll: the viewport is too tall for this check")
	}
	p.run(`window.pollsAt = window.polls`)
	p.waitFor("two more polls", `window.polls >= window.pollsAt + 2`, dashState, 0)
	if got := eval[float64](p, `window.scrollY`); got != y {
		t.Errorf("a poll scrolled the page from %v to %v", y, got)
	}
	p.run(`(() => { const b = document.getElementById('tail-close'); b.focus(); b.click(); })()`) // as with the keyboard
	if got := eval[string](p, `document.activeElement?.dataset?.path || document.activeElement?.tagName`); got != "/feed" {
		t.Errorf("after closing the tail the focus is on %s, want the /feed channel's button", got)
	}
	if probs := p.consoleProblems(); len(probs) > 0 {
		t.Errorf("the page reported errors:\n%s", probs)
	}
}

// TestDashboardTailNoReplay: on a channel that keeps no replay, a new
// event name does not take down the rows shown (there is nothing to
// replay them from); the new name is heard from then on. A channel with
// more names than the server lists says so in the tail.
func TestDashboardTailNoReplay(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	f := newFeed(t)
	s := startWS2SSE(t, fmt.Sprintf(`
[[channel]]
name = "live"
path = "/live"
url = "ws://%s/ws/live"
event_field = "type"
lazy = false
replay = 0
`, f.host()))
	p.navigate(s.base + "/#/live")
	p.waitFor("the tail of /live", `document.getElementById('tail-state').textContent === 'open'`, dashState, 0)
	up := f.conn(t, "/ws/live")
	for i := 1; i <= 3; i++ {
		up.send(t, fmt.Sprintf(`{"n":%d}`, i))
	}
	up.send(t, `{"type":"trade","n":4}`)
	trade := s.waitChannel(t, "live", "the trade listed", func(c channelInfo) bool { return slices.Contains(c.EventNames, "trade") })
	p.waitFor("the dashboard to list the trade",
		`document.querySelector('tr[data-channel="live"] code.id')?.textContent === `+jsString(trade.LastEventID), dashState, 0)
	if n := eval[int](p, `document.querySelectorAll('#events li[data-kind="message"]').length`); n != 3 {
		t.Errorf("%d message rows once the trade's name was learned, want the 3 shown before", n)
	}
	up.send(t, `{"type":"trade","n":5}`)
	p.waitFor("the next trade in the tail", `document.querySelector('#events li[data-kind="trade"]') !== null`, dashState, 0)
	if got := eval[[]string](p, `[...document.querySelectorAll('#events li[data-kind="trade"]')].map((li) => li.item.data)`); len(got) != 1 || got[0] != `{"type":"trade","n":5}` {
		t.Errorf("trade rows %q, want the one sent after its name was learned", got)
	}

	// 33 names more: past the server's list of 32.
	for i := range 33 {
		up.send(t, fmt.Sprintf(`{"type":"kind%d"}`, i))
	}
	p.waitFor("the note on names not shown", `!document.getElementById('tail-note').hidden &&
		document.getElementById('tail-note').textContent.includes('more event names')`, dashState, 0)
}

// TestDashboardTailOutage: while the network between the browser and
// ws2sse is down, the browser tries again and again; the tail shows the
// outage once (a lost row, a reconnected row) and counts one reconnect.
func TestDashboardTailOutage(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	f := newFeed(t)
	s := startWS2SSE(t, feedChannel(f, "", `retry = "200ms"`, ""))
	r := newRelay(t, s.addr)
	p.navigate("http://" + r.addr() + "/#/feed")
	p.waitFor("the tail of /feed", `document.getElementById('tail-state').textContent === 'open'`, dashState, 0)

	r.block()
	for deadline := time.Now().Add(waitTimeout); r.refusedCount() < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections tried while the network was down, want 3 or more", r.refusedCount())
		}
	}
	r.unblock()
	p.waitFor("the tail open again", `document.getElementById('tail-state').textContent === 'open' &&
		document.querySelector('#events li.local.ok') !== null`, dashState, 0)
	if stats := eval[string](p, `document.getElementById('tail-stats').textContent`); !regexp.MustCompile(` 1 reconnect( ·|$)`).MatchString(stats) {
		t.Errorf("tail stats %q, want 1 reconnect", stats)
	}
	if n := eval[[]int](p, `[document.querySelectorAll('#events li.local.warn').length, document.querySelectorAll('#events li.local.ok').length]`); n[0] != 1 || n[1] != 1 {
		t.Errorf("%d lost and %d reconnected rows, want one of each", n[0], n[1])
	}
}

// TestDashboardTableHeld: the channel table, rebuilt by every poll, waits
// while a press on it is held (the click it makes opens the tail) and
// while text in it is selected (the selection stays).
func TestDashboardTableHeld(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	f := newFeed(t)
	s := startWS2SSE(t, feedChannel(f, "", "", ""))
	p.navigate(s.base + "/")
	p.run(pollCounter)
	p.waitFor("the feed channel listed", `document.querySelector('tr[data-channel="feed"] button') !== null`, dashState, 0)

	at := eval[[]float64](p, `(() => { const r = document.querySelector('tr[data-channel="feed"] button').getBoundingClientRect();
		return [r.x + r.width / 2, r.y + r.height / 2]; })()`)
	p.do("press on the feed channel", chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, at[0], at[1],
		chromedp.ButtonType(input.MouseButtonLeft), chromedp.ClickCount(1)))
	p.run(`window.pollsAt = window.polls`)
	p.waitFor("two polls while pressed", `window.polls >= window.pollsAt + 2`, dashState, 0)
	p.do("release", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, at[0], at[1],
		chromedp.ButtonType(input.MouseButtonLeft), chromedp.ClickCount(1)))
	p.waitFor("the tail of /feed", `document.getElementById('tail-path').textContent === '/feed'`, dashState, 0)

	p.run(`(() => { const r = document.createRange(); r.selectNodeContents(document.querySelector('tr[data-channel="feed"] .meta code'));
		getSelection().removeAllRanges(); getSelection().addRange(r); })()`)
	p.run(`window.pollsAt = window.polls`)
	p.waitFor("two polls while selected", `window.polls >= window.pollsAt + 2`, dashState, 0)
	if sel := eval[string](p, `getSelection().toString()`); sel != "/feed" {
		t.Errorf("the selection is %q after two polls, want /feed", sel)
	}
	// Once the selection is gone, the table catches up.
	p.run(`getSelection().removeAllRanges()`)
	up := f.conn(t, "/ws/feed")
	up.send(t, "after")
	p.waitFor("the event counted in the table", `document.querySelector('tr[data-channel="feed"] td[data-label="Events/s"] .sub').textContent === '1 total'`, dashState, 0)
}
