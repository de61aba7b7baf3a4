package actors

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// manualDispatcher records scheduled runs; the test runs them.
type manualDispatcher struct{ runs []func() }

func (d *manualDispatcher) Schedule(fn func()) { d.runs = append(d.runs, fn) }
func (d *manualDispatcher) Throughput() int    { return 300 }

// wantScheduled fails t unless n runs are scheduled and not yet run.
func (d *manualDispatcher) wantScheduled(t *testing.T, n int) {
	t.Helper()
	if len(d.runs) != n {
		t.Fatalf("%d runs scheduled, want %d", len(d.runs), n)
	}
}

// runAll runs the scheduled runs until none is left.
func (d *manualDispatcher) runAll() {
	for len(d.runs) > 0 {
		fn := d.runs[0]
		d.runs = d.runs[1:]
		fn()
	}
}

// recordingInvoker records what the mailbox hands it; user messages equal
// to panicOn panic.
type recordingInvoker struct {
	mu        sync.Mutex
	got       []string
	escalated []any
	panicOn   any
	during    func() // when set, called in each user message's invocation
}

func (r *recordingInvoker) InvokeSystemMessage(msg any) { r.add("sys:" + name(msg)) }
func (r *recordingInvoker) InvokeUserMessage(msg any) {
	if r.panicOn != nil && msg == r.panicOn {
		panic("boom")
	}
	if r.during != nil {
		r.during()
	}
	r.add(name(msg))
}
func (r *recordingInvoker) EscalateFailure(reason, msg any) {
	r.mu.Lock()
	r.escalated = append(r.escalated, msg)
	r.mu.Unlock()
}
func (r *recordingInvoker) add(s string) { r.mu.Lock(); r.got = append(r.got, s); r.mu.Unlock() }

// wantInvoked fails t unless the invoked messages, in order, print as want
// (e.g. "[a flush b]").
func (r *recordingInvoker) wantInvoked(t *testing.T, want string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := fmt.Sprint(r.got); got != want {
		t.Fatalf("invoked %s, want %s", got, want)
	}
}

func name(msg any) string {
	if msg == any(theFlush) {
		return "flush"
	}
	return fmt.Sprint(msg)
}

// queueUnscheduled queues user messages without scheduling a run, as a
// poster does that finds a run already scheduled.
func queueUnscheduled(m *mailbox, msgs ...any) {
	m.mu.Lock()
	m.user = append(m.user, msgs...)
	m.pending.Add(uint64(len(msgs)))
	m.mu.Unlock()
}

func newTestMailbox() (*mailbox, *manualDispatcher, *recordingInvoker) {
	m, d, inv := newMailbox(theFlush), &manualDispatcher{}, &recordingInvoker{}
	m.RegisterHandlers(inv, d)
	return m, d, inv
}

func TestMailboxKeepsPostingOrderWithTheWakeFlag(t *testing.T) {
	m, d, inv := newTestMailbox()
	m.wake() // flag: the queue is empty
	m.wake() // coalesced with the waiting one
	m.PostUserMessage("a")
	m.wake() // behind "a": queued, not coalesced
	m.PostUserMessage("b")
	if len(d.runs) != 1 {
		t.Fatalf("scheduled %d runs, want 1 while one is pending", len(d.runs))
	}
	if n := m.UserMessageCount(); n != 4 {
		t.Fatalf("UserMessageCount = %d, want 4", n)
	}
	d.runAll()
	inv.wantInvoked(t, "[flush a flush b]")
	if n := m.UserMessageCount(); n != 0 {
		t.Fatalf("UserMessageCount = %d after the run, want 0", n)
	}
	m.wake()
	if len(d.runs) != 1 {
		t.Fatal("a wake after the run went idle did not schedule a run")
	}
	d.runAll()
	if got := inv.got[len(inv.got)-1]; got != "flush" {
		t.Fatalf("last invoked %q, want flush", got)
	}
}

func TestMailboxSystemFirstAndSuspension(t *testing.T) {
	m, d, inv := newTestMailbox()
	m.PostUserMessage("a")
	m.PostSystemMessage(&actor.SuspendMailbox{})
	m.PostSystemMessage("stop")
	m.wake()
	d.runAll()
	inv.wantInvoked(t, "[sys:stop]")
	m.PostUserMessage("b") // still suspended: no user message runs
	d.runAll()
	inv.wantInvoked(t, "[sys:stop]")
	m.PostSystemMessage(&actor.ResumeMailbox{})
	d.runAll()
	inv.wantInvoked(t, "[sys:stop a flush b]") // the wake found "a" queued, so it queued behind it
}

