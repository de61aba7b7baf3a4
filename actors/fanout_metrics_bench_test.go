package actors_test

import (
	"testing"

	"github.com/pulsar-relay/relay/metrics"
)

// BenchmarkTopicFanOut1000Metrics is BenchmarkTopicFanOut1000 with the
// Prometheus observer on: the difference is the cost of metrics on the hot
// path (one histogram observation per delivery, one counter add per batch).
func BenchmarkTopicFanOut1000Metrics(b *testing.B) {
	benchFanOut(b, 1000, metrics.New(metrics.DefaultMaxTopics))
}
