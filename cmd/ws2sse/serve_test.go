package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/internal/wstest"
)

// TestLazyChannel: a lazy channel connects on its first client and
// disconnects linger after the last one leaves.
func TestLazyChannel(t *testing.T) {
	t.Parallel()
	const linger = 200 * time.Millisecond
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[[channel]]
name = "eager"
path = "/eager"
url = "ws://%[1]s/ws/eager"
lazy = false

[[channel]]
name = "lazy"
path = "/lazy"
url = "ws://%[1]s/ws/lazy"
subscribe = ['{"op":"sub","ch":"lazy"}']
linger = "%[2]s"
`, f.host(), linger))
	client := newHTTPClient(t)

	// The eager channel was opened before the lazy one and has connected;
	// the lazy one has no client and so no connection.
	f.connTo(t, "/ws/eager")
	if slices.Contains(f.urls(), "/ws/lazy") {
		t.Fatal("the lazy channel connected before any client came")
	}

	for round := 1; round <= 2; round++ {
		s := openSSE(t, client, in.url("/lazy"), nil)
		up := f.connTo(t, "/ws/lazy")
		if got := up.waitFrames(t, 1); got[0] != `{"op":"sub","ch":"lazy"}` {
			t.Errorf("round %d: subscribe frame %q", round, got[0])
		}
		msg := fmt.Sprintf(`{"round":%d}`, round)
		up.send(t, msg)
		if ev := s.next(t); ev.Data != msg {
			t.Errorf("round %d: got data %q, want %q", round, ev.Data, msg)
		}

		if round == 1 {
			// A second client comes and goes: the first one keeps the
			// connection. Nothing is to happen, so this waits a few lingers.
			s2 := openSSE(t, client, in.url("/lazy"), nil)
			s2.close()
			time.Sleep(3 * linger)
			if up.isClosed() {
				t.Fatal("the connection closed while a client remained")
			}
			up.send(t, `{"still":"up"}`)
			if ev := s.next(t); ev.Data != `{"still":"up"}` {
				t.Errorf("got data %q after the second client left", ev.Data)
			}
		}

		left := time.Now()
		s.close()
		up.waitClosed(t)
		took := time.Since(left)
		t.Logf("round %d: the connection closed %s after the last client left", round, took)
		if took < linger {
			t.Errorf("round %d: the connection closed %s after the last client left, before linger (%s)", round, took, linger)
		}
		if took > linger+5*time.Second {
			t.Errorf("round %d: the connection closed %s after the last client left, long after linger (%s)", round, took, linger)
		}
		if n := f.open(); n != 1 {
			t.Errorf("round %d: %d connections open once the lazy one closed, want 1 (the eager one)", round, n)
		}
	}
	var lazy int
	for _, u := range f.urls() {
		if u == "/ws/lazy" {
			lazy++
		}
	}
	if lazy != 2 {
		t.Errorf("%d connections for the lazy channel, want 2 (one per round)", lazy)
	}
}

// TestUpstreamFaults: when the feed goes away, clients stay connected and,
// once ws2sse has reconnected and subscribed again, get new events on the
// same stream with ids that keep increasing.
func TestUpstreamFaults(t *testing.T) {
	t.Parallel()
	faults := []struct {
		name     string
		upstream string // more [upstream] keys
		fault    func(*testing.T, *feedConn)
		// What the feed sees as the close status (0: not checked), and
		// what the "down" event's error says.
		wantStatus websocket.StatusCode
		wantErr    string
	}{
		{
			name:    "close frame",
			fault:   func(_ *testing.T, fc *feedConn) { fc.c.Close(websocket.StatusInternalError, "restarting") },
			wantErr: "closed",
		},
		{
			name:    "dropped connection",
			fault:   func(_ *testing.T, fc *feedConn) { fc.c.CloseNow() },
			wantErr: "closed",
		},
		{
			name:       "frame over max_message",
			upstream:   `max_message = "1KiB"`,
			fault:      func(t *testing.T, fc *feedConn) { fc.send(t, strings.Repeat("x", 1025)) },
			wantStatus: websocket.StatusMessageTooBig,
			wantErr:    "max_message",
		},
		{
			name:     "silent past read_timeout",
			upstream: "ping_interval = \"0s\"\nread_timeout = \"1s\"",
			fault:    func(*testing.T, *feedConn) {},
			wantErr:  "read_timeout",
		},
	}
	for _, ft := range faults {
		t.Run(ft.name, func(t *testing.T) {
			t.Parallel()
			f := newFeed(t)
			in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[upstream]
backoff_min = "50ms"
backoff_max = "200ms"
%s

[[channel]]
name = "feed"
path = "/feed"
url = "ws://%s/ws/feed?v=1"
subscribe = ['{"op":"auth"}', '{"op":"subscribe","args":["a","b"]}']
lazy = false
status_events = true
`, ft.upstream, f.host()))
			client := newHTTPClient(t)
			wantFrames := []string{`{"op":"auth"}`, `{"op":"subscribe","args":["a","b"]}`}

			up := f.conn(t, 1)
			if got := up.waitFrames(t, 2); !slices.Equal(got, wantFrames) {
				t.Errorf("subscribe frames %q, want %q", got, wantFrames)
			}
			s := openSSE(t, client, in.url("/feed"), nil)
			var ids []string
			for i := 1; i <= 3; i++ {
				msg := fmt.Sprintf(`{"before":%d}`, i)
				up.send(t, msg)
				ev := s.nextExcept(t, "upstream")
				if ev.Data != msg {
					t.Fatalf("got data %q, want %q", ev.Data, msg)
				}
				ids = append(ids, ev.ID)
			}

			ft.fault(t, up)
			if st := up.waitClosed(t); ft.wantStatus != 0 && st != ft.wantStatus {
				t.Errorf("the feed's connection closed with %v, want %v", st, ft.wantStatus)
			}

			// ws2sse reconnects to the same URL and subscribes again.
			up2 := f.conn(t, 2)
			if up2.url != "/ws/feed?v=1" {
				t.Errorf("reconnected to %q, want /ws/feed?v=1", up2.url)
			}
			if got := up2.waitFrames(t, 2); !slices.Equal(got, wantFrames) {
				t.Errorf("subscribe frames after the reconnect %q, want %q", got, wantFrames)
			}
			up2.send(t, `{"after":1}`)

			// The same stream tells the client the feed went down and came
			// back, then carries the new event.
			var states []string
			for {
				ev := s.next(t)
				if ev.Name != "upstream" {
					if ev.Data != `{"after":1}` {
						t.Fatalf("got data %q, want the event sent after the reconnect", ev.Data)
					}
					ids = append(ids, ev.ID)
					break
				}
				var st struct {
					State     string `json:"state"`
					Error     string `json:"error"`
					RetryInMs *int64 `json:"retryInMs"`
				}
				if err := json.Unmarshal([]byte(ev.Data), &st); err != nil {
					t.Fatalf("upstream event data %q: %v", ev.Data, err)
				}
				if st.State == "down" && (st.RetryInMs == nil || !strings.Contains(st.Error, ft.wantErr)) {
					t.Errorf("down event %s: want an error that mentions %q, and retryInMs", ev.Data, ft.wantErr)
				}
				states = append(states, st.State)
			}
			if !slices.Equal(states, []string{"down", "up"}) {
				t.Errorf("upstream states on the stream %q, want [down up]", states)
			}
			checkIDsIncrease(t, ids...)
			if n := f.count(); n != 2 {
				t.Errorf("%d connections to the feed, want 2", n)
			}
			if !in.logs.Contains(`"channel":"feed"`) || !in.logs.Contains(ft.wantErr) {
				t.Errorf("no log line names the channel and says %q", ft.wantErr)
			}
		})
	}
}