func TestMailboxEscalatesAPanicAndGoesOn(t *testing.T) {
	m, d, inv := newTestMailbox()
	inv.panicOn = "bad"
	m.PostUserMessage("bad")
	m.PostUserMessage("after")
	d.runAll()
	if len(inv.escalated) != 1 || inv.escalated[0] != "bad" {
		t.Fatalf("escalated %v, want [bad]", inv.escalated)
	}
	// The supervisor suspends the mailbox on a failure and resumes it after
	// the restart; here nobody suspended it, so the rest still runs.
	inv.wantInvoked(t, "[after]")
}

// TestMailboxConcurrentPostsAllRun: posters on several goroutines, half of
// them running the mailbox themselves (postHere) while the others' runs go
// to a real dispatcher; every message runs once, each poster's in order.
func TestMailboxConcurrentPostsAllRun(t *testing.T) {
	m := newMailbox(theFlush)
	inv := &recordingInvoker{}
	m.RegisterHandlers(inv, actor.NewDefaultDispatcher(300))
	const posters, each = 4, 500
	var wg sync.WaitGroup
	for p := range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if msg := fmt.Sprintf("%d-%d", p, i); p%2 == 0 {
					m.PostUserMessage(msg)
				} else {
					m.postHere(msg, 3)
				}
				m.wake()
			}
		}()
	}
	wg.Wait()
	for range 2000 { // the last run may still be going
		inv.mu.Lock()
		n := 0
		for _, s := range inv.got {
			if s != "flush" {
				n++
			}
		}
		inv.mu.Unlock()
		if n == posters*each && m.UserMessageCount() == 0 && m.status.Load() == mailboxIdle {
			break
		}
		time.Sleep(time.Millisecond)
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	last := map[string]int{}
	n := 0
	for _, s := range inv.got {
		if s == "flush" {
			continue
		}
		n++
		var p, i int
		fmt.Sscanf(s, "%d-%d", &p, &i)
		if prev, ok := last[fmt.Sprint(p)]; ok && i != prev+1 {
			t.Fatalf("poster %d: %d after %d", p, i, prev)
		}
		last[fmt.Sprint(p)] = i
	}
	if n != posters*each {
		t.Fatalf("ran %d user messages, want %d", n, posters*each)
	}
}

func TestMailboxPostHereRunsOnTheCallerWhenIdle(t *testing.T) {
	m, d, inv := newTestMailbox()
	m.postHere("a", 32)
	inv.wantInvoked(t, "[a]") // on the caller
	d.wantScheduled(t, 0)
	if m.status.Load() != mailboxIdle || m.UserMessageCount() != 0 {
		t.Fatal("mailbox not idle and empty after postHere ran it")
	}

	// A run is scheduled (not yet running): postHere only queues.
	m.PostUserMessage("b")
	m.postHere("c", 32)
	inv.wantInvoked(t, "[a]")
	d.wantScheduled(t, 1)
	d.runAll()
	inv.wantInvoked(t, "[a b c]")
}

func TestMailboxPostHereHandsTheRestToTheDispatcher(t *testing.T) {
	m, d, inv := newTestMailbox()
	// Messages queued while idle (as by a concurrent poster that lost the
	// race to schedule), then postHere with a limit of 2.
	queueUnscheduled(m, "x", "y", "z")
	m.postHere("w", 2)
	inv.wantInvoked(t, "[x y]") // on the caller
	d.wantScheduled(t, 1)       // for the rest
	d.runAll()
	inv.wantInvoked(t, "[x y z w]")
}

func TestMailboxPostHereAfterAPanicLeavesTheRestToTheSupervisor(t *testing.T) {
	m, d, inv := newTestMailbox()
	inv.panicOn = "bad"
	queueUnscheduled(m, "bad")
	m.postHere("after", 32)
	if len(inv.escalated) != 1 {
		t.Fatalf("escalated %v, want the panic", inv.escalated)
	}
	if len(d.runs) != 1 {
		t.Fatalf("%d runs scheduled after the panic, want 1 for what is left", len(d.runs))
	}
	d.runAll()
	inv.wantInvoked(t, "[after]")
}

// hereHooks records runHere's begin and end calls; begin answers ok.
type hereHooks struct {
	ok        bool
	calls     []string
	postOnEnd any // posted to m by end, as the connection's EndNoBlock does
	m         *mailbox
}

func (h *hereHooks) begin() bool { h.calls = append(h.calls, "begin"); return h.ok }
func (h *hereHooks) end() {
	h.calls = append(h.calls, "end")
	if h.postOnEnd != nil {
		h.m.PostUserMessage(h.postOnEnd)
	}
}

