package actors

import (
	"sort"
	"time"
	"unsafe"

	"github.com/pulsar-relay/relay/internal/slab"
	"github.com/pulsar-relay/relay/messages"
)

// hotRing keeps a topic's recent messages, so a subscriber resuming from a
// recent point replays without a store read. A message is kept compactly:
// its times in Unix ns and its payload copied into the ring's slab (not
// the frame live delivery encoded, nor the request body it came in), and
// encoded on its first replay, whose frame is kept from then on. A ring
// at its default cap holds 10,000 messages a topic, so what an entry
// takes is what a busy relay's heap grows by in its first minutes, a
// fault per new page (bench/NOTES.md, item 56): 72 bytes and the payload
// now, against 120 and a 256-byte frame kept before.
// It serves a replay only for points after its base: every id after the
// base was delivered by this incarnation of the topic actor, contiguously
// (the "complete since" point). Owned by one topic actor; not safe for
// concurrent use.
//
// The entries live in chunks that never move: the ring grows by a chunk
// and gives up a whole chunk once its old end has passed it. One slice
// grown by append copied every entry at each doubling and again at each
// compaction; a topic actor's first minutes at a thousand messages a
// second spent 3% of the relay's CPU there (bench/NOTES.md, item 52).
type hotRing struct {
	maxAge  time.Duration
	maxMsgs int

	// chunks hold the entries in ascending id order: chunks[0][head:] and
	// every later chunk are live; only the last chunk has room left.
	chunks [][]ringEntry
	head   int
	n      int         // live entries
	spare  []ringEntry // the last full-size chunk given up, empty: the next one (no allocation at the cap)
	slab   slab.Slab   // the payloads' copies
	bytes  int64       // what the live entries cost (ringEntry.cost), charged to budget
	budget *hotBudget  // shared by every topic's ring; nil: none
	// base: every message with an id after base is in the ring. Valid only
	// when known is set: the ring starts knowing nothing about what the store
	// held before this incarnation of the actor.
	base  messages.ID
	known bool
}

// A topic's first chunk holds ringChunkMin entries (a topic with a message
// or two holds about what one slice grown by append held: with
// RELAY_MAX_TOPICS topics of a message each, every byte here counts a
// hundred thousand times), each next one twice the last, up to
// ringChunkMax (about 60 KiB of entries).
const (
	ringChunkMin = 4
	ringChunkMax = 512
)

type ringEntry struct {
	id        messages.ID
	at        int64 // the message's timestamp, Unix ns (messages.UnixNano), for maxAge
	expiresAt int64 // Unix ns; 0: never
	// data is the message's payload (in the ring's slab) until a replay
	// first needs its frame, then the frame (framed set, metadata nil).
	data     []byte
	metadata map[string]string
	framed   bool
}

// ringEntrySize is what an entry takes in its chunk.
const ringEntrySize = int64(unsafe.Sizeof(ringEntry{}))

// cost is what e is counted for in the hot tier's budget: its place in a
// chunk, its payload or frame, and its metadata.
func (e *ringEntry) cost() int64 {
	return ringEntrySize + int64(len(e.data)+messages.MetadataBytes(e.metadata))
}

func newHotRing(maxAge time.Duration, maxMsgs int, budget *hotBudget) hotRing {
	return hotRing{maxAge: maxAge, maxMsgs: maxMsgs, budget: budget}
}

// charge moves what the ring holds, and its budget, by n.
func (r *hotRing) charge(n int64) {
	r.bytes += n
	r.budget.charge(n)
}

// add appends a freshly stored message, to encode when a replay first
// needs it. m.Payload is copied when small (slab.Copy); a large one is
// kept as it is. The first add of an incarnation sets the base to just
// before it: nothing this incarnation stored is missing.
func (r *hotRing) add(m *messages.Message, now time.Time) {
	if !r.known {
		r.known = true
		r.base = m.ID
		// m itself is kept too; base is exclusive, so a point equal to m.ID
		// is covered and a point before it goes to the store.
	}
	// Aged by the message's timestamp, as the store ages it for retention.
	e := ringEntry{
		id:        m.ID,
		at:        messages.UnixNano(m.Timestamp),
		expiresAt: messages.UnixNano(m.ExpiresAt),
		data:      r.slab.Copy(m.Payload, int(r.bytes)),
		metadata:  m.Metadata,
	}
	r.charge(e.cost())
	if r.n == 0 {
		r.budget.holding(1)
	}
	last := len(r.chunks) - 1
	if last < 0 || len(r.chunks[last]) == cap(r.chunks[last]) {
		size := ringChunkMin
		if last >= 0 {
			size = min(2*cap(r.chunks[last]), ringChunkMax)
		}
		c := r.spare
		if size != ringChunkMax || c == nil {
			c = make([]ringEntry, 0, size)
		}
		r.spare = nil
		r.chunks = append(r.chunks, c)
		last++
	}
	r.chunks[last] = append(r.chunks[last], e)
	r.n++
	r.evict(now)
}

