package upstream

import (
	"strconv"
	"time"
)

// State is the state of the upstream connection.
type State int

const (
	// StateConnecting: dialing, or about to.
	StateConnecting State = iota
	// StateUp: connected and subscribed; frames flow.
	StateUp
	// StateDown: the last dial failed or the connection died; waiting out the backoff.
	StateDown
)

// String returns "connecting", "up" or "down".
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Status is reported to Options.OnState on every state change.
type Status struct {
	State State
	// Err says why the connection is down, with the URL redacted; it never
	// contains header values, URL passwords, query values or subscribe
	// frames. It matches this package's sentinels (and the causes beneath)
	// with errors.Is, but does not unwrap to its cause, whose text is not
	// redacted.
	// Nil unless State is StateDown.
	Err error
	// RetryIn is, with StateDown, the backoff before the next dial.
	RetryIn time.Duration
}

// Frame is one data frame received from the upstream.
type Frame struct {
	Binary bool   // a binary frame; else text
	Data   []byte // owned by the receiver: a fresh slice per frame
}
