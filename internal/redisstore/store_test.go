package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/redisstore/redistest"
	"github.com/ws2sse/ws2sse/internal/wstest"
)

func TestMain(m *testing.M) {
	RouteLibraryLogs(zerolog.Nop())
	goleak.VerifyTestMain(m)
}

// waitFor bounds every wait on a condition.
const waitFor = wstest.WaitTimeout

func newStore(t testing.TB, srv *redistest.Server, node string) *Store {
	t.Helper()
	s, err := New(Options{
		URL: srv.URL(), Node: node, Prefix: "test",
		PingInterval: 50 * time.Millisecond,
		Logger:       wstest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestLease(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	a := newStore(t, srv, "a").Log("c", bridge.LogOptions{MaxLen: 10})
	b := newStore(t, srv, "b").Log("c", bridge.LogOptions{MaxLen: 10})

	if ok, _, err := a.Acquire(ctx, "a/1", time.Minute); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	ok, left, err := b.Acquire(ctx, "b/1", time.Minute)
	if ok || err != nil || left <= 50*time.Second || left > time.Minute {
		t.Errorf("Acquire of a held lease = %v, %s, %v; want false and about a minute left", ok, left, err)
	}
	if ok, err := b.Renew(ctx, "b/1", time.Minute); ok || err != nil {
		t.Errorf("Renew by another value = %v, %v", ok, err)
	}
	if err := b.Release(ctx, "b/1"); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := b.Acquire(ctx, "b/1", time.Minute); ok {
		t.Error("a Release by another value freed the lease")
	}
	if ok, err := a.Renew(ctx, "a/1", 200*time.Millisecond); !ok || err != nil {
		t.Fatalf("Renew = %v, %v", ok, err)
	}
	// Not renewed, the lease runs out and another node takes it.
	// (Had the renewal not shortened it to 200ms, the wait would end
	// long before the minute.)
	wstest.Eventually(t, "b to take the expired lease", func() bool {
		ok, _, err := b.Acquire(ctx, "b/1", time.Minute)
		return ok && err == nil
	})
	if ok, _ := a.Renew(ctx, "a/1", time.Minute); ok {
		t.Error("the old holder renewed a lease it lost")
	}
	if err := b.Release(ctx, "b/1"); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := a.Acquire(ctx, "a/2", time.Minute); !ok {
		t.Error("the released lease was not free")
	}

	// A lease taken again with the same value numbers its batches anew:
	// its first batch is not taken for a retry of the last one before.
	for i, data := range []string{"before", "after"} {
		if i > 0 {
			if ok, _, _ := a.Acquire(ctx, "a/2", time.Minute); !ok {
				t.Fatal("the released lease was not taken again")
			}
		}
		if ok, err := a.Append(ctx, "a/2", 1, []bridge.Record{{Name: "message", Data: []byte(data)}}); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := a.Release(ctx, "a/2"); err != nil {
			t.Fatal(err)
		}
	}
	recs, _, err := a.Last(ctx, 2)
	if err != nil || len(recs) != 2 || string(recs[0].Data) != "before" || string(recs[1].Data) != "after" {
		t.Errorf("Last = %+v, %v; want the first batch of each time the lease was taken", recs, err)
	}
}

func TestAppendReadLast(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	s := newStore(t, srv, "a")
	l := s.Log("c", bridge.LogOptions{MaxLen: 1000, TTL: time.Hour})
	if ok, _ := l.Append(ctx, "a/1", 1, []bridge.Record{{Name: "x", Data: []byte("x")}}); ok {
		t.Fatal("appended without the lease")
	}
	if _, _, err := l.Acquire(ctx, "a/1", time.Minute); err != nil {
		t.Fatal(err)
	}
	in := []bridge.Record{
		{Name: "trade", Data: []byte(`{"type":"trade"}`)},
		{Name: "message", Data: []byte{0, 1, 2, '\r', '\n', 0xff}, Binary: true},
		{State: true, Data: []byte(`{"state":"up"}`)},
		{Name: "message", Data: []byte{}},
	}
	if ok, err := l.Append(ctx, "a/1", 1, in); !ok || err != nil {
		t.Fatalf("Append = %v, %v", ok, err)
	}
	// The same batch again, as after a reply that was lost: nothing is
	// added twice.
	if ok, err := l.Append(ctx, "a/1", 1, in); !ok || err != nil {
		t.Fatalf("Append of the same batch = %v, %v", ok, err)
	}

	got, err := l.Read(ctx, "0-0", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("read %d records, want %d: %+v", len(got), len(in), got)
	}
	prev := ""
	for i, r := range got {
		w := in[i]
		if r.Name != w.Name || string(r.Data) != string(w.Data) || r.Binary != w.Binary || r.State != w.State {
			t.Errorf("record %d = %+v, want %+v", i, r, w)
		}
		if r.Prev != prev {
			t.Errorf("record %d: Prev %q, want %q", i, r.Prev, prev)
		}
		if !validID(r.ID) {
			t.Errorf("record %d: id %q", i, r.ID)
		}
		prev = r.ID
	}
	more, err := l.Read(ctx, got[1].ID, 1)
	if err != nil || len(more) != 1 || more[0].ID != got[2].ID {
		t.Errorf("Read after the second record, at most 1 = %+v, %v", more, err)
	}

	last, state, err := l.Last(ctx, 2)
	if err != nil || len(last) != 2 || last[0].ID != got[2].ID || last[1].ID != got[3].ID {
		t.Errorf("Last(2) = %+v, %v", last, err)
	}
	if string(state) != `{"state":"up"}` {
		t.Errorf("state %q", state)
	}
	if st, err := l.State(ctx); string(st) != `{"state":"up"}` || err != nil {
		t.Errorf("State = %q, %v", st, err)
	}
	if err := l.Release(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if st, err := l.State(ctx); st != nil || err != nil {
		t.Errorf("State after Release = %q, %v; want none", st, err)
	}

	// An empty log.
	empty := s.Log("empty", bridge.LogOptions{MaxLen: 10})
	if recs, st, err := empty.Last(ctx, 10); len(recs) != 0 || st != nil || err != nil {
		t.Errorf("Last of an empty log = %+v, %q, %v", recs, st, err)
	}
}

func validID(id string) bool {
	a, b, ok := strings.Cut(id, "-")
	return ok && a != "" && b != "" && strings.Trim(a+b, "0123456789") == ""
}

func TestReadWaitsAndCancels(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, "a")
	l := s.Log("wait", bridge.LogOptions{MaxLen: 10})
	ctx := t.Context()
	if _, _, err := l.Acquire(ctx, "a/1", time.Minute); err != nil {
		t.Fatal(err)
	}
	type result struct {
		recs []bridge.Record
		err  error
	}
	done := make(chan result, 1)
	go func() {
		recs, err := l.Read(ctx, "0-0", 10)
		done <- result{recs, err}
	}()
	time.Sleep(100 * time.Millisecond) // let it block
	if _, err := l.Append(ctx, "a/1", 1, []bridge.Record{{Name: "message", Data: []byte("late")}}); err != nil {
		t.Fatal(err)
	}
	var lastID string
	select {
	case r := <-done:
		if r.err != nil || len(r.recs) != 1 || string(r.recs[0].Data) != "late" {
			t.Fatalf("Read = %+v, %v", r.recs, r.err)
		}
		lastID = r.recs[0].ID
	case <-time.After(waitFor):
		t.Fatal("Read did not return the appended record")
	}

	cctx, cancel := context.WithCancel(ctx)
	go func() {
		_, err := l.Read(cctx, lastID, 10) // nothing after the last entry
		done <- result{nil, err}
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case r := <-done:
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("Read after cancel: %v", r.err)
		}
		if took := time.Since(start); took > readBlock+time.Second {
			t.Errorf("Read returned %s after cancel", took)
		}
	case <-time.After(waitFor):
		t.Fatal("Read did not return after cancel")
	}
}

func TestTrim(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	l := newStore(t, srv, "a").Log("trim", bridge.LogOptions{MaxLen: 100})
	if _, _, err := l.Acquire(ctx, "a/1", time.Minute); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		recs := make([]bridge.Record, 50)
		for j := range recs {
			recs[j] = bridge.Record{Name: "message", Data: fmt.Appendf(nil, "%d", i*50+j)}
		}
		if ok, err := l.Append(ctx, "a/1", uint64(i+1), recs); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	all, err := l.Read(ctx, "0-0", 10000)
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ keeps at least 100 and trims whole nodes: far fewer than
	// the 1500 appended.
	if len(all) < 100 || len(all) > 400 {
		t.Errorf("the log holds %d records, want about 100", len(all))
	}
	if string(all[len(all)-1].Data) != "1499" {
		t.Errorf("newest record %q", all[len(all)-1].Data)
	}
	// The oldest record kept names one that is gone: a reader that had
	// read only up to that one can tell it missed records.
	if all[0].Prev == "" || all[0].Prev == all[0].ID {
		t.Errorf("oldest record kept: Prev %q", all[0].Prev)
	}
}

func TestPresence(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	a := newStore(t, srv, "a").Log("p", bridge.LogOptions{MaxLen: 10})
	b := newStore(t, srv, "b").Log("p", bridge.LogOptions{MaxLen: 10})
	count := func() int {
		n, err := a.Presence(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("presence %d at the start", n)
	}
	if err := a.Present(ctx, "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Present(ctx, "b", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Errorf("presence %d, want 2", n)
	}
	wstest.Eventually(t, "b's presence to run out", func() bool { return count() == 1 })
	if err := a.Present(ctx, "a", 0); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Errorf("presence %d after a left, want 0", n)
	}
}

func TestKeysAreEscaped(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	s := newStore(t, srv, "a")
	names := []string{"t/a:b", "t/a%3Ab", "t/{x}", "t/x}:lease", "ticker/btc"}
	for i, name := range names {
		l := s.Log(name, bridge.LogOptions{MaxLen: 10})
		if _, _, err := l.Acquire(ctx, "a/1", time.Minute); err != nil {
			t.Fatal(err)
		}
		if ok, err := l.Append(ctx, "a/1", 1, []bridge.Record{{Name: "message", Data: fmt.Appendf(nil, "%d", i)}}); !ok || err != nil {
			t.Fatalf("%s: Append = %v, %v", name, ok, err)
		}
	}
	for i, name := range names {
		recs, _, err := s.Log(name, bridge.LogOptions{MaxLen: 10}).Last(ctx, 10)
		if err != nil || len(recs) != 1 || string(recs[0].Data) != fmt.Sprint(i) {
			t.Errorf("%s holds %+v, %v; want only its own record", name, recs, err)
		}
	}
	keys, err := s.rdb.Keys(ctx, "test:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	for _, k := range keys {
		// One hash tag per key, around the escaped name.
		if strings.Count(k, "{") != 1 || strings.Count(k, "}") != 1 {
			t.Errorf("key %q", k)
		}
	}
	if !slices.Contains(keys, "test:{t/a%3Ab}:log") || !slices.Contains(keys, "test:{t/a%253Ab}:log") {
		t.Errorf("keys %q", keys)
	}
}

func TestUnreachable(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, "a")
	wstest.Eventually(t, "the store to ping", func() bool {
		_, err := s.Unreachable()
		return err == nil && s.Ping(t.Context()) == nil
	})
	srv.Kill()
	wstest.Eventually(t, "the store to notice Redis is gone", func() bool {
		_, err := s.Unreachable()
		return err != nil
	})
	since, err := s.Unreachable()
	if since.IsZero() || time.Since(since) > waitFor {
		t.Errorf("unreachable since %s (%v)", since, err)
	}
	srv.Restart()
	wstest.Eventually(t, "the store to see Redis again", func() bool {
		_, err := s.Unreachable()
		return err == nil
	})
	// The scripts are loaded again into the new server.
	l := s.Log("after", bridge.LogOptions{MaxLen: 10})
	if ok, _, err := l.Acquire(t.Context(), "a/1", time.Minute); !ok || err != nil {
		t.Errorf("Acquire after a restart = %v, %v", ok, err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://user:secret@host:6379/0":    "redis://host:6379/0",
		"rediss://:secret@host/1?password=x": "rediss://host/1",
		"unix:///run/redis.sock?db=2":        "unix:///run/redis.sock",
	} {
		if got := Redact(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := New(Options{URL: "http://host"}); err == nil {
		t.Error("New accepted an http URL")
	}
}
