package loadgen

import (
	"sync"
	"testing"
	"time"
)

func TestBucketRangeCoversEveryValue(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 123456789, 1<<62 + 12345, 1<<64 - 1} {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of [0,%d)", v, i, histBuckets)
		}
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d = [%d,%d]", v, i, lo, hi)
		}
		if v >= histLinear && float64(hi-lo)/float64(lo) > 1.0/histSub+1e-9 {
			t.Errorf("bucket %d = [%d,%d] wider than 1/%d", i, lo, hi, histSub)
		}
	}
}

func TestQuantiles(t *testing.T) {
	tests := []struct {
		name  string
		fill  func(h *histogram)
		q     float64
		want  time.Duration
		slack float64 // relative
	}{
		{"empty", func(*histogram) {}, 0.5, 0, 0},
		{"single", func(h *histogram) { h.record(3 * time.Millisecond) }, 0.99, 3 * time.Millisecond, 0.02},
		{"uniform p50", fillUniform, 0.5, 5000 * time.Microsecond, 0.02},
		{"uniform p90", fillUniform, 0.9, 9000 * time.Microsecond, 0.02},
		{"uniform p99", fillUniform, 0.99, 9900 * time.Microsecond, 0.02},
		{"uniform p100 is the exact max", fillUniform, 1, 10000 * time.Microsecond, 0},
		{"small exact", func(h *histogram) {
			for i := 1; i <= 100; i++ {
				h.record(time.Duration(i))
			}
		}, 0.9, 90, 0},
		{"negative counts as zero", func(h *histogram) { h.record(-5) }, 0.5, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h histogram
			tc.fill(&h)
			got := h.quantile(tc.q)
			diff := float64(got - tc.want)
			if diff < 0 {
				diff = -diff
			}
			if diff > tc.slack*float64(tc.want) {
				t.Errorf("quantile(%g) = %v, want %v ± %.0f%%", tc.q, got, tc.want, tc.slack*100)
			}
		})
	}
}

// fillUniform records 1 µs .. 10000 µs, one each.
func fillUniform(h *histogram) {
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
}

func TestHistogramConcurrentRecord(t *testing.T) {
	var h histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.record(time.Duration(g*1000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if h.count() != 8000 {
		t.Fatalf("count = %d, want 8000", h.count())
	}
	if h.max() != 7999*time.Microsecond {
		t.Fatalf("max = %v, want 7.999ms", h.max())
	}
}

func TestBitset(t *testing.T) {
	var a, b bitset
	for _, i := range []uint64{0, 1, 63, 64, 1000} {
		if a.set(i) {
			t.Fatalf("set(%d) reported present on first insert", i)
		}
	}
	if !a.set(63) {
		t.Fatal("set(63) twice: want already present")
	}
	if !a.has(1000) || a.has(999) || a.has(1<<30) {
		t.Fatal("has: wrong membership")
	}
	b.set(1)
	b.set(1000)
	b.set(5000)
	if got := a.count(); got != 5 {
		t.Fatalf("count = %d, want 5", got)
	}
	if got := a.andNotCount(&b); got != 3 {
		t.Fatalf("a\\b = %d, want 3", got)
	}
	if got := b.andNotCount(&a); got != 1 {
		t.Fatalf("b\\a = %d, want 1", got)
	}
	var empty bitset
	if empty.andNotCount(&a) != 0 || a.andNotCount(&empty) != 5 {
		t.Fatal("andNotCount with an empty set")
	}
}
