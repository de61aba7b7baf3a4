package relaytest

import (
	"sync"
	"sync/atomic"
)

// Publishers runs n goroutines; goroutine p calls publish(p, i) for i = 0,
// 1, ... max-1, and stops early when stop is closed (nil: never) or
// publish returns false. The returned wait blocks until all have finished
// and returns how many calls returned true.
func Publishers(n, max int, stop <-chan struct{}, publish func(p, i int) bool) (wait func() int64) {
	var wg sync.WaitGroup
	var ok atomic.Int64
	for p := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range max {
				select {
				case <-stop:
					return
				default:
				}
				if !publish(p, i) {
					return
				}
				ok.Add(1)
			}
		}()
	}
	return func() int64 { wg.Wait(); return ok.Load() }
}
