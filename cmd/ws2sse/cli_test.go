package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ws2sse/ws2sse/internal/wstest"
)

// runCmd runs ws2sse with args to completion, as a one-shot command, and
// returns its exit code and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	// A command that unexpectedly starts serving is shut down in the end.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var out, errOut wstest.Buffer
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // a substring; "" checks nothing
		wantStderr string // a substring; "" checks nothing
	}{
		{name: "version", args: []string{"-version"}, wantCode: exitOK, wantStdout: "ws2sse "},
		{name: "help", args: []string{"-h"}, wantCode: exitOK, wantStderr: "-config"},
		{name: "unknown flag", args: []string{"-nope"}, wantCode: exitUsage, wantStderr: "-nope"},
		{name: "stray argument", args: []string{"-demo", "extra"}, wantCode: exitUsage, wantStderr: `"extra"`},
		{name: "bad log format", args: []string{"-demo", "-log-format", "xml"}, wantCode: exitUsage, wantStderr: "-log-format"},
		{name: "bad log level", args: []string{"-demo", "-log-level", "loud"}, wantCode: exitUsage, wantStderr: "-log-level"},
		{
			name: "check the example", args: []string{"-check", "-config", "../../config.example.toml"},
			wantCode: exitOK, wantStdout: "../../config.example.toml: ok, 2 channel(s)",
		},
		{
			name: "missing file", args: []string{"-check", "-config", "testdata/no-such-file.toml"},
			wantCode: exitUsage, wantStderr: "no-such-file.toml",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

// TestFindConfig changes the working directory, so it cannot run in
// parallel.
func TestFindConfig(t *testing.T) {
	valid := "[[channel]]\nname = \"a\"\npath = \"/a\"\nurl = \"ws://127.0.0.1:1/a\"\n"

	t.Run("none", func(t *testing.T) {
		t.Chdir(t.TempDir())
		t.Setenv("WS2SSE_CONFIG", "")
		os.Unsetenv("WS2SSE_CONFIG") // restored by t.Setenv
		code, _, stderr := runCmd(t)
		if code != exitUsage {
			t.Errorf("exit code %d, want %d", code, exitUsage)
		}
		if !strings.Contains(stderr, "-demo") {
			t.Errorf("stderr %q does not mention -demo", stderr)
		}
	})
	t.Run("ws2sse.toml in the working directory", func(t *testing.T) {
		t.Chdir(t.TempDir())
		t.Setenv("WS2SSE_CONFIG", filepath.Join(t.TempDir(), "elsewhere.toml"))
		if err := os.WriteFile("ws2sse.toml", []byte(valid), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runCmd(t, "-check")
		if code != exitOK || stdout != "ws2sse.toml: ok, 1 channel(s)\n" {
			t.Errorf("exit code %d, stdout %q, stderr %q; want 0 and ws2sse.toml checked", code, stdout, stderr)
		}
	})
	t.Run("WS2SSE_CONFIG", func(t *testing.T) {
		t.Chdir(t.TempDir())
		path := writeConfig(t, valid)
		t.Setenv("WS2SSE_CONFIG", path)
		code, stdout, stderr := runCmd(t, "-check")
		if code != exitOK || stdout != path+": ok, 1 channel(s)\n" {
			t.Errorf("exit code %d, stdout %q, stderr %q; want 0 and %s checked", code, stdout, stderr, path)
		}
	})
}

// TestCheckProblems runs -check on bad files: each problem is one line
// FILE:LINE: KEY: message, with the key as the user wrote it.
func TestCheckProblems(t *testing.T) {
	t.Parallel()
	const ch = "[[channel]]\nname = \"a\"\npath = \"/a\"\nurl = \"ws://127.0.0.1:1/a\"\n"
	tests := []struct {
		name string
		src  string
		// want are the problem lines without the "FILE:" prefix, as
		// "LINE: KEY: " and a fragment of the message.
		want []string
	}{
		{
			name: "unknown key",
			src:  "[server]\nlisten = \":8080\"\nmax_clent = 5\n",
			want: []string{"3: server.max_clent: unknown key"},
		},
		{
			name: "unknown key in a channel's upstream",
			src:  ch + "[channel.upstream]\nping = \"1s\"\n",
			want: []string{"6: channel[0].upstream.ping: unknown key"},
		},
		{
			name: "wrong type",
			src:  "[downstream]\nqueue = \"1024\"\n",
			want: []string{"2: downstream.queue: expected an integer"},
		},
		{
			name: "wrong type in the second channel",
			src:  ch + "\n" + strings.NewReplacer(`"a"`, `"b"`, "/a", "/b").Replace(ch) + "lazy = \"yes\"\n",
			want: []string{"10: channel[1].lazy: expected a boolean"},
		},
		{
			name: "bad duration",
			src:  "[server]\nshutdown_grace = \"10 seconds\"\n",
			want: []string{`2: server.shutdown_grace: bad duration "10 seconds"`},
		},
		{
			name: "bad duration in a channel's upstream",
			src:  ch + "\n[channel.upstream]\nbackoff_max = \"30\"\n",
			want: []string{`7: channel[0].upstream.backoff_max: bad duration "30"`},
		},
		{
			name: "bad URL",
			src:  "[[channel]]\nname = \"a\"\npath = \"/a\"\nurl = \"https://feed.example.com/v1\"\n",
			want: []string{`4: channel[0].url: the scheme must be ws or wss`},
		},
		{
			name: "duplicate channel name",
			src:  ch + "\n[[channel]]\nname = \"a\"\npath = \"/b\"\nurl = \"ws://127.0.0.1:1/b\"\n",
			want: []string{`7: channel[1].name: "a" is already the name of the channel on line 2`},
		},
		{
			name: "duplicate path",
			src:  ch + "\n[[channel]]\nname = \"b\"\npath = \"/a\"\nurl = \"ws://127.0.0.1:1/b\"\n",
			want: []string{`8: channel[1].path: "/a" is already used by channel "a" (line 3)`},
		},
		{
			name: "path of /healthz",
			src:  "[[channel]]\nname = \"a\"\npath = \"/healthz\"\nurl = \"ws://127.0.0.1:1/a\"\n",
			want: []string{`3: channel[0].path: "/healthz" is a built-in endpoint`},
		},
		{
			name: "template that matches /healthz",
			src:  "[[channel]]\nname = \"a\"\npath = \"/{name:[a-z]+}\"\nurl = \"ws://127.0.0.1:1/{name}\"\n",
			want: []string{`3: channel[0].path: "/{name:[a-z]+}" matches the built-in endpoint "/healthz"`},
		},
		{
			name: "unset environment variable",
			src:  ch + "headers = { Authorization = \"Bearer ${WS2SSE_TEST_UNSET_TOKEN}\" }\n",
			want: []string{"5: channel[0].headers.Authorization: environment variable WS2SSE_TEST_UNSET_TOKEN is not set"},
		},
		{
			name: "every problem at once",
			src:  "[server]\nmax_clent = 5\n\n[downstream]\nheartbeat = \"soon\"\n",
			want: []string{
				"2: server.max_clent: unknown key",
				`5: downstream.heartbeat: bad duration "soon"`,
			},
		},
	}
	if _, set := os.LookupEnv("WS2SSE_TEST_UNSET_TOKEN"); set {
		t.Fatal("WS2SSE_TEST_UNSET_TOKEN must not be set")
	}
	goName := regexp.MustCompile(`\b(MaxClients|ShutdownGrace|Queue|Heartbeat|BackoffMax|Channels|URL|Lazy)\b`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := writeConfig(t, tt.src)
			code, stdout, stderr := runCmd(t, "-check", "-config", file)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("got %d problem lines, want %d:\n%s", len(lines), len(tt.want), stderr)
			}
			for i, want := range tt.want {
				if i >= len(lines) {
					break
				}
				if !strings.HasPrefix(lines[i], file+":"+want) {
					t.Errorf("problem %d:\n got %s\nwant %s:%s...", i, lines[i], file, want)
				}
				if m := goName.FindString(lines[i]); m != "" {
					t.Errorf("problem %d names the Go field %s: %s", i, m, lines[i])
				}
			}
		})
	}
}

