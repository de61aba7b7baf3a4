package actors

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// workerDispatcher is protoactor's goroutine dispatcher with its goroutines
// reused: a mailbox run is handed to a parked worker when one waits, else to
// a new goroutine. protoactor's default starts a fresh goroutine for every
// run, and each one grows its stack again (runtime.newstack/copystack were
// a tenth of the CPU of a publish); a parked worker keeps the stack it grew.
//
// Bounded: at most maxParked workers wait, each at most linger; the
// goroutines running mailboxes are the ones protoactor would run anyway.
//
// Concurrency: Schedule is safe from any goroutine.
type workerDispatcher struct {
	throughput int
	maxParked  int32
	linger     time.Duration
	handoff    chan func() // unbuffered: a send succeeds only into a parked worker
	parked     atomic.Int32
	quit       chan struct{} // closed by stop
	stopped    atomic.Bool
}

// newWorkerDispatcher returns a dispatcher with protoactor's default
// throughput (messages per mailbox run before it yields).
func newWorkerDispatcher() *workerDispatcher {
	return &workerDispatcher{
		throughput: 300,
		maxParked:  int32(max(64, 32*runtime.GOMAXPROCS(0))),
		linger:     time.Second,
		handoff:    make(chan func()),
		quit:       make(chan struct{}),
	}
}

var _ actor.Dispatcher = (*workerDispatcher)(nil)

// Schedule implements actor.Dispatcher.
func (d *workerDispatcher) Schedule(fn func()) {
	select {
	case d.handoff <- fn:
	default:
		go d.work(fn)
	}
}

// Throughput implements actor.Dispatcher.
func (d *workerDispatcher) Throughput() int { return d.throughput }

func (d *workerDispatcher) work(fn func()) {
	var idle *time.Timer
	for {
		fn()
		if d.stopped.Load() {
			return
		}
		if d.parked.Add(1) > d.maxParked {
			d.parked.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(d.linger)
		} else {
			idle.Reset(d.linger)
		}
		select {
		case fn = <-d.handoff:
			d.parked.Add(-1)
		case <-idle.C:
			d.parked.Add(-1)
			return
		case <-d.quit:
			d.parked.Add(-1)
			return
		}
	}
}

// stop makes parked workers exit and later ones not park; mailbox runs
// still scheduled after it run on their own goroutines. Called once, by
// TopicManager.Shutdown.
func (d *workerDispatcher) stop() {
	if d.stopped.CompareAndSwap(false, true) {
		close(d.quit)
	}
}
