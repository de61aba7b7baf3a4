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
}

func (r *recordingInvoker) InvokeSystemMessage(msg any) { r.add("sys:" + name(msg)) }
func (r *recordingInvoker) InvokeUserMessage(msg any) {
	if r.panicOn != nil && msg == r.panicOn {
		panic("boom")
	}
	r.add(name(msg))
}
func (r *recordingInvoker) EscalateFailure(reason, msg any) {
	r.mu.Lock()
	r.escalated = append(r.escalated, msg)
	r.mu.Unlock()
}
func (r *recordingInvoker) add(s string) { r.mu.Lock(); r.got = append(r.got, s); r.mu.Unlock() }

func name(msg any) string {
	if msg == any(theFlush) {
		return "flush"
	}
	return fmt.Sprint(msg)
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
	want := []string{"flush", "a", "flush", "b"}
	if fmt.Sprint(inv.got) != fmt.Sprint(want) {
		t.Fatalf("invoked %v, want %v", inv.got, want)
	}
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
	if want := []string{"sys:stop"}; fmt.Sprint(inv.got) != fmt.Sprint(want) {
		t.Fatalf("invoked %v while suspended, want %v", inv.got, want)
	}
	m.PostUserMessage("b") // still suspended: no user message runs
	d.runAll()
	if len(inv.got) != 1 {
		t.Fatalf("invoked %v while suspended", inv.got)
	}
	m.PostSystemMessage(&actor.ResumeMailbox{})
	d.runAll()
	want := []string{"sys:stop", "a", "flush", "b"} // the wake found "a" queued, so it queued behind it
	if fmt.Sprint(inv.got) != fmt.Sprint(want) {
		t.Fatalf("invoked %v after resume, want %v", inv.got, want)
	}
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
	if fmt.Sprint(inv.got) != "[after]" {
		t.Fatalf("invoked %v after the panic, want [after]", inv.got)
	}
}

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
				m.PostUserMessage(fmt.Sprintf("%d-%d", p, i))
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
	if fmt.Sprint(inv.got) != "[a]" || len(d.runs) != 0 {
		t.Fatalf("idle mailbox: invoked %v, %d runs scheduled; want [a] on the caller, none scheduled", inv.got, len(d.runs))
	}
	if m.status.Load() != mailboxIdle || m.UserMessageCount() != 0 {
		t.Fatal("mailbox not idle and empty after postHere ran it")
	}

	// A run is scheduled (not yet running): postHere only queues.
	m.PostUserMessage("b")
	m.postHere("c", 32)
	if fmt.Sprint(inv.got) != "[a]" || len(d.runs) != 1 {
		t.Fatalf("with a run scheduled: invoked %v, %d runs; want nothing more on the caller, 1 run", inv.got, len(d.runs))
	}
	d.runAll()
	if fmt.Sprint(inv.got) != "[a b c]" {
		t.Fatalf("invoked %v, want [a b c]", inv.got)
	}
}

func TestMailboxPostHereHandsTheRestToTheDispatcher(t *testing.T) {
	m, d, inv := newTestMailbox()
	// Messages queued while idle (as by a concurrent poster that lost the
	// race to schedule), then postHere with a limit of 2.
	m.mu.Lock()
	m.user = append(m.user, "x", "y", "z")
	m.pending.Add(3)
	m.mu.Unlock()
	m.postHere("w", 2)
	if fmt.Sprint(inv.got) != "[x y]" || len(d.runs) != 1 {
		t.Fatalf("invoked %v on the caller with %d runs scheduled; want [x y] and 1 run for the rest", inv.got, len(d.runs))
	}
	d.runAll()
	if fmt.Sprint(inv.got) != "[x y z w]" {
		t.Fatalf("invoked %v, want [x y z w]", inv.got)
	}
}

func TestMailboxPostHereAfterAPanicLeavesTheRestToTheSupervisor(t *testing.T) {
	m, d, inv := newTestMailbox()
	inv.panicOn = "bad"
	m.mu.Lock()
	m.user = append(m.user, "bad")
	m.pending.Add(1)
	m.mu.Unlock()
	m.postHere("after", 32)
	if len(inv.escalated) != 1 {
		t.Fatalf("escalated %v, want the panic", inv.escalated)
	}
	if len(d.runs) != 1 {
		t.Fatalf("%d runs scheduled after the panic, want 1 for what is left", len(d.runs))
	}
	d.runAll()
	if fmt.Sprint(inv.got) != "[after]" {
		t.Fatalf("invoked %v, want [after]", inv.got)
	}
}
