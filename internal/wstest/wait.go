// Package wstest holds helpers shared by the tests of several packages.
package wstest

import (
	"testing"
	"time"
)

// WaitTimeout bounds every wait for something that should happen soon. It
// is generous: a loaded machine running -race must not flake.
const WaitTimeout = 10 * time.Second

// Eventually polls cond until it holds, and fails t when it does not within
// WaitTimeout. what names the awaited state: "the upstream to be up".
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", WaitTimeout, what)
		}
		time.Sleep(pause)
		// Quick to see a change that comes at once, and no busy loop
		// on one that takes a while.
		pause = min(2*pause, 5*time.Millisecond)
	}
}
