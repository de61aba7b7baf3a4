package loadgen

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progress prints one status line per interval to w until stopped.
type progress struct {
	cur  atomic.Pointer[string]
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func startProgress(w io.Writer, every time.Duration, f *fleet, p *pubStats, cfg Config) *progress {
	pr := &progress{done: make(chan struct{})}
	pr.phase("start")
	if w == nil {
		return pr
	}
	start := time.Now()
	pr.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-pr.done:
				return
			case <-tick.C:
			}
			fmt.Fprintf(w, "bench %6.1fs %-7s connected %d/%d (failed %d)  published %d/%d (failed %d, refused %d)  delivered %d\n",
				time.Since(start).Seconds(), *pr.cur.Load(), f.connected.Load(), cfg.Subscribers, f.failed.Load(),
				p.ok.Load(), cfg.Messages, p.failed.Load(), p.refused.Load(), f.delivered.Load())
		}
	})
	return pr
}

// phase names the current phase in the next lines.
func (pr *progress) phase(name string) { pr.cur.Store(&name) }

// stop ends the printer and waits for it; safe to call more than once.
func (pr *progress) stop() {
	pr.once.Do(func() { close(pr.done) })
	pr.wg.Wait()
}