// TestBothTransports: a WebSocket client and an SSE client of the same URL
// get the same events in the same order, and ws2sse.v1 clients the same ids
// as SSE ones.
func TestBothTransports(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, `
[server]
shutdown_grace = "3s"
`+feedChannel(f))
	up := f.conn(t, 1)

	s := openSSE(t, newHTTPClient(t), in.url("/feed"), nil)
	raw := dialWS(t, "ws://"+in.addr+"/feed")
	v1 := dialWS(t, "ws://"+in.addr+"/feed", "ws2sse.v1")
	if v1.Subprotocol() != "ws2sse.v1" {
		t.Fatalf("subprotocol %q, want ws2sse.v1", v1.Subprotocol())
	}

	type frame struct {
		binary bool
		data   string
	}
	frames := []frame{
		{false, `{"type":"trade","px":1}`},
		{false, "plain text\nover two lines"},
		{true, "\x00\x01\xfe\xff binary"},
		{false, `{"type":"quote","bid":[1,2]}`},
		{false, `"a JSON string"`},
	}
	for _, fr := range frames {
		if fr.binary {
			up.sendBinary(t, []byte(fr.data))
		} else {
			up.send(t, fr.data)
		}
	}
	for i, fr := range frames {
		// A WebSocket client written for the feed gets its frames unchanged.
		typ, b := readWS(t, raw)
		wantTyp := websocket.MessageText
		if fr.binary {
			wantTyp = websocket.MessageBinary
		}
		if typ != wantTyp || string(b) != fr.data {
			t.Errorf("frame %d on WebSocket: %v %q, want %v %q", i, typ, b, wantTyp, fr.data)
		}

		// SSE carries the same payload; a binary one in base64.
		ev := s.next(t)
		wantData := fr.data
		if fr.binary {
			wantData = base64.StdEncoding.EncodeToString([]byte(fr.data))
		}
		if ev.Data != wantData {
			t.Errorf("frame %d on SSE: data %q, want %q", i, ev.Data, wantData)
		}

		// ws2sse.v1 carries the id and event name SSE has.
		_, b = readWS(t, v1)
		var m struct {
			ID    string          `json:"id"`
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("frame %d on ws2sse.v1: %q: %v", i, b, err)
		}
		if m.ID != ev.ID || m.Event != ev.Name {
			t.Errorf("frame %d: ws2sse.v1 id %q event %q, SSE id %q event %q", i, m.ID, m.Event, ev.ID, ev.Name)
		}
		var wantJSON []byte
		switch {
		case fr.binary:
			wantJSON, _ = json.Marshal(base64.StdEncoding.EncodeToString([]byte(fr.data)))
		case json.Valid([]byte(fr.data)):
			wantJSON = []byte(fr.data)
		default:
			wantJSON, _ = json.Marshal(fr.data)
		}
		if string(m.Data) != string(wantJSON) {
			t.Errorf("frame %d: ws2sse.v1 data %s, want %s", i, m.Data, wantJSON)
		}
	}

	// The WebSocket downstream is read-only: a message closes it with 1008.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := raw.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_, _, err := raw.Read(ctx)
	if st := websocket.CloseStatus(err); st != websocket.StatusPolicyViolation {
		t.Errorf("after a client message: %v, want close status %v", err, websocket.StatusPolicyViolation)
	}
	// The other clients are not affected.
	up.send(t, "after")
	if ev := s.next(t); ev.Data != "after" {
		t.Errorf("SSE: data %q, want after", ev.Data)
	}
	if _, b := readWS(t, v1); !strings.Contains(string(b), `"data":"after"`) {
		t.Errorf("ws2sse.v1: %s, want the event after", b)
	}
}

