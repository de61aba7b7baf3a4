package actors

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/heaptest"
	"github.com/pulsar-relay/relay/messages"
)

var ringT0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// ringMsg is message i of a test topic: id i-0, stamped i seconds after
// ringT0.
func ringMsg(i int) *messages.Message {
	return &messages.Message{ID: messages.ID{Ms: uint64(i)}, Topic: "t", Payload: []byte(fmt.Sprintf(`{"i":%d}`, i)),
		Timestamp: ringT0.Add(time.Duration(i) * time.Second)}
}

// fillRing adds messages from..to (inclusive) to r, each at its own
// timestamp.
func fillRing(r *hotRing, from, to int) {
	for i := from; i <= to; i++ {
		m := ringMsg(i)
		r.add(m, m.Timestamp)
	}
}

// replayAll pages through r after `after`, maxBytes at a time, and returns
// the ids in the order the pages gave them.
func replayAll(t *testing.T, r *hotRing, after messages.ID, maxBytes int) []uint64 {
	t.Helper()
	sub := &subscription{topic: "t"}
	var ids []uint64
	for range 100_000 {
		frames, next, end := r.page(after, maxBytes, ringT0, sub)
		for _, d := range frames {
			ids = append(ids, d.id.Ms)
		}
		if end {
			return ids
		}
		if !after.Less(next) {
			t.Fatalf("a page after %v moved nowhere (next %v)", after, next)
		}
		after = next
	}
	t.Fatal("paging did not end")
	return nil
}

func wantRun(t *testing.T, got []uint64, from, to int) {
	t.Helper()
	if len(got) != to-from+1 {
		t.Fatalf("replayed %d messages, want %d..%d (%d)", len(got), from, to, to-from+1)
	}
	for k, id := range got {
		if id != uint64(from+k) {
			t.Fatalf("replay[%d] = %d, want %d", k, id, from+k)
		}
	}
}

// The ring keeps the newest maxMsgs, covers exactly the points from its
// base on, and replays them once each, in order, across chunk boundaries,
// whatever the page size.
func TestHotRingKeepsTheNewestAndReplaysThem(t *testing.T) {
	for _, tc := range []struct {
		name         string
		maxMsgs, add int
	}{
		{"less than a chunk", 1000, 10},
		{"exactly the first chunk", 1000, ringChunkMin},
		{"growing chunks, nothing evicted", 1000, 900},
		{"evicting whole chunks", 1000, 5000},
		{"a cap that is not a chunk size", 777, 3333},
		{"one message", 1, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newHotRing(time.Hour*24*365, tc.maxMsgs, nil)
			fillRing(&r, 1, tc.add)
			oldest := max(1, tc.add-tc.maxMsgs+1)
			if r.n != tc.add-oldest+1 {
				t.Fatalf("holds %d entries, want %d", r.n, tc.add-oldest+1)
			}
			// Base is the last evicted id (or the first added when none
			// was): a point at it is covered, one before it is not.
			base := max(1, oldest-1)
			if !r.covers(messages.ID{Ms: uint64(base)}) || r.covers(messages.ID{Ms: uint64(base - 1)}) {
				t.Fatalf("covers(%d) = %v, covers(%d) = %v; want true, false", base, r.covers(messages.ID{Ms: uint64(base)}), base-1, r.covers(messages.ID{Ms: uint64(base - 1)}))
			}
			for _, maxBytes := range []int{1, 100, 1 << 20} {
				wantRun(t, replayAll(t, &r, messages.ID{Ms: uint64(base)}, maxBytes), base+1, tc.add)
			}
			mid := (oldest + tc.add) / 2
			wantRun(t, replayAll(t, &r, messages.ID{Ms: uint64(mid)}, 100), mid+1, tc.add)
			wantRun(t, replayAll(t, &r, messages.ID{Ms: uint64(tc.add)}, 100), tc.add+1, tc.add)
			for k, c := range r.chunks {
				if cap(c) > ringChunkMax || cap(c) < ringChunkMin || (k < len(r.chunks)-1 && len(c) != cap(c)) {
					t.Fatalf("chunk %d of %d: len %d cap %d", k, len(r.chunks), len(c), cap(c))
				}
			}
		})
	}
}

// An entry never moves once added: adding more (and evicting older ones)
// leaves it where it was. A slice grown by append would have moved it.
func TestHotRingEntriesStayPut(t *testing.T) {
	r := newHotRing(time.Hour*24*365, 3000, nil)
	fillRing(&r, 1, 100)
	ci, i := r.after(messages.ID{Ms: 99})
	kept := &r.chunks[ci][i]
	if kept.id.Ms != 100 {
		t.Fatalf("the entry after 99 is %d", kept.id.Ms)
	}
	fillRing(&r, 101, 3000)
	if ci, i := r.after(messages.ID{Ms: 99}); &r.chunks[ci][i] != kept || kept.id.Ms != 100 {
		t.Fatal("entry 100 moved when the ring grew")
	}
}

