package actors

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestEntryCloseRacesAcquire: once tryClose wins, no acquire succeeds; an
// acquire that won first keeps the entry open until released. This is the
// handshake that lets an idle topic actor stop while publishes arrive.
func TestEntryCloseRacesAcquire(t *testing.T) {
	for range 2000 {
		e := &topicEntry{}
		var acquired atomic.Int64
		var closed atomic.Bool
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if e.acquire(0) == nil {
					if closed.Load() {
						t.Error("acquired a closed entry")
					}
					acquired.Add(1)
					e.release()
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !e.tryClose() {
				if e.inflight.Load() < 0 {
					return
				}
			}
			closed.Store(true)
		}()
		wg.Wait()
		if !closed.Load() || e.acquire(0) != errEntryClosed {
			t.Fatal("the entry did not end closed")
		}
	}
}
