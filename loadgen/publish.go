package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// pubStats are the publishers' running counters. A publish answered 503 or
// 429 (isRefusal) is "refused": it counts in refused, not failed, and its
// request's time (sent until answered) goes into refusedLat; okLat has the
// same time for acknowledged requests. For bulk requests the counts are
// messages and the histograms have one entry per request; items a 207
// answer rejects one by one are failures, not refusals.
type pubStats struct {
	ok         atomic.Uint64
	failed     atomic.Uint64
	refused    atomic.Uint64
	okLat      histogram
	refusedLat histogram
	errs       errorLog
}

// publishAll sends up to cfg.Messages messages from cfg.Publishers goroutines.
// Message j goes to topic j mod cfg.Topics; with cfg.Rate > 0 it is sent no
// earlier than start + j/Rate (a bulk request waits for the due time of its
// first message). No request is started after start + cfg.Duration
// (in-flight requests finish under the request timeout), and none after ctx
// ends. Acknowledged seqs go into acc (row k by publisher k). It returns when
// every publisher has stopped.
func publishAll(ctx context.Context, cfg Config, d driver, clock runClock, topics []string, acc acceptedSet, st *pubStats) {
	start := time.Now()
	wctx, cancel := context.WithDeadline(ctx, start.Add(cfg.Duration))
	defer cancel()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	per := int64(max(cfg.Bulk, 1))
	var next atomic.Int64
	var wg sync.WaitGroup
	for k := range cfg.Publishers {
		wg.Go(func() {
			p := publisher{k: k, cfg: cfg, d: d, clock: clock, topics: topics, acc: acc[k], st: st, seqs: make([]uint64, cfg.Topics)}
			for {
				j := next.Add(per) - per
				if j >= int64(cfg.Messages) {
					return
				}
				if interval > 0 && !sleepUntil(wctx, start.Add(time.Duration(j)*interval)) {
					return
				}
				if wctx.Err() != nil {
					return
				}
				// The parent ctx, not wctx: a request in flight at the
				// deadline finishes (bounded by the client's request
				// timeout), so its outcome is known.
				if cfg.Bulk == 0 {
					p.one(ctx, j)
				} else {
					p.bulk(ctx, j, min(j+per, int64(cfg.Messages)))
				}
			}
		})
	}
	wg.Wait()
}

// publisher is one publishing goroutine's state.
type publisher struct {
	k      int
	cfg    Config
	d      driver
	clock  runClock
	topics []string
	acc    []bitset // this publisher's row of the acknowledged set
	st     *pubStats
	seqs   []uint64 // next seq per topic
	pbuf   []byte
	body   []byte
	b      batch
	seqOf  []uint64 // per batch item
	topOf  []int    // per batch item
}

// one publishes message j in its own request.
func (p *publisher) one(ctx context.Context, j int64) {
	t := int(j % int64(p.cfg.Topics))
	seq := p.seqs[t]
	p.seqs[t]++
	p.pbuf = appendPayload(p.pbuf[:0], payload{Seq: seq, SentNs: p.clock.nowNs(), Pub: p.k}, p.cfg.Pad)
	p.body = p.d.appendPublishBody(p.body[:0], p.topics[t], p.pbuf)
	t0 := time.Now()
	err := p.d.publish(ctx, p.body)
	took := time.Since(t0)
	if err != nil {
		p.fail(err, 1, took)
		return
	}
	p.st.okLat.record(took)
	p.acc[t].set(seq)
	p.st.ok.Add(1)
}

// bulk publishes messages [from, to) in one bulk request.
func (p *publisher) bulk(ctx context.Context, from, to int64) {
	p.b.reset()
	p.seqOf, p.topOf = p.seqOf[:0], p.topOf[:0]
	now := p.clock.nowNs()
	for j := from; j < to; j++ {
		t := int(j % int64(p.cfg.Topics))
		seq := p.seqs[t]
		p.seqs[t]++
		p.b.topics = append(p.b.topics, p.topics[t])
		p.b.payloads = append(p.b.payloads, appendPayload(nil, payload{Seq: seq, SentNs: now, Pub: p.k}, p.cfg.Pad))
		p.seqOf, p.topOf = append(p.seqOf, seq), append(p.topOf, t)
	}
	t0 := time.Now()
	err := p.d.publishBatch(ctx, &p.b)
	took := time.Since(t0)
	if err != nil {
		p.fail(err, len(p.b.topics), took)
		return
	}
	p.st.okLat.record(took)
	rejected := 0
	for i, ok := range p.b.ok {
		if !ok {
			rejected++
			continue
		}
		p.acc[p.topOf[i]].set(p.seqOf[i])
		p.st.ok.Add(1)
	}
	if rejected > 0 {
		p.st.failed.Add(uint64(rejected))
		p.st.errs.noteN("publish bulk item rejected", fmt.Errorf("%d of %d items rejected", rejected, len(p.b.ok)), rejected)
	}
}

// fail counts n messages as not acknowledged because of err, in a request
// that took took: as refused if the server answered 503 or 429, else as
// failed.
func (p *publisher) fail(err error, n int, took time.Duration) {
	if isRefusal(err) {
		p.st.refused.Add(uint64(n))
		p.st.refusedLat.record(took)
		var pe *publishError
		errors.As(err, &pe)
		p.st.errs.noteN("refused "+strconv.Itoa(pe.Status), nil, n) // counted by status; first errors keep real failures
		return
	}
	p.st.failed.Add(uint64(n))
	kind := "publish"
	var pe *publishError
	if errors.As(err, &pe) {
		kind = "publish " + pe.Kind
	}
	p.st.errs.noteN(kind, err, n)
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
