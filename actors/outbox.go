package actors

import (
	"sync"
	"sync/atomic"

	"github.com/pulsar-relay/relay/messages"
)

// Delivery is one queued frame for one subscription. Frame is shared by every
// subscriber of the message and must not be modified.
type Delivery struct {
	Frame    []byte
	ID       messages.ID
	Sub      *Subscription
	Received int64 // monotonic nanoseconds (see monoNow) when the publish arrived
}

// Outbox is a connection's bounded outgoing queue: topic actors Push into it,
// the connection actor Drains it and writes to the socket. Push never blocks
// on the socket, so a slow subscriber never slows its topic actor or the other
// subscribers; on overflow the connection's SlowConsumerPolicy applies.
//
// Concurrency: Push is safe from many goroutines; Drain is called only by the
// owning connection actor.
type Outbox struct {
	maxMsgs, maxBytes int
	policy            SlowConsumerPolicy
	wake              func() // asks the connection actor to drain; never blocks
	overflow          func() // called once, outside the lock, on overflow under PolicyDisconnect

	mu         sync.Mutex
	ring       []Delivery
	head, n    int
	bytes      int
	scheduled  bool        // a drain is requested or running
	overflowed atomic.Bool // set under mu; read without it by the drainer
	dropped    int         // drop-oldest drops not yet reported
}

// NewOutbox returns an empty queue bounded by maxMsgs and maxBytes.
func NewOutbox(maxMsgs, maxBytes int, policy SlowConsumerPolicy, wake, overflow func()) *Outbox {
	// The ring is allocated on first use and grows by doubling: an idle
	// connection (most of them, at 10k+) holds none.
	return &Outbox{maxMsgs: maxMsgs, maxBytes: maxBytes, policy: policy, wake: wake, overflow: overflow}
}

// Push queues d. It reports false when the queue has overflowed under
// PolicyDisconnect (d is not queued, and the connection is being closed).
// Allocation-free except when the ring grows toward maxMsgs.
func (o *Outbox) Push(d Delivery) bool {
	o.mu.Lock()
	if o.overflowed.Load() {
		o.mu.Unlock()
		return false
	}
	for o.n > 0 && (o.n >= o.maxMsgs || o.bytes+len(d.Frame) > o.maxBytes) {
		if o.policy != PolicyDropOldest {
			// The connection is being closed: what is queued will not be
			// sent, so the close frame goes out right after the write in
			// progress.
			o.overflowed.Store(true)
			clear(o.ring)
			o.n, o.bytes = 0, 0
			o.mu.Unlock()
			o.overflow()
			return false
		}
		o.bytes -= len(o.ring[o.head].Frame)
		o.ring[o.head] = Delivery{}
		o.head = (o.head + 1) % len(o.ring)
		o.n--
		o.dropped++
	}
	if o.n == len(o.ring) {
		o.grow()
	}
	o.ring[(o.head+o.n)%len(o.ring)] = d
	o.n++
	o.bytes += len(d.Frame)
	wake := !o.scheduled
	o.scheduled = true
	o.mu.Unlock()
	if wake {
		o.wake()
	}
	return true
}

func (o *Outbox) grow() {
	next := make([]Delivery, min(max(2*len(o.ring), 8), o.maxMsgs))
	for i := 0; i < o.n; i++ {
		next[i] = o.ring[(o.head+i)%len(o.ring)]
	}
	o.ring, o.head = next, 0
}

// Drain moves up to max queued deliveries into dst and returns it, with the
// number of drop-oldest drops since the last Drain. When the queue is empty it
// clears the drain request, so the next Push wakes the connection again.
func (o *Outbox) Drain(dst []Delivery, max int) ([]Delivery, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.n > 0 && max > 0 {
		d := &o.ring[o.head]
		dst = append(dst, *d)
		o.bytes -= len(d.Frame)
		*d = Delivery{}
		o.head = (o.head + 1) % len(o.ring)
		o.n--
		max--
	}
	if o.n == 0 {
		o.scheduled = false
	}
	dropped := o.dropped
	o.dropped = 0
	return dst, dropped
}

// Close discards what is queued and makes every later Push a no-op that
// reports false; the connection is gone.
func (o *Outbox) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.overflowed.Store(true)
	clear(o.ring)
	o.n, o.bytes = 0, 0
}

// Closed reports whether the queue overflowed under PolicyDisconnect or was
// closed: nothing more should be written to the connection.
func (o *Outbox) Closed() bool { return o.overflowed.Load() }
