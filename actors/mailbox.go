package actors

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// connMailbox is a connection actor's mailbox: protoactor's default mailbox
// (system messages first, Suspend/Resume, a yield every Throughput messages,
// a panic escalated to the supervisor) with the outbox's wake-up held as a
// flag instead of a queued message.
//
// Why: a fan-out wakes every subscriber's connection actor once per message,
// from the topic actor's goroutine, usually on the other core. Through
// RootContext.Send that wake touched the PID, the process registry's cached
// process, the mailbox, its ring queue and a ring slot, each a cache line
// last written on the other core; wake touches one line (status and flag)
// and allocates nothing (the run closure is bound once). The outbox holds the
// mailbox itself (connect.go), so the wake skips the PID lookup as well.
//
// Ordering: messages run in the order they were posted, the wake-up
// included: the flag is set only while the queue is empty, and a wake-up
// posted behind queued messages is queued like them.
//
// Concurrency: Post*, wake and UserMessageCount are safe from any goroutine;
// the run is scheduled on the dispatcher at most once at a time.
type connMailbox struct {
	status atomic.Int32 // mailboxIdle or mailboxScheduled
	mu     sync.Mutex
	flush  bool  // a flushCmd is the next user message; under mu
	user   []any // user messages after it, oldest first; under mu
	system []any // under mu
	// pending counts what is posted and not yet taken: system messages in
	// the high half, user messages (the flag included) in the low half, so
	// the run's last check is one load.
	pending   atomic.Uint64
	suspended atomic.Bool

	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
	run        func() // m.process, bound once
}

const (
	mailboxIdle int32 = iota
	mailboxScheduled
	systemOne = 1 << 32
)

func newConnMailbox() *connMailbox {
	m := &connMailbox{}
	m.run = m.process
	return m
}

var _ actor.Mailbox = (*connMailbox)(nil)

// wake asks the actor to drain its outbox: PostUserMessage(theFlush),
// without the PID lookup or a queue slot.
func (m *connMailbox) wake() { m.PostUserMessage(theFlush) }

// PostUserMessage implements actor.Mailbox.
func (m *connMailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	switch {
	case msg == any(theFlush) && len(m.user) == 0:
		if m.flush { // one already waits, and nothing behind it
			m.mu.Unlock()
			return
		}
		m.flush = true
	default:
		m.user = append(m.user, msg)
	}
	m.pending.Add(1)
	m.mu.Unlock()
	m.schedule()
}

// PostSystemMessage implements actor.Mailbox.
func (m *connMailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.system = append(m.system, msg)
	m.pending.Add(systemOne)
	m.mu.Unlock()
	m.schedule()
}

// RegisterHandlers implements actor.Mailbox.
func (m *connMailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
}

// Start implements actor.Mailbox.
func (m *connMailbox) Start() {}

// UserMessageCount implements actor.Mailbox.
func (m *connMailbox) UserMessageCount() int { return int(uint32(m.pending.Load())) }

func (m *connMailbox) schedule() {
	if m.status.CompareAndSwap(mailboxIdle, mailboxScheduled) {
		m.dispatcher.Schedule(m.run)
	}
}

// process runs what is posted, then goes idle, unless something arrived
// after the last look and no other run took it (protoactor's protocol).
func (m *connMailbox) process() {
	for {
		m.drain()
		m.status.Store(mailboxIdle)
		p := m.pending.Load()
		if p>>32 == 0 && (m.suspended.Load() || uint32(p) == 0) {
			return
		}
		if !m.status.CompareAndSwap(mailboxIdle, mailboxScheduled) {
			return
		}
	}
}

func (m *connMailbox) drain() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	limit := m.dispatcher.Throughput()
	for i := 0; ; i++ {
		if i > limit {
			i = 0
			runtime.Gosched()
		}
		var system bool
		msg, system = m.next()
		switch {
		case msg == nil:
			return
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
func (m *connMailbox) next() (msg any, system bool) {
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
		msg = theFlush
	case len(m.user) > 0:
		msg = m.user[0]
		m.user[0] = nil
		m.user = m.user[1:]
		if len(m.user) == 0 {
			m.user = m.user[:0:0]
		}
	default:
		return nil, false
	}
	m.pending.Add(^uint64(0)) // minus one user message
	return msg, false
}
