package actors

import (
	"fmt"
	"testing"

	"github.com/pulsar-relay/relay/messages"
)

// BenchmarkOutboxTopicDropOldest: one push of a frame of a topic at its
// own connection_queue_size under drop-oldest (512, as docs/policies.md's
// jobs.* example) into a connection queue (4,096, the default) that holds
// ahead frames of another topic in front of the topic's 512: each push
// drops the topic's oldest frame. The cost must not grow with ahead.
func BenchmarkOutboxTopicDropOldest(b *testing.B) {
	for _, ahead := range []int{0, 512, 3584} {
		b.Run(fmt.Sprintf("ahead=%d", ahead), func(b *testing.B) {
			o := newOutbox(4096, 1<<30, PolicyDropOldest, func() {}, func() { b.Fatal("overflow") })
			busy, jobs := &subscription{topic: "busy"}, &subscription{topic: "jobs.a"}
			def := &queueLimits{maxMsgs: 4096, maxBytes: 1 << 30, policy: PolicyDropOldest}
			lim := &queueLimits{maxMsgs: 512, maxBytes: 1 << 30, policy: PolicyDropOldest}
			frame := make([]byte, 64)
			seq := uint64(0)
			push := func(s *subscription, l *queueLimits) {
				seq++
				if !o.push(delivery{frame: frame, id: messages.ID{Ms: 1, Seq: seq}, sub: s, lim: l}) {
					b.Fatal("push refused")
				}
			}
			for range ahead {
				push(busy, def)
			}
			for range 512 {
				push(jobs, lim)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				push(jobs, lim)
			}
			b.StopTimer()
			if n, _ := o.depth(); n != ahead+512 {
				b.Fatalf("depth %d, want %d", n, ahead+512)
			}
		})
	}
}

// BenchmarkOutboxPushDrain: the common path, no drop: a burst of 64 frames
// of 8 topics pushed, then drained, per op.
func BenchmarkOutboxPushDrain(b *testing.B) {
	o := newOutbox(4096, 1<<30, PolicyDropOldest, func() {}, func() { b.Fatal("overflow") })
	var subs [8]subscription
	lim := &queueLimits{maxMsgs: 4096, maxBytes: 1 << 30, policy: PolicyDropOldest}
	frame := make([]byte, 64)
	dst := make([]delivery, 0, 64)
	b.ReportAllocs()
	for range b.N {
		for i := range 64 {
			o.push(delivery{frame: frame, sub: &subs[i%8], lim: lim})
		}
		dst, _, _ = o.drain(dst[:0], 64, 1<<30)
	}
}
