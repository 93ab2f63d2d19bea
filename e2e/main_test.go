package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// ws2sseBin is the ws2sse binary the tests run, built once by TestMain.
var ws2sseBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "ws2sse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := run(m, dir)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func run(m *testing.M, dir string) int {
	ws2sseBin = filepath.Join(dir, "ws2sse")
	if err := build(ws2sseBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	stopBrowser()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			return 1
		}
	}
	return code
}

// build compiles ./cmd/ws2sse into out, with the race detector when the
// tests have it, so that a race in a browser scenario fails the run too.
func build(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/ws2sse")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = ".." // the module root
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to build ws2sse: %w\n%s", err, b)
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "built %s in %s (race: %v)\n", out, time.Since(start).Round(time.Millisecond), raceEnabled)
	}
	return nil
}