// TestListenFailure: a port already taken is a failure to serve, not a bad
// command line.
func TestListenFailure(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	file := writeConfig(t, "[[channel]]\nname = \"a\"\npath = \"/a\"\nurl = \"ws://127.0.0.1:1/a\"\n")
	code, _, stderr := runCmd(t, "-config", file, "-listen", ln.Addr().String())
	if code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, "failed to listen") {
		t.Errorf("stderr %q does not say it failed to listen", stderr)
	}
}

// TestBadListenFlag: -listen takes host:port as server.listen does, and a
// bad one is a bad command line.
func TestBadListenFlag(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "[[channel]]\nname = \"a\"\npath = \"/a\"\nurl = \"ws://127.0.0.1:1/a\"\n")
	for _, addr := range []string{"localhost", ":99999"} {
		code, _, stderr := runCmd(t, "-config", file, "-listen", addr)
		if code != exitUsage {
			t.Errorf("-listen %s: exit code %d, want %d\nstderr: %s", addr, code, exitUsage, stderr)
		}
		if !strings.Contains(stderr, "-listen") {
			t.Errorf("-listen %s: stderr %q does not name -listen", addr, stderr)
		}
	}
}

// TestDemoConflict: -demo with a file that already has a channel named demo,
// or one whose path is or matches /demo, is a bad configuration.
func TestDemoConflict(t *testing.T) {
	t.Parallel()
	for _, ch := range []string{
		`name = "demo"` + "\n" + `path = "/feed"`,
		`name = "feed"` + "\n" + `path = "/demo"`,
		`name = "ticker"` + "\n" + `path = "/{symbol:[a-z]{1,4}}"`,
	} {
		file := writeConfig(t, "[[channel]]\n"+ch+"\n"+`url = "ws://127.0.0.1:1/a"`+"\n")
		code, _, stderr := runCmd(t, "-demo", "-config", file, "-listen", "127.0.0.1:0")
		if code != exitUsage {
			t.Errorf("%s: exit code %d, want %d\nstderr: %s", ch, code, exitUsage, stderr)
		}
		if !strings.Contains(stderr, "demo") {
			t.Errorf("%s: stderr %q does not explain the conflict", ch, stderr)
		}
	}
}

// TestConsoleLog: -log-format console writes lines for people, the address
// among them.
func TestConsoleLog(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := wstest.NewLogSink(t)
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-demo", "-listen", "127.0.0.1:0", "-log-format", "console"}, io.Discard, logs)
	}()
	wstest.Eventually(t, "the listening line", func() bool { return logs.Contains("ws2sse listening") })
	cancel()
	if c := <-code; c != exitOK {
		t.Errorf("exit code %d, want 0", c)
	}
	for _, l := range logs.Lines() {
		if strings.HasPrefix(l, "{") {
			t.Errorf("a JSON line with -log-format console: %s", l)
		}
		if strings.Contains(l, "\x1b[") {
			t.Errorf("terminal colour codes in a log that is not a terminal: %q", l)
		}
		if strings.Contains(l, "ws2sse listening") && !strings.Contains(l, "addr=127.0.0.1:") {
			t.Errorf("the listening line does not show the address: %s", l)
		}
	}
}
