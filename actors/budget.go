package actors

import "sync/atomic"

// byteBudget bounds bytes held across goroutines (the process's replay
// pages). Safe for concurrent use.
type byteBudget struct {
	limit int64
	used  atomic.Int64
	obs   ReplayObserver
}

func newByteBudget(limit int, obs ReplayObserver) *byteBudget {
	return &byteBudget{limit: int64(limit), obs: obs}
}

// tryAcquire reserves n bytes if they fit. When nothing is reserved it
// always succeeds, so one page larger than the whole budget still moves.
func (b *byteBudget) tryAcquire(n int) bool {
	for {
		u := b.used.Load()
		if u > 0 && u+int64(n) > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+int64(n)) {
			b.obs.ReplayBytes(n)
			return true
		}
	}
}

// release returns n bytes reserved by tryAcquire.
func (b *byteBudget) release(n int) {
	b.used.Add(-int64(n))
	b.obs.ReplayBytes(-n)
}

// inUse reports the bytes reserved now.
func (b *byteBudget) inUse() int64 { return b.used.Load() }