func TestMailboxRunHereRunsTheWakeOnTheCallerWhenIdle(t *testing.T) {
	m, d, inv := newTestMailbox()
	var here []bool // m.here as the actor saw it, per message
	inv.during = func() { here = append(here, m.here) }
	h := &hereHooks{ok: true, m: m}
	m.runHere(h.begin, h.end)
	inv.wantInvoked(t, "[flush]") // on the caller, before runHere returned
	d.wantScheduled(t, 0)
	if fmt.Sprint(h.calls) != "[begin end]" {
		t.Fatalf("hooks %v, want [begin end]", h.calls)
	}
	if m.status.Load() != mailboxIdle || m.UserMessageCount() != 0 {
		t.Fatal("mailbox not idle and empty after runHere ran it")
	}

	// What end posts (the flush of bytes a non-blocking write left held)
	// goes to the dispatcher, after the run.
	h.postOnEnd = "flush-held"
	m.runHere(h.begin, h.end)
	inv.wantInvoked(t, "[flush flush]")
	d.wantScheduled(t, 1)
	d.runAll()
	inv.wantInvoked(t, "[flush flush flush-held]")
	if fmt.Sprint(here) != "[true true false]" {
		t.Fatalf("the actor saw here = %v, want [true true false] (a run on the caller, then the dispatcher's)", here)
	}
}

func TestMailboxRunHereDefersToTheDispatcher(t *testing.T) {
	runAll := func(_ *mailbox, d *manualDispatcher) { d.runAll() }
	for _, c := range []struct {
		name          string
		begin         bool
		setup         func(m *mailbox)
		wantCalls     string // runHere's hooks
		wantScheduled int    // after runHere
		finish        func(m *mailbox, d *manualDispatcher)
		want          string // invoked after finish
	}{
		{"begin refuses", false, func(*mailbox) {}, "[begin]", 1, runAll, "[flush]"},
		// Something else waits (a subscribe, a replay page): the wake-up
		// queues behind it and the run is the dispatcher's, in order.
		{"messages queued", true, func(m *mailbox) { queueUnscheduled(m, "page") }, "[]", 1, runAll, "[page flush]"},
		{"system message queued", true, func(m *mailbox) { m.PostSystemMessage("sys") }, "[]", 1, runAll, "[sys:sys flush]"},
		// Another goroutine's run has taken everything and not yet gone
		// idle: the wake-up is left to it (its last look).
		{"run in progress", true, func(m *mailbox) { m.status.Store(mailboxScheduled) }, "[]", 0,
			func(m *mailbox, _ *manualDispatcher) { m.process() }, "[flush]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, d, inv := newTestMailbox()
			h := &hereHooks{ok: c.begin, m: m}
			c.setup(m)
			m.runHere(h.begin, h.end)
			inv.wantInvoked(t, "[]")
			d.wantScheduled(t, c.wantScheduled)
			if got := fmt.Sprint(h.calls); got != c.wantCalls {
				t.Fatalf("hooks %v, want %s", got, c.wantCalls)
			}
			c.finish(m, d)
			inv.wantInvoked(t, c.want)
		})
	}
}

// growInvoker posts one message for each it handles, so the queue never
// empties (two long), and records the largest array the queue had.
type growInvoker struct {
	m      *mailbox
	left   int
	seen   []int
	maxCap int
}

func (g *growInvoker) InvokeSystemMessage(any) {}
func (g *growInvoker) InvokeUserMessage(msg any) {
	g.seen = append(g.seen, msg.(int))
	g.maxCap = max(g.maxCap, cap(g.m.user))
	if g.left > 0 {
		g.left--
		g.m.PostUserMessage(g.left)
	}
}
func (g *growInvoker) EscalateFailure(any, any) {}

// A queue that never empties keeps an array of a few times its length, not
// one of every message handled since it was last empty; order holds.
func TestMailboxQueueThatNeverEmptiesStaysSmall(t *testing.T) {
	const handled = 100_000
	d, m := &manualDispatcher{}, newMailbox(nil)
	g := &growInvoker{m: m, left: handled}
	m.RegisterHandlers(g, d)
	m.PostUserMessage(-1)
	m.PostUserMessage(-2)
	d.runAll()
	if g.maxCap > 64 {
		t.Fatalf("a queue at most 2 long grew an array of %d entries over %d messages", g.maxCap, handled)
	}
	if len(g.seen) != handled+2 {
		t.Fatalf("handled %d messages, want %d", len(g.seen), handled+2)
	}
	for i := 2; i < len(g.seen); i++ {
		if g.seen[i] != handled-(i-1) {
			t.Fatalf("message %d is %d, want %d (posting order)", i, g.seen[i], handled-(i-1))
		}
	}
}
