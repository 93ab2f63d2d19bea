package bridge

import "errors"

var (
	// ErrSlowClient ends a subscription whose client fell more than the
	// queue length behind the channel.
	ErrSlowClient = errors.New("client too slow: queue full")
	// ErrClosed ends a subscription when its channel closes.
	ErrClosed = errors.New("channel closed")
)

// ErrTooManyChannels refuses a channel of a group that is at its limit.
var ErrTooManyChannels = errors.New("too many open channels for this path")