// TestResume: a client that comes back with the id it saw last gets exactly
// the events after it, and one with an unknown id is told of the gap.
func TestResume(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, `
[server]
shutdown_grace = "3s"
`+feedChannel(f, `replay = 100`))
	client := newHTTPClient(t)
	up := f.conn(t, 1)

	first := openSSE(t, client, in.url("/feed"), nil)
	var seen []sse.Event
	for i := 1; i <= 3; i++ {
		up.send(t, fmt.Sprintf("e%d", i))
		seen = append(seen, first.next(t))
	}

	byHeader := openSSE(t, client, in.url("/feed"), http.Header{"Last-Event-Id": {seen[0].ID}})
	byQuery := openSSE(t, client, in.url("/feed?lastEventId="+seen[1].ID), nil)
	unknown := openSSE(t, client, in.url("/feed"), http.Header{"Last-Event-Id": {"bogus"}})
	up.send(t, "e4")
	seen = append(seen, first.next(t))

	check := func(name string, s *sseStream, want []sse.Event) {
		t.Helper()
		for _, w := range want {
			if ev := s.next(t); ev != w {
				t.Errorf("%s: got %+v, want %+v", name, ev, w)
			}
		}
	}
	check("Last-Event-ID", byHeader, seen[1:])
	check("lastEventId", byQuery, seen[2:])

	gap := unknown.next(t)
	var gd struct{ LastEventID, Next string }
	if err := json.Unmarshal([]byte(gap.Data), &gd); gap.Name != "gap" || err != nil ||
		gd.LastEventID != "bogus" || gd.Next != seen[0].ID {
		t.Errorf("unknown id: got %+v, want a gap event from bogus to %s", gap, seen[0].ID)
	}
	check("unknown id", unknown, seen)
}

