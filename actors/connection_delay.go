package actors

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// flushNow tells a connection actor to flush what it wrote (sent by the
// delayed flusher).
type flushNow struct{}

var theFlushNow = &flushNow{}

// delayedFlusher implements Config.WriteDelay: a connection actor that wrote
// frames registers once, and at most every later the flusher sends it
// flushNow. One timer serves every connection: it runs only while some
// connection waits, and each connection waits between 0 and every.
//
// Bounded: a connection is registered at most once until its flushNow is
// sent (connActor.flushLater), so due holds at most one entry per connection.
//
// Concurrency: add is safe from many actors at once.
type delayedFlusher struct {
	post  poster
	every time.Duration

	mu    sync.Mutex
	due   []*actor.PID
	spare []*actor.PID
	armed bool
}

// add asks for a flushNow to pid within every.
func (f *delayedFlusher) add(pid *actor.PID) {
	f.mu.Lock()
	f.due = append(f.due, pid)
	if !f.armed {
		f.armed = true
		time.AfterFunc(f.every, f.fire)
	}
	f.mu.Unlock()
}

func (f *delayedFlusher) fire() {
	f.mu.Lock()
	due := f.due
	f.due, f.spare = f.spare[:0], nil
	f.armed = false
	f.mu.Unlock()
	for i, pid := range due {
		f.post.Send(pid, theFlushNow)
		due[i] = nil
	}
	f.mu.Lock()
	if f.spare == nil && cap(due) <= 1<<16 {
		f.spare = due[:0]
	}
	f.mu.Unlock()
}

// isStopping reports whether msg is the actor's own stop: its writes are
// flushed at once (the sink is closing).
func isStopping(msg any) bool {
	switch msg.(type) {
	case *actor.Stopping, *actor.Stopped:
		return true
	}
	return false
}
