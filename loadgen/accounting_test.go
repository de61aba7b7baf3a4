package loadgen

import "testing"

// delivery is one (topic, publisher, seq) a test subscriber receives.
type delivery struct {
	topic int
	pub   int
	seq   uint64
}

func TestTally(t *testing.T) {
	tests := []struct {
		name     string
		subTopic int
		acked    []delivery // acknowledged publishes
		got      []delivery // what the subscriber received, in order
		want     tally
	}{
		{
			name:     "all in order",
			acked:    []delivery{{0, 0, 0}, {0, 0, 1}, {0, 1, 0}},
			got:      []delivery{{0, 0, 0}, {0, 1, 0}, {0, 0, 1}},
			want:     tally{Expected: 3, Delivered: 3, Unique: 3},
			subTopic: 0,
		},
		{
			name:  "lost one",
			acked: []delivery{{0, 0, 0}, {0, 0, 1}, {0, 0, 2}},
			got:   []delivery{{0, 0, 0}, {0, 0, 2}},
			want:  tally{Expected: 3, Delivered: 2, Unique: 2, Lost: 1},
		},
		{
			name:  "duplicate",
			acked: []delivery{{0, 0, 0}, {0, 0, 1}},
			got:   []delivery{{0, 0, 0}, {0, 0, 1}, {0, 0, 1}},
			want:  tally{Expected: 2, Delivered: 3, Unique: 2, Duplicated: 1},
		},
		{
			name:  "out of order within a publisher",
			acked: []delivery{{0, 0, 0}, {0, 0, 1}, {0, 0, 2}},
			got:   []delivery{{0, 0, 1}, {0, 0, 0}, {0, 0, 2}},
			want:  tally{Expected: 3, Delivered: 3, Unique: 3, OutOfOrder: 1},
		},
		{
			name:  "interleaved publishers are not out of order",
			acked: []delivery{{0, 0, 0}, {0, 0, 1}, {0, 1, 0}, {0, 1, 1}},
			got:   []delivery{{0, 1, 0}, {0, 0, 0}, {0, 1, 1}, {0, 0, 1}},
			want:  tally{Expected: 4, Delivered: 4, Unique: 4},
		},
		{
			name:  "delivered without acknowledgement",
			acked: []delivery{{0, 0, 0}},
			got:   []delivery{{0, 0, 0}, {0, 0, 1}},
			want:  tally{Expected: 1, Delivered: 2, Unique: 1, Unexpected: 1},
		},
		{
			name:  "other topic, unknown publisher, seq out of range",
			acked: []delivery{{0, 0, 0}, {1, 0, 0}},
			got:   []delivery{{0, 0, 0}, {1, 0, 0}, {-1, 0, 1}, {0, 7, 0}, {0, 0, 1000}},
			want:  tally{Expected: 1, Delivered: 5, Unique: 1, Foreign: 4},
		},
		{
			name:  "messages to other topics are not owed",
			acked: []delivery{{1, 0, 0}, {1, 1, 0}},
			want:  tally{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const pubs, topics = 2, 2
			acc := newAcceptedSet(pubs, topics)
			for _, a := range tc.acked {
				acc[a.pub][a.topic].set(a.seq)
			}
			var h histogram
			s := newSubTracker(tc.subTopic, pubs, 100)
			var fresh uint64
			for i, g := range tc.got {
				if s.observe(g.topic, payload{Seq: g.seq, Pub: g.pub, SentNs: 10}, int64(20+i), &h) {
					fresh++
				}
			}
			got := tallyAll([]*subTracker{s, nil}, acc)
			tc.want.LastNs = got.LastNs
			if got != tc.want {
				t.Errorf("tally = %+v\nwant    %+v", got, tc.want)
			}
			if fresh != h.count() {
				t.Errorf("fresh deliveries %d but %d latencies recorded", fresh, h.count())
			}
		})
	}
}

func TestTallyDroppedAndLatency(t *testing.T) {
	acc := newAcceptedSet(1, 1)
	acc[0][0].set(0)
	var h histogram
	s := newSubTracker(0, 1, 10)
	s.observe(0, payload{Seq: 0, SentNs: 1000}, 4000, &h)
	s.dropped = true
	got := tallyAll([]*subTracker{s}, acc)
	if got.Dropped != 1 || got.LastNs != 4000 {
		t.Fatalf("tally = %+v, want Dropped 1 and LastNs 4000", got)
	}
	if h.max() != 3000 {
		t.Fatalf("latency = %v, want 3µs", h.max())
	}
}
