package actors

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
)

// delivery is one queued frame: a message for one subscription, or a
// control frame (pong, error; sub nil). frame is shared by every subscriber
// of the message and must not be modified.
type delivery struct {
	frame    []byte
	id       messages.ID
	sub      *subscription
	received int64        // monotonic nanoseconds (see monoNow) when the publish arrived
	lim      *queueLimits // the topic's bound on its frames in this queue; nil: none
}

// outbox is a connection's bounded outgoing queue of live and control
// frames: topic actors and the gateway's reader push into it, the connection
// actor drains it and writes to the socket. push never blocks on the socket,
// so a slow subscriber never slows its topic actor or the other subscribers;
// on overflow the connection's SlowConsumerPolicy applies. Replays do not
// pass through it (they are pulled page by page; see protocol.go).
//
// Concurrency: push is safe from many goroutines; drain is called only by the
// owning connection actor.
type outbox struct {
	maxMsgs, maxBytes int
	policy            SlowConsumerPolicy
	wake              func() // asks the connection actor to drain; never blocks
	wakeHere          func() // wake, running the drain on the caller's goroutine if it can; nil: wake
	overflow          func() // called once, outside the lock, on overflow under PolicyDisconnect

	mu        sync.Mutex
	ring      []delivery
	head, n   int
	bytes     int
	scheduled bool          // a drain is requested or running
	flags     atomic.Uint32 // outboxClosed (set under mu) and outboxStopping; read without mu
	dropped   int           // drop-oldest drops not yet reported
}

// Bits of outbox.flags, one word so an idle connection's outbox stays in
// its 128-byte size class.
const (
	// outboxClosed: overflowed under PolicyDisconnect, or closed; read by
	// the drainer without the lock.
	outboxClosed = 1 << iota
	// outboxStopping: the connection is stopping (Connection.Stop); no
	// replay page is requested or read for it any more.
	outboxStopping
)

// markStopping records that the connection owning o is stopping.
func (o *outbox) markStopping() { o.flags.Or(outboxStopping) }

// isStopping reports whether the connection owning o is stopping (false
// for a nil outbox).
func (o *outbox) isStopping() bool { return o != nil && o.flags.Load()&outboxStopping != 0 }

// newOutbox returns an empty queue bounded by maxMsgs and maxBytes.
func newOutbox(maxMsgs, maxBytes int, policy SlowConsumerPolicy, wake, overflow func()) *outbox {
	// The ring is allocated on first use and grows by doubling: an idle
	// connection (most of them, at 10k+) holds none.
	return &outbox{maxMsgs: maxMsgs, maxBytes: maxBytes, policy: policy, wake: wake, overflow: overflow}
}

// newConnOutbox returns the outbox of connection actor pid, whose mailbox
// is mb. The first push into an empty outbox wakes the actor with one
// flushCmd (the hop from a topic actor to a connection actor); an overflow
// under PolicyDisconnect calls onOverflow once and sends the actor
// overflowCmd.
func newConnOutbox(cfg *Config, post poster, pid *actor.PID, mb *mailbox, onOverflow func()) *outbox {
	return newOutbox(cfg.ConnectionQueueSize, cfg.ConnectionQueueBytes, cfg.SlowConsumerPolicy,
		mb.wake,
		func() {
			onOverflow()
			post.Send(pid, theOverflow)
		})
}

// push queues d and wakes the connection actor when d is the first frame
// since its last drain. It reports false when the queue has overflowed
// under PolicyDisconnect (d is not queued, and the connection is being
// closed). Allocation-free except when the ring grows toward maxMsgs.
func (o *outbox) push(d delivery) bool {
	ok, wake := o.queue(d)
	if wake {
		o.wake()
	}
	return ok
}

