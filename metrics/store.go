package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// Storage ops, the values of the op label.
const (
	opAppend = iota
	opRange
	opRevRange
	opTips
	opPing
	numOps
)

var opNames = [numOps]string{"append", "range", "rev_range", "tips", "ping"}

// InstrumentStore returns s measured into r: relay_storage_operations_total
// {op, result="ok"|"error"} and relay_storage_latency_seconds{op} for every
// call but Close. An Append that stored only part of its batch is an error.
// With a nil r it returns s itself.
func InstrumentStore(s persistence.Store, r *Registry) persistence.Store {
	if r == nil {
		return s
	}
	registerStoreGauges(s, r)
	is := &instrumentedStore{s: s}
	for op, name := range opNames {
		is.ok[op] = r.storageOps.WithLabelValues(name, "ok")
		is.err[op] = r.storageOps.WithLabelValues(name, "error")
		is.lat[op] = r.storageLatency.WithLabelValues(name)
	}
	return is
}

// registerStoreGauges exports the sizes a store reports about itself (the
// memory store's bounded maps and bytes): relay_store_topics,
// relay_store_bytes and relay_store_idempotency_keys. A store without them exports nothing; a
// second InstrumentStore on the same registry keeps the first gauges.
func registerStoreGauges(s persistence.Store, r *Registry) {
	if ts, ok := s.(interface{ Topics() int }); ok {
		_ = r.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "relay_store_topics",
			Help: "Topics the in-process store holds (emptied ones are swept away).",
		}, func() float64 { return float64(ts.Topics()) }))
	}
	if bs, ok := s.(interface{ Bytes() int64 }); ok {
		_ = r.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "relay_store_bytes",
			Help: "Bytes the in-process store's messages take (payload, metadata and a fixed overhead each; bounded by RELAY_MEMORY_STORE_BYTES).",
		}, func() float64 { return float64(bs.Bytes()) }))
	}
	if ks, ok := s.(interface{ IdempotencyKeys() int }); ok {
		_ = r.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "relay_store_idempotency_keys",
			Help: "Idempotency-Key records the in-process store keeps (bounded).",
		}, func() float64 { return float64(ks.IdempotencyKeys()) }))
	}
}

// instrumentedStore is a Store decorator; its series are resolved once.
type instrumentedStore struct {
	s   persistence.Store
	ok  [numOps]prometheus.Counter
	err [numOps]prometheus.Counter
	lat [numOps]prometheus.Observer
}

var _ persistence.Store = (*instrumentedStore)(nil)

// Unwrap returns the measured store, for callers that look for optional
// interfaces of the store underneath.
func (s *instrumentedStore) Unwrap() persistence.Store { return s.s }

func (s *instrumentedStore) done(op int, start time.Time, err error) {
	s.lat[op].Observe(time.Since(start).Seconds())
	if err != nil {
		s.err[op].Inc()
	} else {
		s.ok[op].Inc()
	}
}

func (s *instrumentedStore) Append(ctx context.Context, topic string, batch []messages.Message) (int, error) {
	start := time.Now()
	n, err := s.s.Append(ctx, topic, batch)
	s.done(opAppend, start, err)
	return n, err
}

// AppendAsync implements persistence.AsyncAppender: the measured store's
// AppendAsync (or Append on a goroutine), timed until done.
func (s *instrumentedStore) AppendAsync(ctx context.Context, topic string, batch []messages.Message, deadline time.Time, done func(int, error)) {
	start := time.Now()
	persistence.AppendAsync(s.s, ctx, topic, batch, deadline, func(n int, err error) {
		s.done(opAppend, start, err)
		done(n, err)
	})
}

func (s *instrumentedStore) Range(ctx context.Context, topic string, after messages.ID, limit int) (persistence.Page, error) {
	start := time.Now()
	p, err := s.s.Range(ctx, topic, after, limit)
	s.done(opRange, start, err)
	return p, err
}

func (s *instrumentedStore) RevRange(ctx context.Context, topic string, before messages.ID, limit int) (persistence.Page, error) {
	start := time.Now()
	p, err := s.s.RevRange(ctx, topic, before, limit)
	s.done(opRevRange, start, err)
	return p, err
}

func (s *instrumentedStore) Tips(ctx context.Context, topics []string) (map[string]persistence.Tip, error) {
	start := time.Now()
	tips, err := s.s.Tips(ctx, topics)
	s.done(opTips, start, err)
	return tips, err
}

func (s *instrumentedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.s.Ping(ctx)
	s.done(opPing, start, err)
	return err
}

// NewFeed is forwarded unmeasured: the feed is a subscription, not a call.
func (s *instrumentedStore) NewFeed(h persistence.FeedHandler) (persistence.Feed, error) {
	return s.s.NewFeed(h)
}

func (s *instrumentedStore) Close() error { return s.s.Close() }
