package upstream

import "errors"

// Sentinel errors. The errors reported in Status.Err wrap them, so callers can
// tell the reasons apart with errors.Is.
var (
	// ErrInvalidURL is returned by Run for a URL it cannot dial.
	ErrInvalidURL = errors.New("invalid upstream URL")

	// ErrClosed means the upstream closed the connection or it broke.
	ErrClosed = errors.New("upstream connection closed")

	// ErrPongTimeout means a ping went unanswered for Options.PongTimeout.
	ErrPongTimeout = errors.New("no pong within pong_timeout")

	// ErrReadTimeout means neither a frame nor a pong arrived for Options.ReadTimeout.
	ErrReadTimeout = errors.New("no frame or pong within read_timeout")

	// ErrMessageTooBig means the upstream sent a frame over Options.MaxMessage;
	// the connection was closed with status 1009.
	ErrMessageTooBig = errors.New("upstream frame over max_message")
)