// TestDemo: -demo needs no file and serves a live feed at /demo.
func TestDemo(t *testing.T) {
	t.Parallel()
	in := startRun(t, "-demo", "-listen", "127.0.0.1:0")
	client := newHTTPClient(t)

	resp, err := client.Get(in.url("/healthz"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d %q, want 200", resp.StatusCode, body)
	}

	s := openSSE(t, client, in.url("/demo"), nil)
	var ticks []string
	for n := 0; len(ticks) < 2; n++ {
		if n == 100 {
			t.Fatal("no tick among 100 events")
		}
		ev := s.next(t)
		if ev.Name != "tick" {
			continue
		}
		var d struct {
			Type  string  `json:"type"`
			Price float64 `json:"price"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.Type != "tick" || d.Price <= 0 {
			t.Errorf("tick data %q: want JSON with \"type\":\"tick\" and a price", ev.Data)
		}
		if ev.ID == "" {
			t.Error("a tick has no id")
		}
		ticks = append(ticks, ev.ID)
	}
	checkIDsIncrease(t, ticks...)
}

// TestHeaderLimits: request headers over 8 KiB are refused with 431; ones
// under it are served.
func TestHeaderLimits(t *testing.T) {
	t.Parallel()
	in := startRun(t, "-demo", "-listen", "127.0.0.1:0")
	req := func(n int) string {
		return "GET /healthz HTTP/1.1\r\nHost: " + in.addr + "\r\nX-Big: " + strings.Repeat("a", n) +
			"\r\nConnection: close\r\n\r\n"
	}
	if resp := rawRequest(t, in.addr, req(7<<10)); resp.StatusCode != http.StatusOK {
		t.Errorf("7 KiB of headers: status %d, want 200", resp.StatusCode)
	}
	if resp := rawRequest(t, in.addr, req(9<<10)); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("9 KiB of headers: status %d, want 431", resp.StatusCode)
	}
}

// TestSlowHeaders: a client that takes more than 5 s to send its headers is
// disconnected. It sends a byte at a time, never finishing.
func TestSlowHeaders(t *testing.T) {
	t.Parallel()
	in := startRun(t, "-demo", "-listen", "127.0.0.1:0")
	start := time.Now()
	c, err := net.DialTimeout("tcp", in.addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			return
		}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-trickled }()

	_ = c.SetReadDeadline(time.Now().Add(waitTimeout + 5*time.Second))
	got, err := io.ReadAll(c)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("still connected after %s", took)
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Errorf("got %q, want the connection closed", got)
	}
	t.Logf("disconnected after %s (%v)", took, err)
	if took < 4500*time.Millisecond || took > 8*time.Second {
		t.Errorf("disconnected after %s, want after about 5s", took)
	}
}

// TestClientLimits: a client over server.max_clients or
// server.max_clients_per_ip is turned away: an SSE client with an overload
// event and a long retry, a WebSocket client with 503 and Retry-After.
func TestClientLimits(t *testing.T) {
	t.Parallel()
	for _, limit := range []string{"max_clients", "max_clients_per_ip"} {
		t.Run(limit, func(t *testing.T) {
			t.Parallel()
			f := newFeed(t)
			in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"
%s = 1
`, limit)+feedChannel(f))
			client := newHTTPClient(t)
			up := f.conn(t, 1)
			first := openSSE(t, client, in.url("/feed"), nil)

			resp, second := getSSE(t, client, in.url("/feed"), nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("a client over %s: status %d, want 200 and an overload event", limit, resp.StatusCode)
			}
			checkOverload(t, second)
			wsResp := rawRequest(t, in.addr, "GET /feed HTTP/1.1\r\nHost: "+in.addr+
				"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			checkRetryAfter(t, "WebSocket over "+limit, wsResp)

			// The client within the limit is served as before.
			up.send(t, "still here")
			if ev := first.next(t); ev.Data != "still here" {
				t.Errorf("the first client got %q", ev.Data)
			}

			// Once it leaves, its place is free.
			first.close()
			probe := 0
			wstest.Eventually(t, "room for a new client", func() bool {
				_, s := getSSE(t, client, in.url("/feed"), nil)
				defer s.close()
				probe++
				msg := fmt.Sprintf("probe %d", probe)
				up.send(t, msg)
				it := s.nextItem(t)
				if it.err == nil && it.ev.Data == msg {
					return true
				}
				if it.err != nil || it.ev.Name != "overload" {
					t.Fatalf("a new client got %+v", it)
				}
				return false
			})
		})
	}
}

