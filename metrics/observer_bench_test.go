package metrics

import (
	"testing"
	"time"
)

// BenchmarkDeliveryObservation is what the Registry adds to one delivery:
// the latency observation on a subscription's pre-resolved topic handle,
// plus its share of the per-batch delivered count (batches of up to 256).
// Each goroutine is one subscriber's connection, all on the same topic.
func BenchmarkDeliveryObservation(b *testing.B) {
	r := New(DefaultMaxTopics)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		h := r.Topic("bench")
		i := 0
		for pb.Next() {
			h.DeliveryLatency(150 * time.Microsecond)
			if i++; i%256 == 0 {
				r.Delivered("ws", 256)
			}
		}
	})
}