// evict drops entries past maxAge or over maxMsgs, and the oldest while
// the ring holds more than its share of a spent hot-tier budget (see
// hotBudget), and moves base up.
func (r *hotRing) evict(now time.Time) {
	cutoff := now.Add(-r.maxAge).UnixNano()
	for r.n > 0 {
		c := r.chunks[0]
		e := &c[r.head]
		if r.n <= r.maxMsgs && e.at >= cutoff && !r.budget.over(r.bytes) {
			return
		}
		r.base = e.id
		r.charge(-e.cost())
		*e = ringEntry{}
		r.head++
		r.n--
		if r.n == 0 {
			r.budget.holding(-1)
		}
		if r.head < len(c) {
			continue
		}
		r.head = 0
		if len(r.chunks) == 1 { // the last chunk, now empty: kept for what comes next
			r.chunks[0] = c[:0]
			continue
		}
		if cap(c) == ringChunkMax {
			r.spare = c[:0] // its entries are cleared already
		}
		r.chunks[0] = nil
		r.chunks = r.chunks[1:]
	}
}

// covers reports whether every retained message after `after` is in the ring.
func (r *hotRing) covers(after messages.ID) bool {
	return r.known && !after.Less(r.base)
}

// page returns the frames after `after` (exclusive) that have not expired,
// as deliveries for sub: at most maxReplayPageMsgs of them, within maxBytes
// (at least one). next is the id to continue after; end reports that the
// page reaches the ring's newest message.
func (r *hotRing) page(after messages.ID, maxBytes int, now time.Time, sub *subscription) (out []delivery, next messages.ID, end bool) {
	next = after
	size := 0
	nowNs := now.UnixNano()
	for ci, i := r.after(after); ci < len(r.chunks); ci, i = ci+1, 0 {
		c := r.chunks[ci]
		for ; i < len(c); i++ {
			e := &c[i]
			if e.expiresAt != 0 && nowNs >= e.expiresAt {
				next = e.id
				continue
			}
			if !e.framed {
				m := messages.Message{ID: e.id, Topic: sub.topic, Payload: e.data, Metadata: e.metadata,
					Timestamp: messages.TimeOfUnixNano(e.at), ExpiresAt: messages.TimeOfUnixNano(e.expiresAt)}
				was := e.cost()
				e.data, e.metadata, e.framed = m.Frame(), nil, true
				r.charge(e.cost() - was) // the next add evicts if this spent the budget
			}
			if len(out) >= maxReplayPageMsgs || (len(out) > 0 && size+len(e.data) > maxBytes) {
				return out, next, false
			}
			out = append(out, delivery{frame: e.data, id: e.id, sub: sub})
			size += len(e.data)
			next = e.id
		}
	}
	return out, next, true
}

// after returns the place of the first live entry with an id after id:
// chunk ci, index i; ci is len(r.chunks) when there is none.
func (r *hotRing) after(id messages.ID) (ci, i int) {
	if r.n == 0 {
		return len(r.chunks), 0
	}
	ci = sort.Search(len(r.chunks), func(k int) bool {
		c := r.chunks[k]
		return id.Less(c[len(c)-1].id)
	})
	if ci == len(r.chunks) {
		return ci, 0
	}
	c, lo := r.chunks[ci], 0
	if ci == 0 {
		lo = r.head
	}
	return ci, lo + sort.Search(len(c)-lo, func(k int) bool { return id.Less(c[lo+k].id) })
}

// reset forgets everything (a restarted actor reads from the store again)
// and gives what it held back to the budget.
func (r *hotRing) reset() {
	r.budget.charge(-r.bytes)
	if r.n > 0 {
		r.budget.holding(-1)
	}
	*r = newHotRing(r.maxAge, r.maxMsgs, r.budget)
}