// TestTLS: with server.tls_cert and server.tls_key, ws2sse serves HTTPS,
// and HTTP/2 with it.
func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSignedCert(t)
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"
tls_cert = %q
tls_key = %q
`, certFile, keyFile)+feedChannel(f))
	up := f.conn(t, 1)

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	s := openSSE(t, client, "https://"+in.addr+"/feed", nil)
	if s.resp.TLS == nil || s.resp.ProtoMajor != 2 {
		t.Errorf("stream served over %s, TLS %v; want HTTP/2 over TLS", s.resp.Proto, s.resp.TLS != nil)
	}
	up.send(t, "secure")
	if ev := s.next(t); ev.Data != "secure" {
		t.Errorf("got %q, want secure", ev.Data)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key, and
// returns their paths and a pool that trusts the certificate.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ws2sse test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestShutdownWaitsForClients: shutdown ends every client's stream, over
// either transport, before ws2sse returns, and within shutdown_grace even
// when a WebSocket client does not answer the close handshake.
func TestShutdownWaitsForClients(t *testing.T) {
	t.Parallel()
	const grace = 2 * time.Second
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "%s"
`, grace)+feedChannel(f))
	up := f.conn(t, 1)
	s := openSSE(t, newHTTPClient(t), in.url("/feed"), nil)
	// This client reads one message, then nothing: it never answers the
	// close handshake.
	deaf := dialWS(t, "ws://"+in.addr+"/feed")
	up.send(t, "hello")
	if _, b := readWS(t, deaf); string(b) != "hello" {
		t.Fatalf("got %q, want hello", b)
	}
	s.next(t)

	start := time.Now()
	code := in.stop(t)
	took := time.Since(start)
	t.Logf("run returned %s after the shutdown began", took)
	if code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	if took > grace+time.Second {
		t.Errorf("run returned %s after the shutdown began, want within shutdown_grace (%s)", took, grace)
	}
	for _, transport := range []string{"sse", "websocket"} {
		if !in.logs.Contains(`"transport":"` + transport + `"`) {
			t.Errorf("run returned before the %s client's handler had ended (no line logged for it)", transport)
		}
	}
	s.end(t)
}

