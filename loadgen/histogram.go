package loadgen

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram records durations in log-linear buckets: exact below 128 ns, then
// 64 buckets per power of two (relative error under 1.6%). Record is safe for
// concurrent use (atomic adds, no locks), so every subscriber goroutine shares
// one histogram. Reads (quantile, max) must follow the last Record.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	maxNs  atomic.Int64
	total  atomic.Uint64
}

const (
	histLinear  = 128 // values below this are their own bucket
	histSub     = 64  // buckets per power of two above histLinear
	histBuckets = histLinear + 57*histSub
)

// bucketOf maps a non-negative value to its bucket index.
func bucketOf(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	e := bits.Len64(v) - 7 // v>>e is in [64,128)
	return histLinear + (e-1)*histSub + int(v>>uint(e)) - histSub
}

// bucketRange returns the smallest and largest values of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < histLinear {
		return uint64(i), uint64(i)
	}
	i -= histLinear
	e := uint(i/histSub + 1)
	m := uint64(i%histSub + histSub)
	return m << e, (m+1)<<e - 1
}

// record adds one observation; negative durations count as zero.
func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))].Add(1)
	h.total.Add(1)
	for {
		m := h.maxNs.Load()
		if v <= m || h.maxNs.CompareAndSwap(m, v) {
			return
		}
	}
}

// count returns the number of observations.
func (h *histogram) count() uint64 { return h.total.Load() }

// max returns the largest observation, exactly.
func (h *histogram) max() time.Duration { return time.Duration(h.maxNs.Load()) }

// quantile returns the q-quantile (0 < q <= 1): the midpoint of the bucket
// holding the ceil(q*n)-th smallest observation, capped at the exact max.
// It returns 0 for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n))
	if float64(rank) < q*float64(n) {
		rank++
	}
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			mid := time.Duration(lo + (hi-lo)/2)
			return min(mid, h.max())
		}
	}
	return h.max()
}
