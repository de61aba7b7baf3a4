package loadgen

// subTracker is one subscriber's record of the deliveries it received. Only
// that subscriber's reader goroutine touches it until the run has stopped the
// reader; then tally reads it.
type subTracker struct {
	topic int      // the topic this subscriber listens to
	recv  []bitset // by publisher: seqs received
	next  []uint64 // by publisher: highest seq received + 1 (0: none yet)

	received  uint64 // deliveries, duplicates included
	dup       uint64 // deliveries of a (publisher, seq) already received
	ooo       uint64 // deliveries with a seq below one already received from the same publisher
	foreign   uint64 // deliveries for another topic or from an unknown publisher
	lastNs    int64  // run-clock time of the last delivery
	maxSeq    uint64 // seqs at or above this are foreign (bounds the bitsets)
	firstErr  error  // why the connection ended early, if it did
	dropped   bool   // the connection ended before the run closed it
	malformed uint64 // frames the driver could not parse
}

func newSubTracker(topic, publishers int, maxSeq uint64) *subTracker {
	return &subTracker{
		topic:  topic,
		recv:   make([]bitset, publishers),
		next:   make([]uint64, publishers),
		maxSeq: maxSeq,
	}
}

// observe records one delivery of p on topic at run-clock time nowNs. It
// reports whether the delivery is new (neither duplicate nor foreign); only new
// deliveries go into the latency histogram h.
func (t *subTracker) observe(topic int, p payload, nowNs int64, h *histogram) bool {
	t.received++
	t.lastNs = nowNs
	if topic != t.topic || p.Pub < 0 || p.Pub >= len(t.recv) || p.Seq >= t.maxSeq {
		t.foreign++
		return false
	}
	if t.recv[p.Pub].set(p.Seq) {
		t.dup++
		return false
	}
	if n := t.next[p.Pub]; p.Seq+1 < n {
		t.ooo++
	} else {
		t.next[p.Pub] = p.Seq + 1
	}
	h.record(durationNs(nowNs - p.SentNs))
	return true
}

// acceptedSet records, per publisher and topic, the seqs the server
// acknowledged. Row k belongs to publisher k's goroutine while publishing.
type acceptedSet [][]bitset

func newAcceptedSet(publishers, topics int) acceptedSet {
	a := make(acceptedSet, publishers)
	for k := range a {
		a[k] = make([]bitset, topics)
	}
	return a
}

// topicCount returns how many messages to topic were acknowledged.
func (a acceptedSet) topicCount(topic int) int {
	n := 0
	for k := range a {
		n += a[k][topic].count()
	}
	return n
}

// tally sums what the subscribers saw against what was acknowledged.
type tally struct {
	Expected   uint64 // deliveries owed: per subscriber, acknowledged messages on its topic
	Delivered  uint64 // deliveries received, duplicates included
	Unique     uint64 // distinct acknowledged messages received, summed over subscribers
	Lost       uint64 // owed but never received
	Duplicated uint64
	OutOfOrder uint64
	Unexpected uint64 // received without an acknowledgement (the publish failed or timed out on our side)
	Foreign    uint64
	Malformed  uint64
	Dropped    uint64 // subscribers whose connection ended early
	LastNs     int64  // run-clock time of the last delivery anywhere
}

// tallyAll compares each subscriber's receipts with the acknowledged set.
func tallyAll(subs []*subTracker, acc acceptedSet) tally {
	var t tally
	for _, s := range subs {
		if s == nil {
			continue
		}
		t.Delivered += s.received
		t.Duplicated += s.dup
		t.OutOfOrder += s.ooo
		t.Foreign += s.foreign
		t.Malformed += s.malformed
		t.LastNs = max(t.LastNs, s.lastNs)
		if s.dropped {
			t.Dropped++
		}
		for k := range acc {
			if s.topic >= len(acc[k]) {
				continue
			}
			a := &acc[k][s.topic]
			owed := uint64(a.count())
			lost := uint64(a.andNotCount(&s.recv[k]))
			t.Expected += owed
			t.Lost += lost
			t.Unique += owed - lost
			t.Unexpected += uint64(s.recv[k].andNotCount(a))
		}
	}
	return t
}