// TestCredentialsNeverLeak: the credentials of a feed, in its URL, headers
// and subscribe frames, reach the feed and nothing else: no log line, even
// at trace level and through failures, no client stream, no endpoint.
func TestCredentialsNeverLeak(t *testing.T) {
	t.Parallel()
	secrets := []string{"pw-5e3c7a", "tok-9b1d44", "hdr-27ac90", "sub-c0ffee"}
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[upstream]
backoff_min = "50ms"
backoff_max = "100ms"

[[channel]]
name = "feed"
path = "/feed"
url = "ws://feeduser:pw-5e3c7a@%s/ws/feed?token=tok-9b1d44"
headers = { Authorization = "Bearer hdr-27ac90" }
subscribe = ['{"op":"auth","key":"sub-c0ffee"}']
lazy = false
status_events = true

[[channel]]
name = "refused"
path = "/refused"
url = "ws://feeduser:pw-5e3c7a@127.0.0.1:1/ws?token=tok-9b1d44"
headers = { Authorization = "Bearer hdr-27ac90" }
subscribe = ['{"op":"auth","key":"sub-c0ffee"}']
lazy = false
status_events = true
`, f.host()), "-log-level", "trace")
	client := newHTTPClient(t)
	leaks := func(where, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the credential %s: %s", where, s, text)
			}
		}
	}

	// The feed gets every credential.
	up := f.conn(t, 1)
	if got := up.hdr.Get("Authorization"); got != "Bearer hdr-27ac90" {
		t.Errorf("the feed got Authorization %q", got)
	}
	if got := up.query.Get("token"); got != "tok-9b1d44" {
		t.Errorf("the feed got token %q", got)
	}
	if got := up.waitFrames(t, 1); got[0] != `{"op":"auth","key":"sub-c0ffee"}` {
		t.Errorf("the feed got the subscribe frame %q", got[0])
	}

	// A client sees the feed fail and come back; another sees a feed that
	// refuses connections.
	s := openSSE(t, client, in.url("/feed"), nil)
	up.send(t, "before")
	if ev := s.nextExcept(t, "upstream"); ev.Data != "before" {
		t.Fatalf("got %q, want before", ev.Data)
	}
	up.c.CloseNow()
	f.conn(t, 2).send(t, "after")
	for {
		ev := s.next(t)
		leaks("an event", ev.Data)
		if ev.Data == "after" {
			break
		}
	}
	refused := openSSE(t, client, in.url("/refused"), nil)
	for range 2 {
		ev := refused.next(t)
		if ev.Name != "upstream" || !strings.Contains(ev.Data, `"down"`) {
			t.Errorf("on a refused feed got %+v, want upstream down events", ev)
		}
		leaks("an event", ev.Data)
	}
	// And a WebSocket client.
	ws := dialWS(t, "ws://"+in.addr+"/feed", "ws2sse.v1")
	f.conn(t, 2).send(t, "to ws")
	for {
		_, b := readWS(t, ws)
		leaks("a WebSocket message", string(b))
		if strings.Contains(string(b), "to ws") {
			break
		}
	}

	for _, path := range []string{"/", "/channels", "/readyz", "/metrics", "/healthz"} {
		resp, err := client.Get(in.url(path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		leaks(path, string(body))
	}

	in.stop(t)
	lines := in.logs.Lines()
	if len(lines) < 10 {
		t.Errorf("only %d log lines at trace level", len(lines))
	}
	for _, l := range lines {
		leaks("a log line", l)
	}
}

// TestOrigins: server.cors_origins decides which pages of other origins may
// read a stream, over SSE (CORS) and WebSocket (Origin check); a page of the
// server's own origin always may.
func TestOrigins(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	for _, tt := range []struct {
		origins   string
		origin    string
		allowed   bool
		wantACAO  string // Access-Control-Allow-Origin on SSE
		wantCreds bool   // Access-Control-Allow-Credentials: true
	}{
		{origins: `["https://app.example.com"]`, origin: app, allowed: true, wantACAO: app, wantCreds: true},
		{origins: `["https://app.example.com"]`, origin: "https://evil.example.com", allowed: false},
		{origins: `["https://app.example.com"]`, origin: "same", allowed: true},
		{origins: `[]`, origin: app, allowed: false},
		{origins: `["*"]`, origin: "https://any.example.org", allowed: true, wantACAO: "*"},
	} {
		t.Run(tt.origins+" "+tt.origin, func(t *testing.T) {
			t.Parallel()
			f := newFeed(t)
			in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"
cors_origins = %s
`, tt.origins)+feedChannel(f))
			origin := tt.origin
			if origin == "same" {
				origin = "http://" + in.addr
			}
			hdr := http.Header{"Origin": {origin}}

			resp, _ := getSSE(t, newHTTPClient(t), in.url("/feed"), hdr)
			switch {
			case !tt.allowed && resp.StatusCode != http.StatusForbidden:
				t.Errorf("SSE from %s: status %d, want 403", origin, resp.StatusCode)
			case tt.allowed && resp.StatusCode != http.StatusOK:
				t.Errorf("SSE from %s: status %d, want 200", origin, resp.StatusCode)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.wantACAO {
				t.Errorf("SSE from %s: Access-Control-Allow-Origin %q, want %q", origin, got, tt.wantACAO)
			}
			if got := resp.Header.Get("Access-Control-Allow-Credentials") == "true"; got != tt.wantCreds {
				t.Errorf("SSE from %s: Access-Control-Allow-Credentials %v, want %v", origin, got, tt.wantCreds)
			}

			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			c, wsResp, err := websocket.Dial(ctx, "ws://"+in.addr+"/feed", &websocket.DialOptions{HTTPHeader: hdr})
			if err == nil {
				defer c.CloseNow()
			}
			switch {
			case tt.allowed && err != nil:
				t.Errorf("WebSocket from %s: %v, want it accepted", origin, err)
			case !tt.allowed && (err == nil || wsResp == nil || wsResp.StatusCode != http.StatusForbidden):
				t.Errorf("WebSocket from %s: accepted or not refused with 403 (%v)", origin, err)
			}
		})
	}
}

