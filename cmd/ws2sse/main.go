// Command ws2sse subscribes to WebSocket feeds and serves them as Server-Sent Events and WebSocket.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/internal/config"
)

// version is stamped at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	ctx, stop := shutdownSignals()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// shutdownSignals returns a context cancelled by the first SIGINT or
// SIGTERM, which starts the graceful shutdown. Another one, a second or
// more later, ends the process at once, as it would have without a
// handler: the way out of a grace that is taking too long. (One sooner is
// taken for the same Ctrl-C, delivered twice: by the terminal and by a
// supervisor that forwards it.)
func shutdownSignals() (context.Context, context.CancelFunc) {
	sigs := make(chan os.Signal, 4) // none is lost while the first is handled
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sigs
		cancel()
		first := time.Now()
		for sig := range sigs {
			if time.Since(first) < time.Second {
				continue
			}
			if log := runLog.Load(); log != nil {
				log.Warn().Str("signal", sig.String()).Msg("second signal: exiting now, without waiting for the rest of the grace")
			}
			signal.Reset(os.Interrupt, syscall.SIGTERM)
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Signal(sig)
			}
			// Still here: the signal was ignored when ws2sse started
			// (SIGINT, in the background of a script), and is again.
			time.Sleep(100 * time.Millisecond)
			os.Exit(exitFailure)
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		cancel()
	}
}

// runLog is the logger of the running server, for the line of a forced
// exit.
var runLog atomic.Pointer[zerolog.Logger]

// flags are the command line.
type flags struct {
	config    string
	demo      bool
	check     bool
	listen    string
	logLevel  string
	logFormat string
	version   bool
	health    string
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("ws2sse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "configuration `file` (default: ws2sse.toml if present, else $WS2SSE_CONFIG)")
	fs.BoolVar(&f.demo, "demo", false, "serve a built-in demo feed at /demo; no file needed")
	fs.BoolVar(&f.check, "check", false, "validate the configuration and exit: 0 when valid, 2 otherwise")
	fs.StringVar(&f.listen, "listen", "", "listen `address`, overriding server.listen")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: trace, debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "", "log format: json or console (default: console on a terminal, else json)")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.StringVar(&f.health, "healthcheck", "", "GET `URL` and exit 0 when it answers 200, else 1 (for container health checks)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ws2sse [-config FILE | -demo] [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.logFormat != "" && f.logFormat != "json" && f.logFormat != "console" {
		return f, fmt.Errorf("-log-format must be json or console, not %q", f.logFormat)
	}
	return f, nil
}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ws2sse: %v\n", err)
		return exitUsage
	}
	if f.version {
		fmt.Fprintf(stdout, "ws2sse %s\n", versionString())
		return exitOK
	}
	if f.health != "" {
		if err := healthcheck(ctx, f.health); err != nil {
			fmt.Fprintf(stderr, "ws2sse: healthcheck: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	level, err := zerolog.ParseLevel(f.logLevel)
	if err != nil || f.logLevel == "" {
		fmt.Fprintf(stderr, "ws2sse: -log-level %q: want trace, debug, info, warn or error\n", f.logLevel)
		return exitUsage
	}
	log := newLogger(stderr, f.logFormat, level)
	runLog.Store(&log)

	cfg, err := loadConfig(f)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if f.check {
		fmt.Fprintf(stdout, "%s: ok, %d channel(s)\n", cfg.File, len(cfg.Channels))
		return exitOK
	}
	if err := serve(ctx, cfg, f.demo, log); err != nil {
		log.Error().Err(err).Msg("ws2sse stopped")
		return exitFailure
	}
	return exitOK
}

// loadConfig finds and loads the configuration the flags name. Every error
// it returns is a usage error.
func loadConfig(f flags) (*config.Config, error) {
	path := f.config
	if path == "" && !f.demo {
		if _, err := os.Stat("ws2sse.toml"); err == nil {
			path = "ws2sse.toml"
		} else {
			path = os.Getenv("WS2SSE_CONFIG")
		}
	}
	var cfg *config.Config
	switch {
	case path != "":
		c, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		cfg = c
	case f.demo:
		cfg = config.Default()
		cfg.File = "(demo)"
	default:
		return nil, errors.New("ws2sse: no configuration: pass -config FILE, create ws2sse.toml, set WS2SSE_CONFIG, or try -demo")
	}
	if f.demo {
		if err := checkDemoChannel(cfg); err != nil {
			return nil, err
		}
	}
	if f.listen != "" {
		if !config.ValidListen(f.listen) {
			return nil, fmt.Errorf("ws2sse: -listen %q: must be host:port, like \":8080\" or \"127.0.0.1:8080\"", f.listen)
		}
		cfg.Server.Listen = f.listen
	}
	return cfg, nil
}

func newLogger(w io.Writer, format string, level zerolog.Level) zerolog.Logger {
	fd, ok := w.(interface{ Fd() uintptr })
	tty := ok && isatty.IsTerminal(fd.Fd())
	if format == "" {
		format = "json"
		if tty {
			format = "console"
		}
	}
	if format == "console" {
		// Colours only on a terminal, not in a file or a journal.
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !tty}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// healthcheck GETs url and returns nil when it answers 200 within a few
// seconds. Certificates are not verified: it is meant for a process to check
// itself over loopback, where the name on a certificate never matches.
func healthcheck(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // loopback self-check
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