// Entries past maxAge leave; a ring emptied by age serves nothing, keeps
// its base at the newest id it had, and takes new messages after it.
func TestHotRingEvictsByAgeAndRefills(t *testing.T) {
	r := newHotRing(50*time.Second, 10_000, nil)
	fillRing(&r, 1, 100) // message i at ringT0+i s, added then: 51..100 stay
	if r.n != 51 || !r.covers(messages.ID{Ms: 49}) || r.covers(messages.ID{Ms: 48}) {
		t.Fatalf("holds %d (want 51), covers 49: %v, covers 48: %v", r.n, r.covers(messages.ID{Ms: 49}), r.covers(messages.ID{Ms: 48}))
	}
	r.evict(ringT0.Add(time.Hour))
	if r.n != 0 || !r.covers(messages.ID{Ms: 100}) || r.covers(messages.ID{Ms: 99}) {
		t.Fatalf("after an hour: holds %d, covers 100: %v, covers 99: %v", r.n, r.covers(messages.ID{Ms: 100}), r.covers(messages.ID{Ms: 99}))
	}
	if frames, next, end := r.page(messages.ID{Ms: 100}, 1<<20, ringT0, &subscription{topic: "t"}); len(frames) != 0 || next.Ms != 100 || !end {
		t.Fatalf("an empty ring paged %d frames, next %v, end %v", len(frames), next, end)
	}
	for i := 101; i <= 700; i++ { // now far on: each stays while the next 50 s come
		m := ringMsg(i)
		r.add(m, m.Timestamp)
	}
	wantRun(t, replayAll(t, &r, messages.ID{Ms: 649}, 100), 650, 700)
}

// A message is kept without its frame and encoded on its first replay,
// byte for byte as live delivery encodes it, from a copy of its payload
// (the caller may reuse its buffer); the frame is then kept, so a second
// replay encodes nothing. One whose expiry passed is skipped, and the page
// still moves past it.
func TestHotRingEncodesLateAndSkipsExpired(t *testing.T) {
	r := newHotRing(time.Hour*24*365, 100, nil)
	a, b, c := ringMsg(1), ringMsg(2), ringMsg(3)
	b.ExpiresAt = ringT0.Add(-time.Second)
	c.Metadata = map[string]string{"k": "v"}
	c.Timestamp = c.Timestamp.Add(123456789 * time.Nanosecond).In(time.FixedZone("X", 3600))
	c.ExpiresAt = ringT0.Add(time.Hour)
	want := c.Frame()
	r.add(a, a.Timestamp)
	r.add(b, b.Timestamp)
	r.add(c, c.Timestamp)
	copy(c.Payload, "xxxxxxx") // the caller reuses its buffer
	sub := &subscription{topic: "t"}
	frames, next, end := r.page(messages.ID{Ms: 1}, 1<<20, ringT0, sub)
	if len(frames) != 1 || frames[0].id.Ms != 3 || next.Ms != 3 || !end {
		t.Fatalf("paged %v, next %v, end %v; want message 3 alone", frames, next, end)
	}
	if !bytes.Equal(frames[0].frame, want) {
		t.Fatalf("replayed frame\n%s\nwant the live one\n%s", frames[0].frame, want)
	}
	again, _, _ := r.page(messages.ID{Ms: 1}, 1<<20, ringT0, sub)
	if len(again) != 1 || &again[0].frame[0] != &frames[0].frame[0] {
		t.Fatal("a second replay encoded the message again")
	}
}

// BenchmarkHotRingAdd: a busy topic's ring taking messages, at the default
// cap. "fresh" starts a new ring every 10,000 messages (a topic
// actor's first seconds, the ring growing), "full" keeps one at its cap.
func BenchmarkHotRingAdd(b *testing.B) {
	msgs := make([]*messages.Message, 10_000)
	for i := range msgs {
		msgs[i] = ringMsg(i + 1)
	}
	for _, fresh := range []bool{true, false} {
		name := map[bool]string{true: "fresh", false: "full"}[fresh]
		b.Run(name, func(b *testing.B) {
			r := newHotRing(time.Hour*24*365, DefaultHotTierMaxMessages, nil)
			b.ReportAllocs()
			for n := range b.N {
				i := n % len(msgs)
				if i == 0 && fresh {
					r = newHotRing(r.maxAge, r.maxMsgs, nil)
				}
				m := *msgs[i]
				m.ID.Ms += uint64(n / len(msgs) * len(msgs)) // ids keep rising across rounds
				r.add(&m, m.Timestamp)
			}
		})
	}
}

