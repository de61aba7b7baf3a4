package actors

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// mailbox is the relay's actor mailbox: protoactor's default mailbox
// (system messages first, Suspend/Resume, a yield every Throughput messages,
// a panic escalated to the supervisor) with two additions that the hot
// paths need.
//
// A coalesced wake-up (connection actors: the outbox's flushCmd) is held as
// a flag instead of a queued message. A fan-out wakes every subscriber's
// connection actor once per message, from the topic actor's goroutine,
// usually on the other core. Through RootContext.Send that wake touched the
// PID, the process registry's cached process, the mailbox, its ring queue
// and a ring slot, each a cache line last written on the other core (12.9%
// of the relay's fan-out CPU); wake touches the mailbox alone and allocates
// nothing (the run closure is bound once). The outbox holds the mailbox
// itself (connect.go), so the wake skips the PID lookup as well.
//
// A caller may run the mailbox on its own goroutine (postHere): publishers
// do, for topic actors, so that a publish to an idle topic is handled and
// answered without a hand-off to another goroutine and back.
//
// Ordering: messages run in the order they were posted, the wake-up
// included: the flag is set only while the queue is empty, and a wake-up
// posted behind queued messages is queued like them.
//
// Concurrency: Post*, wake, postHere and UserMessageCount are safe from any
// goroutine; one run at a time, on the dispatcher or in postHere.
type mailbox struct {
	coalesce any          // the wake-up message held as a flag; nil: none
	status   atomic.Int32 // mailboxIdle or mailboxScheduled
	mu       sync.Mutex
	flush    bool  // coalesce is the next user message; under mu
	user     []any // user messages after it: user[head:], oldest first; under mu
	head     int
	system   []any // under mu
	// pending counts what is posted and not yet taken: system messages in
	// the high half, user messages (the flag included) in the low half, so
	// the run's last check is one load.
	pending   atomic.Uint64
	suspended atomic.Bool
	// orphan, once set (takeAll: the actor stopped for good), takes every
	// user message posted after, on the poster's goroutine; under mu.
	orphan func(any)
	// here is true during a run runHere makes on its caller's goroutine;
	// read by the actor in that run (connection actors bound what they
	// take then, see connActor.drain).
	here bool

	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
	run        func() // m.process, bound once
}

// keptQueue is the largest user queue array an emptied mailbox keeps.
const keptQueue = 8

const (
	mailboxIdle int32 = iota
	mailboxScheduled
	systemOne = 1 << 32
)

// newMailbox returns an empty mailbox; coalesce, when not nil, is the
// wake-up message held as a flag (see wake).
func newMailbox(coalesce any) *mailbox {
	m := &mailbox{coalesce: coalesce}
	m.run = m.process
	return m
}

var _ actor.Mailbox = (*mailbox)(nil)

// wake posts the coalesced wake-up (a connection actor: drain the outbox),
// without the PID lookup or a queue slot.
func (m *mailbox) wake() { m.PostUserMessage(m.coalesce) }

// PostUserMessage implements actor.Mailbox.
func (m *mailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	if m.orphan != nil {
		m.handOver(msg)
		return
	}
	switch {
	case msg == m.coalesce && msg != nil && len(m.user) == 0:
		if m.flush { // one already waits, and nothing behind it
			m.mu.Unlock()
			return
		}
		m.flush = true
	default:
		m.push(msg)
	}
	m.pending.Add(1)
	m.mu.Unlock()
	m.schedule()
}

// push appends msg to the user queue, m.user[m.head:] (m.mu held). When
// the array is full and at least half of it is consumed, the queue moves
// to the front instead of the array growing: a queue that never empties
// (a topic actor under steady overload) keeps an array of a few times its
// length, not one of every message handled since it was last empty. Each
// move copies at most as many entries as it frees, so a push stays O(1)
// amortized.
func (m *mailbox) push(msg any) {
	if len(m.user) == cap(m.user) && m.head > 0 && m.head >= len(m.user)/2 {
		n := copy(m.user, m.user[m.head:])
		clear(m.user[n:])
		m.user, m.head = m.user[:n], 0
	}
	m.user = append(m.user, msg)
}

// postHere posts msg and, when no run is scheduled, runs the mailbox on the
// caller's goroutine: at most limit messages (msg and any posted before it
// meanwhile), then it hands what is left to the dispatcher. For callers
// that hold no lock and are not inside an actor's run, posting to an actor
// that never waits in Receive (a topic actor): the caller pays for that
// much of the actor's work instead of two goroutine hand-offs.
func (m *mailbox) postHere(msg any, limit int) {
	m.mu.Lock()
	if m.orphan != nil {
		m.handOver(msg)
		return
	}
	m.push(msg)
	m.pending.Add(1)
	m.mu.Unlock()
	if !m.status.CompareAndSwap(mailboxIdle, mailboxScheduled) {
		return // the run in progress or scheduled takes msg
	}
	m.finishHere(m.drain(limit))
}

