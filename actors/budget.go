package actors

import "sync"

// byteBudget bounds bytes held across goroutines (the process's replay
// pages). The observer sees every change under the same lock, so its gauge
// never shows more than the limit. Safe for concurrent use; taken once per
// replay page, not per message.
type byteBudget struct {
	limit int
	obs   ReplayObserver

	mu   sync.Mutex
	used int
}

func newByteBudget(limit int, obs ReplayObserver) *byteBudget {
	return &byteBudget{limit: limit, obs: obs}
}

// tryAcquire reserves n bytes if they fit. When nothing is reserved it
// always succeeds, so one page larger than the whole budget still moves.
func (b *byteBudget) tryAcquire(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > b.limit {
		return false
	}
	b.used += n
	b.obs.ReplayBytes(n)
	return true
}

// release returns n bytes reserved by tryAcquire.
func (b *byteBudget) release(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.obs.ReplayBytes(-n)
}