// TestHeartbeat: an idle SSE stream carries a comment line every
// downstream.heartbeat, so that proxies keep it open.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[downstream]
heartbeat = "200ms"

[[channel]]
name = "feed"
path = "/feed"
url = "ws://%s/ws/feed"
`, f.host()))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url("/feed"), nil)
	resp, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	r := bufio.NewReader(resp.Body)
	comments := 0
	for comments < 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d heartbeats: %v", comments, err)
		}
		if strings.HasPrefix(line, ":") {
			comments++
		}
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("3 heartbeats in %s, want one per 200ms", took)
	}
}

// TestSlowClient: a client that stops reading is disconnected once it is
// downstream.queue events behind, without slowing the others, and resumes
// with Last-Event-ID where it left off.
func TestSlowClient(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, `
[server]
shutdown_grace = "3s"

[downstream]
queue = 8
`+feedChannel(f))
	client := newHTTPClient(t)
	up := f.conn(t, 1)
	fast := openSSE(t, client, in.url("/feed"), nil)

	// The slow client reads its response headers, then nothing until it
	// has been disconnected.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url("/feed"), nil)
	slow, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()

	// Large events fill the socket buffers, then the queue. The fast client
	// keeps up: each event is sent once it has the one before.
	const maxEvents = 1000
	payload := strings.Repeat("x", 64<<10)
	var sent []string // ids
	for !in.logs.Contains("full queue behind") {
		if len(sent) == maxEvents {
			t.Fatalf("the slow client was not disconnected after %d events of %d bytes", maxEvents, len(payload))
		}
		msg := strconv.Itoa(len(sent)) + payload
		up.send(t, msg)
		ev := fast.next(t)
		if ev.Data != msg {
			t.Fatalf("the fast client got event %.10q, want %.10q", ev.Data, msg)
		}
		sent = append(sent, ev.ID)
	}
	t.Logf("the slow client was disconnected after %d events", len(sent))

	// The slow client gets what was written before, then its stream ends.
	evs, err := sse.ParseAll(mustReadAll(t, slow.Body))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || len(evs) >= len(sent) {
		t.Fatalf("the slow client got %d of %d events before it was disconnected", len(evs), len(sent))
	}
	for i, ev := range evs {
		if ev.ID != sent[i] {
			t.Fatalf("the slow client's event %d has id %s, want %s", i, ev.ID, sent[i])
		}
	}

	// It resumes from the last event it got, and gets every one after it.
	resumed := openSSE(t, client, in.url("/feed"), http.Header{"Last-Event-Id": {evs[len(evs)-1].ID}})
	for _, id := range sent[len(evs):] {
		if ev := resumed.next(t); ev.ID != id || ev.Name == "gap" {
			t.Fatalf("on resume: got event %q id %s, want id %s", ev.Name, ev.ID, id)
		}
	}
}

// mustReadAll reads r to its end; a connection cut midway is an end too.
func mustReadAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading the slow client's stream: %v", err)
	}
	return b
}
