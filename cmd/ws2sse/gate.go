package main

import "sync"

// A gate counts the requests being served and, once closed, lets no new one
// in, so that waiting for the ones inside never races with one arriving:
// net/http starts a handler on a connection it accepted before Close or a
// timed-out Shutdown, and a bare WaitGroup must not be added to while it
// is being waited on from zero.
type gate struct {
	mu     sync.Mutex
	closed bool
	in     sync.WaitGroup
}

// enter reports whether the request may go on; if so, it must call leave
// when it is done.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.in.Add(1)
	return true
}

func (g *gate) leave() { g.in.Done() }

// closeAndWait lets no new request in and waits for the ones inside.
func (g *gate) closeAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.in.Wait()
}