// runHere posts the coalesced wake-up and, when the mailbox was idle with
// nothing else posted, runs it on the caller's goroutine: begin is asked
// first (false: the run goes to the dispatcher), end is called after the
// one message, still inside the run (it may post). What is left, or was
// posted meanwhile, goes to the dispatcher. For a topic actor delivering to
// a connection whose sink does not block between begin and end (see
// NoBlockSink).
func (m *mailbox) runHere(begin func() bool, end func()) {
	m.mu.Lock()
	if m.flush || len(m.user) > 0 || len(m.system) > 0 || m.orphan != nil {
		m.mu.Unlock()
		m.PostUserMessage(m.coalesce)
		return
	}
	m.flush = true
	m.pending.Add(1)
	m.mu.Unlock()
	if !m.status.CompareAndSwap(mailboxIdle, mailboxScheduled) {
		return // the run in progress or scheduled takes it
	}
	if m.suspended.Load() || !begin() {
		m.dispatcher.Schedule(m.run)
		return
	}
	m.here = true
	more := m.drain(1)
	m.here = false
	end()
	m.finishHere(more)
}

// finishHere ends a run made on the caller's goroutine (postHere, runHere):
// what is left (more), or was posted after the run's last look, goes to
// the dispatcher; else the mailbox goes idle.
func (m *mailbox) finishHere(more bool) {
	if more || m.idleOrReclaim() {
		m.dispatcher.Schedule(m.run)
	}
}

// takeAll ends the mailbox's user messages for good, when its actor
// stopped and will never run them (protoactor leaves them in a suspended
// mailbox): it returns those still queued, oldest first, and from then on
// hands each user message posted to orphan, called on the poster's
// goroutine, instead of queueing it: so that whoever waits for an answer to
// a message (a publisher, a subscribing connection) gets one, from orphan,
// even when it was posted too late for the stopped actor to see it. System
// messages are still run.
func (m *mailbox) takeAll(orphan func(any)) []any {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []any
	if m.flush {
		m.flush = false
		out = append(out, m.coalesce)
	}
	out = append(out, m.user[m.head:]...)
	clear(m.user)
	m.user, m.head = nil, 0
	m.pending.Add(-uint64(len(out))) // minus the user messages taken
	m.orphan = orphan
	return out
}

// handOver gives msg, posted after takeAll, to orphan (m.mu held; it
// unlocks it first).
func (m *mailbox) handOver(msg any) {
	orphan := m.orphan
	m.mu.Unlock()
	orphan(msg)
}

// PostSystemMessage implements actor.Mailbox.
func (m *mailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.system = append(m.system, msg)
	m.pending.Add(systemOne)
	m.mu.Unlock()
	m.schedule()
}

// RegisterHandlers implements actor.Mailbox.
func (m *mailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
}

// Start implements actor.Mailbox.
func (m *mailbox) Start() {}

// UserMessageCount implements actor.Mailbox.
func (m *mailbox) UserMessageCount() int { return int(uint32(m.pending.Load())) }

func (m *mailbox) schedule() {
	if m.status.CompareAndSwap(mailboxIdle, mailboxScheduled) {
		m.dispatcher.Schedule(m.run)
	}
}

// process runs what is posted, then goes idle, unless something arrived
// after the last look and no other run took it (protoactor's protocol).
func (m *mailbox) process() {
	for {
		m.drain(0)
		if !m.idleOrReclaim() {
			return
		}
	}
}

// idleOrReclaim marks the mailbox idle and reports whether it took it back
// because something runnable was posted after the run's last look (then the
// caller runs it or schedules a run).
func (m *mailbox) idleOrReclaim() bool {
	m.status.Store(mailboxIdle)
	p := m.pending.Load()
	if p>>32 == 0 && (m.suspended.Load() || uint32(p) == 0) {
		return false
	}
	return m.status.CompareAndSwap(mailboxIdle, mailboxScheduled)
}

// drain invokes what is posted until nothing runnable is left, yielding
// every Throughput messages; with max > 0 it stops after max messages and
// reports whether any were left. A panic is escalated to the supervisor
// (which suspends the mailbox) and ends the drain.
func (m *mailbox) drain(max int) (more bool) {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	limit := m.dispatcher.Throughput()
	for i, n := 0, 0; ; i, n = i+1, n+1 {
		if max > 0 && n == max {
			return m.pending.Load() != 0
		}
		if i > limit {
			i = 0
			runtime.Gosched()
		}
		var system bool
		msg, system = m.next()
		switch {
		case msg == nil:
			return false
		case system:
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended.Store(true)
			case *actor.ResumeMailbox:
				m.suspended.Store(false)
			default:
				m.invoker.InvokeSystemMessage(msg)
			}
		default:
			m.invoker.InvokeUserMessage(msg)
		}
	}
}

// next takes the oldest system message, else (unless suspended) the oldest
// user message; nil when there is none to take.
func (m *mailbox) next() (msg any, system bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.system) > 0 {
		msg = m.system[0]
		m.system[0] = nil
		m.system = m.system[1:]
		if len(m.system) == 0 {
			m.system = nil
		}
		m.pending.Add(^uint64(systemOne - 1)) // minus one system message
		return msg, true
	}
	if m.suspended.Load() {
		return nil, false
	}
	switch {
	case m.flush:
		m.flush = false
		msg = m.coalesce
	case len(m.user) > 0:
		msg = m.user[m.head]
		m.user[m.head] = nil
		if m.head++; m.head == len(m.user) {
			// Empty: keep a small array for the next message (a topic
			// actor's queue is used on every publish), let a burst's go.
			m.head = 0
			if cap(m.user) <= keptQueue {
				m.user = m.user[:0]
			} else {
				m.user = nil
			}
		}
	default:
		return nil, false
	}
	m.pending.Add(^uint64(0)) // minus one user message
	return msg, false
}