// queue queues d like push but wakes no one: wake reports that no drain
// was requested since the connection actor last emptied the queue, so the
// caller owes it a wake-up (wake or runWake), without which what is queued
// waits for the next one.
func (o *outbox) queue(d delivery) (ok, wake bool) {
	o.mu.Lock()
	if o.closed() {
		o.mu.Unlock()
		return false, false
	}
	if d.lim != nil && !o.fitTopic(d) { // the topic's own bound (policy.go)
		return false, false
	}
	for o.n > 0 && (o.n >= o.maxMsgs || o.bytes+len(d.frame) > o.maxBytes) {
		if o.policy != PolicyDropOldest {
			o.overflowLocked()
			return false, false
		}
		o.removeAt(0)
	}
	if o.n == len(o.ring) {
		o.grow()
	}
	o.ring[(o.head+o.n)%len(o.ring)] = d
	o.n++
	o.bytes += len(d.frame)
	if d.sub != nil {
		d.sub.outQueued++
		d.sub.outBytes += len(d.frame)
	}
	wake = !o.scheduled
	o.scheduled = true
	o.mu.Unlock()
	return true, wake
}

// runWake is the wake-up queue owed: the connection actor's drain runs on
// the caller's goroutine when its sink allows it (wakeHere), else on the
// dispatcher. Never blocks.
func (o *outbox) runWake() {
	if o.wakeHere != nil {
		o.wakeHere()
		return
	}
	o.wake()
}

// overflowLocked marks the queue overflowed under PolicyDisconnect and
// unlocks it. The connection is being closed: what is queued will not be
// sent, so the close frame goes out right after the write in progress.
func (o *outbox) overflowLocked() {
	o.flags.Or(outboxClosed)
	clear(o.ring)
	o.n, o.bytes = 0, 0
	o.mu.Unlock()
	o.overflow()
}

// removeAt drops the i-th oldest queued frame (a drop-oldest drop),
// shifting the older ones up: O(i). Called with mu held.
func (o *outbox) removeAt(i int) {
	L := len(o.ring)
	d := o.ring[(o.head+i)%L]
	for j := i; j > 0; j-- {
		o.ring[(o.head+j)%L] = o.ring[(o.head+j-1)%L]
	}
	o.ring[o.head] = delivery{}
	o.head = (o.head + 1) % L
	o.n--
	o.bytes -= len(d.frame)
	if d.sub != nil {
		d.sub.outQueued--
		d.sub.outBytes -= len(d.frame)
	}
	o.dropped++
}

func (o *outbox) grow() {
	next := make([]delivery, min(max(2*len(o.ring), 8), o.maxMsgs))
	for i := 0; i < o.n; i++ {
		next[i] = o.ring[(o.head+i)%len(o.ring)]
	}
	o.ring, o.head = next, 0
}

// drain moves up to max queued deliveries, and at most maxBytes of frames
// (but at least one), into dst and returns it, with the number of
// drop-oldest drops since the last Drain and the frames' bytes it took.
// When the queue is empty it clears the drain request, so the next Push
// wakes the connection again.
func (o *outbox) drain(dst []delivery, max, maxBytes int) (_ []delivery, dropped, taken int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.n > 0 && max > 0 && taken < maxBytes {
		d := &o.ring[o.head]
		dst = append(dst, *d)
		taken += len(d.frame)
		o.bytes -= len(d.frame)
		if d.sub != nil {
			d.sub.outQueued--
			d.sub.outBytes -= len(d.frame)
		}
		*d = delivery{}
		o.head = (o.head + 1) % len(o.ring)
		o.n--
		max--
	}
	if o.n == 0 {
		o.scheduled = false
	}
	dropped, o.dropped = o.dropped, 0
	return dst, dropped, taken
}

// close discards what is queued and makes every later Push a no-op that
// reports false; the connection is gone.
func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flags.Or(outboxClosed)
	clear(o.ring)
	o.n, o.bytes = 0, 0
}

// closed reports whether the queue overflowed under PolicyDisconnect or was
// closed: nothing more should be written to the connection.
func (o *outbox) closed() bool { return o.flags.Load()&outboxClosed != 0 }
