package actors

import "testing"

// TestSpreadIsOneShareUnlessOneIsRunning: a wide quiet fan-out is one
// share while no earlier share of the topic runs, t.shares while one does,
// and every owed outbox is woken exactly once, on the share's goroutine
// (wakeHere), either way.
func TestSpreadIsOneShareUnlessOneIsRunning(t *testing.T) {
	d := &manualDispatcher{}
	ta := &topicActor{topicDeps: topicDeps{spread: d, shares: 4}}
	woken := map[*outbox]int{}
	owed := func(n int) []*outbox {
		out := make([]*outbox, n)
		for i := range out {
			o := newOutbox(10, 1<<20, PolicyDropOldest, func() { t.Error("woken off the share") }, func() {})
			o.wakeHere = func() { woken[o]++ }
			out[i] = o
		}
		return out
	}

	first := owed(10)
	ta.spreadFanOut(first)
	d.wantScheduled(t, 1) // nothing of this topic was running
	second := owed(10)
	ta.spreadFanOut(second)
	d.wantScheduled(t, 1+4) // the first share still runs: one per P
	d.runAll()
	if n := ta.spreading.Load(); n != 0 {
		t.Fatalf("%d shares still counted as running after all ran", n)
	}
	for _, o := range append(first, second...) {
		if woken[o] != 1 {
			t.Fatalf("an owed outbox was woken %d times, want 1", woken[o])
		}
	}
	ta.spreadFanOut(owed(3))
	d.wantScheduled(t, 1) // none running again
}
