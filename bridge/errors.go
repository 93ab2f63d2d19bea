package bridge

import "errors"

var (
	// ErrSlowClient ends a subscription whose client fell more than the
	// queue length behind the channel.
	ErrSlowClient = errors.New("client too slow: queue full")
	// ErrClosed ends a subscription when its channel closes.
	ErrClosed = errors.New("channel closed")
	// ErrLost ends a subscription, in cluster mode, when this node finds
	// that it missed records of the shared log (it was cut off from the
	// store for longer than the log keeps them). The client resumes from
	// its last id and is told of the gap.
	ErrLost = errors.New("events lost: resume to be told of the gap")
)

// ErrTooManyChannels refuses a channel of a group that is at its limit.
var ErrTooManyChannels = errors.New("too many open channels for this path")
