package metrics

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBounds are the upper bounds of relay_message_latency_seconds: a
// delivery on one host takes tens of microseconds, a stalled one seconds.
var latencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

const numLatencyBounds = len(latencyBounds)

// latencyHistogram is relay_message_latency_seconds, one series per topic
// label value. It is observed once per delivery by every connection actor
// subscribed to the topic, so a plain prometheus.Histogram, whose atomics
// all those cores would share, costs about twice as much under contention as
// alone. Each series is split in shards instead; Registry.Topic hands out
// the shards in turn, so subscriptions spread over them, and a scrape adds
// them up. An observation is two uncontended atomic adds.
type latencyHistogram struct {
	desc    *prometheus.Desc
	nshards int

	mu     sync.Mutex
	series []*latencySeries // append-only
}

type latencySeries struct {
	label  string
	shards []*latencyShard
}

// latencyShard counts observations per bucket (the last is +Inf) and their
// sum in nanoseconds; the count is the sum of the buckets, so a scrape sees
// a count that agrees with its buckets.
type latencyShard struct {
	buckets [numLatencyBounds + 1]atomic.Uint64
	sumNs   atomic.Int64
	_       [64]byte // keep shards off each other's cache lines
}

func newLatencyHistogram(name, help, label string) *latencyHistogram {
	n := 2 * runtime.GOMAXPROCS(0)
	n = min(max(n, 2), 16)
	return &latencyHistogram{
		desc:    prometheus.NewDesc(name, help, []string{label}, nil),
		nshards: n,
	}
}

// newSeries adds the series of label value.
func (h *latencyHistogram) newSeries(label string) *latencySeries {
	s := &latencySeries{label: label, shards: make([]*latencyShard, h.nshards)}
	for i := range s.shards {
		s.shards[i] = new(latencyShard)
	}
	h.mu.Lock()
	h.series = append(h.series, s)
	h.mu.Unlock()
	return s
}

func (s *latencyShard) observe(d time.Duration) {
	i := 0
	for i < numLatencyBounds && d > latencyBounds[i] {
		i++
	}
	s.buckets[i].Add(1)
	s.sumNs.Add(int64(d))
}

// Describe implements prometheus.Collector.
func (h *latencyHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect implements prometheus.Collector.
func (h *latencyHistogram) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	series := h.series
	h.mu.Unlock()
	for _, s := range series {
		var counts [numLatencyBounds + 1]uint64
		var sumNs int64
		for _, sh := range s.shards {
			for i := range counts {
				counts[i] += sh.buckets[i].Load()
			}
			sumNs += sh.sumNs.Load()
		}
		buckets := make(map[float64]uint64, numLatencyBounds)
		var cum uint64
		for i, b := range latencyBounds {
			cum += counts[i]
			buckets[b.Seconds()] = cum
		}
		ch <- prometheus.MustNewConstHistogram(h.desc, cum+counts[numLatencyBounds],
			time.Duration(sumNs).Seconds(), buckets, s.label)
	}
}
