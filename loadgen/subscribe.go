package loadgen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// fleet is the set of subscriber connections of one run and their readers.
type fleet struct {
	prefix string
	clock  runClock
	lat    *histogram // publish-to-receive latency, shared by all readers

	subs  []*subTracker // by subscriber index; nil where the connect failed
	conns []subConn

	readers   sync.WaitGroup
	closing   atomic.Bool
	delivered atomic.Uint64 // every delivery
	fresh     atomic.Uint64 // deliveries that were neither duplicate nor foreign
	connected atomic.Int64
	failed    atomic.Int64
	dropped   atomic.Int64 // readers whose connection ended before closeAll (see held)
	connHist  histogram    // time from dial to confirmed subscription
	errs      errorLog
}

func newFleet(n int, prefix string, clock runClock, lat *histogram) *fleet {
	return &fleet{prefix: prefix, clock: clock, lat: lat, subs: make([]*subTracker, n), conns: make([]subConn, n)}
}

// connectAll opens cfg.Subscribers connections, cfg.DialConc at a time, each
// subscribed to topic i mod cfg.Topics, and starts a reader for each. It stops
// early when ctx ends (the connect-phase bound); connections that did not make
// it count as failed.
func (f *fleet) connectAll(ctx context.Context, cfg Config, d driver, topics []string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	n := int64(len(f.subs))
	for range min(cfg.DialConc, len(f.subs)) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if ctx.Err() != nil {
					f.failed.Add(1)
					f.errs.note("connect", fmt.Errorf("connect phase bound %s reached", cfg.ConnectTime))
					continue
				}
				f.connectOne(ctx, int(i), cfg, d, topics)
			}
		})
	}
	wg.Wait()
}

func (f *fleet) connectOne(ctx context.Context, i int, cfg Config, d driver, topics []string) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t := i % cfg.Topics
	start := time.Now()
	conn, err := d.connect(dctx, topics[t])
	if err != nil {
		f.failed.Add(1)
		f.errs.note("connect", err)
		return
	}
	f.connHist.record(time.Since(start))
	tr := newSubTracker(t, cfg.Publishers, uint64(cfg.Messages)+1)
	f.subs[i], f.conns[i] = tr, conn
	f.connected.Add(1)
	f.readers.Add(1)
	go f.read(tr, conn)
}

// read runs one subscriber's read loop until its connection ends.
func (f *fleet) read(tr *subTracker, conn subConn) {
	defer f.readers.Done()
	err := conn.readLoop(func(topic []byte, p payload, perr error) {
		if perr != nil {
			tr.malformed++
			f.errs.note("frame", perr)
			return
		}
		ti, ok := topicIndex(f.prefix, topic)
		if !ok {
			ti = -1
		}
		if tr.observe(ti, p, f.clock.nowNs(), f.lat) {
			f.fresh.Add(1)
		}
		f.delivered.Add(1)
	})
	if !f.closing.Load() {
		f.dropped.Add(1)
		tr.dropped = true
		tr.firstErr = err
		f.errs.note("subscriber dropped", err)
	}
}

// held is the subscribers connected and not dropped so far: those whose
// connection (a WebSocket, an SSE stream, a long-poll loop) is still open.
// A long-poll answered 429 or a stream the server closed counts as
// connected but is not held.
func (f *fleet) held() int { return int(f.connected.Load() - f.dropped.Load()) }

// subscribersOn counts, per topic, the subscribers still connected.
func (f *fleet) subscribersOn(topics int) []int {
	on := make([]int, topics)
	for _, s := range f.subs {
		if s != nil {
			on[s.topic]++
		}
	}
	return on
}

// closeAll ends every connection and waits (at most bound) for the readers.
// After it returned nil, the trackers may be read.
func (f *fleet) closeAll(bound time.Duration) error {
	f.closing.Store(true)
	for _, c := range f.conns {
		if c != nil {
			c.close()
		}
	}
	done := make(chan struct{})
	go func() { f.readers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(bound):
		return fmt.Errorf("subscriber readers still running %s after close", bound)
	}
}

// errorLog counts errors by kind and keeps the first few messages. Safe for
// concurrent use.
type errorLog struct {
	mu     sync.Mutex
	counts map[string]int
	first  []string
}

const errorLogKeep = 5

func (l *errorLog) note(kind string, err error) { l.noteN(kind, err, 1) }

// noteN counts n errors of kind, keeping err's message if there is room.
func (l *errorLog) noteN(kind string, err error, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = make(map[string]int)
	}
	l.counts[kind] += n
	if len(l.first) < errorLogKeep && err != nil {
		l.first = append(l.first, kind+": "+err.Error())
	}
}

// snapshot returns a copy of the counts and first messages.
func (l *errorLog) snapshot() (map[string]int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	counts := make(map[string]int, len(l.counts))
	for k, v := range l.counts {
		counts[k] = v
	}
	return counts, append([]string(nil), l.first...)
}
