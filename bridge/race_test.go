//go:build race

package bridge

// raceEnabled: the race detector's sync.Pool drops items at random, so that
// pooled buffers are sometimes allocated again.
const raceEnabled = true
