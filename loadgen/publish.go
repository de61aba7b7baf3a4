package loadgen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// pubStats are the publishers' running counters.
type pubStats struct {
	ok     atomic.Uint64
	failed atomic.Uint64
	errs   errorLog
}

// publishAll sends up to cfg.Messages messages from cfg.Publishers goroutines.
// Message j goes to topic j mod cfg.Topics; with cfg.Rate > 0 it is sent no
// earlier than start + j/Rate. No message is started after start +
// cfg.Duration (in-flight requests finish under the request timeout), and
// none after ctx ends. Acknowledged seqs go into acc (row k by publisher k).
// It returns when every publisher has stopped.
func publishAll(ctx context.Context, cfg Config, d driver, clock runClock, topics []string, acc acceptedSet, st *pubStats) {
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var next atomic.Int64
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	var wg sync.WaitGroup
	for k := range cfg.Publishers {
		wg.Go(func() {
			seqs := make([]uint64, cfg.Topics)
			var pbuf, body []byte
			for {
				j := next.Add(1) - 1
				if j >= int64(cfg.Messages) {
					return
				}
				if interval > 0 && !sleepUntil(wctx, start.Add(time.Duration(j)*interval)) {
					return
				}
				if wctx.Err() != nil {
					return
				}
				t := int(j % int64(cfg.Topics))
				seq := seqs[t]
				seqs[t]++
				pbuf = appendPayload(pbuf[:0], payload{Seq: seq, SentNs: clock.nowNs(), Pub: k}, cfg.Pad)
				body = d.appendPublishBody(body[:0], topics[t], pbuf)
				// The parent ctx, not wctx: a request in flight at the deadline
				// finishes (bounded by the client's request timeout), so its
				// outcome is known.
				if err := d.publish(ctx, body); err != nil {
					st.failed.Add(1)
					kind := "publish"
					var pe *publishError
					if errors.As(err, &pe) {
						kind = "publish " + pe.Kind
					}
					st.errs.note(kind, err)
					continue
				}
				acc[k][t].set(seq)
				st.ok.Add(1)
			}
		})
	}
	wg.Wait()
}

// sleepUntil waits until t; it returns false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
