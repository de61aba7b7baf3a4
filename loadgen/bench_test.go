package loadgen

import (
	"fmt"
	"testing"
)

// BenchmarkDeliveryPath is the load generator's per-delivery cost after the
// socket read: parse a relay frame, map its topic, account for it. It must
// stay far below the server's own per-delivery cost, or the client would
// limit what the benchmarks measure.
func BenchmarkDeliveryPath(b *testing.B) {
	const n = 1 << 16
	frames := make([][]byte, 1024)
	for i := range frames {
		p := appendPayload(nil, payload{Seq: uint64(i), SentNs: 123456789, Pub: 0}, 0)
		frames[i] = fmt.Appendf(nil, `{"type":"message","message_id":"1700000000000-%d","topic":"bench-1-0","payload":%s,"timestamp":"2026-01-01T00:00:00.000001Z","metadata":{}}`, i, p)
	}
	var h histogram
	tr := newSubTracker(0, 1, n)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%len(frames) == 0 {
			tr = newSubTracker(0, 1, n) // every seq new again
		}
		f, err := parseRelayFrame(frames[i%len(frames)])
		if err != nil {
			b.Fatal(err)
		}
		t, ok := topicIndex("bench-1", f.topic)
		if !ok || !tr.observe(t, f.p, 200000000, &h) {
			b.Fatal("delivery not counted as new")
		}
	}
}

// BenchmarkCentrifugoLine is the parse cost of a Centrifugo publication push.
func BenchmarkCentrifugoLine(b *testing.B) {
	line := []byte(`{"push":{"channel":"bench-1-0","pub":{"data":{"seq":12,"sent_ns":123456789,"pub":3},"offset":13}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseCentrifugoLine(line); err != nil {
			b.Fatal(err)
		}
	}
}
