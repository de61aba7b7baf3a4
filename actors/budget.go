package actors

import (
	"sync"
	"sync/atomic"
)

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

// hotBudget bounds the bytes all topic actors' hot rings hold together
// (Config.HotTierBytes). A ring charges each entry it keeps and releases
// it when the entry goes (eviction, reset, its actor's stop). While the
// rings hold more than the limit, a ring that adds evicts its own oldest
// entries until it holds at most a fair share, the limit divided by the
// rings holding anything; a message that does not fit even in an empty
// ring's share is not kept, and the ring's base moves past it, so replays
// from before it read the store. A ring only ever trims itself (it belongs
// to its actor's goroutine), so one that filled the budget and went quiet
// keeps its entries until they age out, while the rings that add share
// the rest: together the rings hold at most twice the limit, and a busy
// topic never starves the others. Safe for concurrent use: atomic adds,
// one per entry kept or dropped.
type hotBudget struct {
	limit int64
	used  atomic.Int64
	rings atomic.Int64 // rings holding at least one entry
}

func newHotBudget(limit int64) *hotBudget { return &hotBudget{limit: limit} }

// charge moves the bytes held by n (negative: released). A nil budget
// counts nothing.
func (b *hotBudget) charge(n int64) {
	if b != nil {
		b.used.Add(n)
	}
}

// holding moves the count of rings holding anything by n.
func (b *hotBudget) holding(n int64) {
	if b != nil {
		b.rings.Add(n)
	}
}

// over reports whether a ring holding held bytes must give some up: the
// rings hold more than the limit and it more than its share.
func (b *hotBudget) over(held int64) bool {
	if b == nil || b.used.Load() <= b.limit {
		return false
	}
	return held > b.limit/max(b.rings.Load(), 1)
}

// bytes is what the rings hold now, for a gauge.
func (b *hotBudget) bytes() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}