// TestHotRingHeapPerMessage: what one more message in a ring adds to the
// heap, each payload cut out of its own request-sized buffer and encoded
// for live delivery as a topic with subscribers does. The ring kept the
// 120-byte entry and the frame, 417 bytes; now the 72-byte entry and
// a copy of the payload (bench/NOTES.md, item 56).
func TestHotRingHeapPerMessage(t *testing.T) {
	const n = 20000
	r := newHotRing(time.Hour, n, nil)
	now := time.Now()
	per := heaptest.PerOp(n, func(i int) {
		m := &messages.Message{ID: messages.ID{Ms: uint64(i + 1)}, Topic: "galaxy.jobs.heap", Payload: heaptest.RequestPayload(), Timestamp: now}
		_ = m.Frame() // live delivery's frame, gone once written
		r.add(m, now)
	})
	t.Logf("%.0f heap bytes per message in the ring (payload %d)", per, heaptest.PayloadLen)
	if per > 200 {
		t.Errorf("%.0f heap bytes per message in the ring for a %d-byte payload, want at most 200", per, heaptest.PayloadLen)
	}
	runtime.KeepAlive(&r)
}

// TestHotRingBudget: rings sharing a hot-tier budget. Alone, a ring holds
// at most the limit; with the budget spent, a ring that adds trims itself
// to its share (the limit over the rings holding anything) and one that
// does not add keeps what it has, so together they hold at most twice the
// limit. A message larger than a share is not kept (the base moves past
// it), framing a replayed entry is charged, a reset gives everything back,
// and the budget always equals what the rings count.
func TestHotRingBudget(t *testing.T) {
	const limit = 64 << 10
	b := newHotBudget(limit)
	a, c := newHotRing(time.Hour*24*365, 10_000, b), newHotRing(time.Hour*24*365, 10_000, b)
	check := func(step string, most int64) {
		t.Helper()
		var sum int64
		for _, r := range []*hotRing{&a, &c} {
			var held int64
			for ci := range r.chunks {
				for i := range r.chunks[ci] {
					if ci > 0 || i >= r.head {
						held += r.chunks[ci][i].cost()
					}
				}
			}
			if held != r.bytes {
				t.Fatalf("%s: a ring counts %d bytes, its entries cost %d", step, r.bytes, held)
			}
			sum += held
		}
		if b.bytes() != sum {
			t.Fatalf("%s: the budget holds %d, the rings %d", step, b.bytes(), sum)
		}
		if b.bytes() > most {
			t.Fatalf("%s: the rings hold %d bytes, over %d", step, b.bytes(), most)
		}
	}
	const entry = 2 << 10 // more than one message below costs
	pad := strings.Repeat("x", 1000)
	msg := func(i int) *messages.Message {
		m := ringMsg(i)
		m.Payload = []byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad))
		return m
	}
	for i := 1; i <= 200; i++ { // about 215 KB into a 64 KiB budget
		m := msg(i)
		a.add(m, m.Timestamp)
		check(fmt.Sprintf("a add %d", i), limit+entry)
	}
	if a.n == 0 || a.n >= 100 || !a.covers(messages.ID{Ms: 199}) || a.covers(messages.ID{Ms: 100}) {
		t.Fatalf("ring a holds %d messages, covers 199: %v, covers 100: %v; want the newest only", a.n, a.covers(messages.ID{Ms: 199}), a.covers(messages.ID{Ms: 100}))
	}
	aHeld := a.n
	for i := 1; i <= 20; i++ { // a quiet a keeps its entries; c gets its share
		m := msg(1000 + i)
		c.add(m, m.Timestamp)
		check(fmt.Sprintf("c add %d", i), 2*limit+entry)
	}
	if a.n != aHeld || c.n != 20 {
		t.Fatalf("ring a holds %d (had %d), ring c %d of 20 within its half share", a.n, aHeld, c.n)
	}
	for i := 201; i <= 210; i++ { // a adds again: it trims itself until the budget holds or it is down to its share
		m := msg(i)
		a.add(m, m.Timestamp)
		check(fmt.Sprintf("a add %d", i), 2*limit+entry)
	}
	if b.bytes() > limit && a.bytes > limit/2 || a.n >= aHeld || c.n != 20 {
		t.Fatalf("the rings hold %d bytes, ring a %d (%d messages, had %d) against a share of %d; ring c %d messages", b.bytes(), a.bytes, a.n, aHeld, limit/2, c.n)
	}
	aHeld = a.n
	wantRun(t, replayAll(t, &a, messages.ID{Ms: uint64(210 - aHeld)}, 1<<20), 211-aHeld, 210)
	check("a replayed (its entries framed)", 2*limit+entry)
	huge := ringMsg(2000)
	huge.Payload = []byte(`{"pad":"` + strings.Repeat("y", 2*limit) + `"}`)
	c.add(huge, huge.Timestamp)
	check("c added a message larger than the budget", 2*limit+entry)
	if c.n != 0 || !c.covers(messages.ID{Ms: 2000}) || c.covers(messages.ID{Ms: 1999}) {
		t.Fatalf("after a message larger than the budget ring c holds %d, covers 2000: %v, covers 1999: %v", c.n, c.covers(messages.ID{Ms: 2000}), c.covers(messages.ID{Ms: 1999}))
	}
	a.reset()
	check("a reset", 0)
	if b.rings.Load() != 0 {
		t.Fatalf("the budget counts %d rings holding entries, want 0", b.rings.Load())
	}
}
