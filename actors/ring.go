package actors

import (
	"sort"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// hotRing keeps a topic's recent messages, so a subscriber resuming from a
// recent point replays without a store read. A message delivered live is
// kept as its frame (encoded once for every subscriber); one stored while
// nobody listened is kept as the message and encoded on its first replay,
// so publishing to a topic without subscribers encodes nothing.
// It serves a replay only for points after its base: every id after the
// base was delivered by this incarnation of the topic actor, contiguously
// (the "complete since" point). Owned by one topic actor; not safe for
// concurrent use.
type hotRing struct {
	maxAge  time.Duration
	maxMsgs int

	entries []ringEntry // ascending ids; entries[head:] are live
	head    int
	// base: every message with an id after base is in the ring. Valid only
	// when known is set: the ring starts knowing nothing about what the store
	// held before this incarnation of the actor.
	base  messages.ID
	known bool
}

type ringEntry struct {
	id        messages.ID
	frame     []byte    // nil until a replay first needs it (payload is set)
	at        time.Time // the message's timestamp, for maxAge
	expiresAt time.Time
	// While frame is nil: the rest of the message, to encode it from.
	payload  []byte
	metadata map[string]string
}

func newHotRing(maxAge time.Duration, maxMsgs int) hotRing {
	return hotRing{maxAge: maxAge, maxMsgs: maxMsgs}
}

// add appends a freshly stored message with its frame, or with a nil frame
// to encode it when a replay first needs it. The first add of an incarnation sets
// the base to just before it: nothing this incarnation stored is missing.
func (r *hotRing) add(m *messages.Message, frame []byte, now time.Time) {
	if !r.known {
		r.known = true
		r.base = m.ID
		// m itself is kept too; base is exclusive, so a point equal to m.ID
		// is covered and a point before it goes to the store.
	}
	// Aged by the message's timestamp, as the store ages it for retention.
	e := ringEntry{id: m.ID, frame: frame, at: m.Timestamp, expiresAt: m.ExpiresAt}
	if frame == nil {
		e.payload, e.metadata = m.Payload, m.Metadata
	}
	r.entries = append(r.entries, e)
	r.evict(now)
}

// evict drops entries past maxAge or over maxMsgs and moves base up.
func (r *hotRing) evict(now time.Time) {
	cutoff := now.Add(-r.maxAge)
	for r.head < len(r.entries) && (len(r.entries)-r.head > r.maxMsgs || r.entries[r.head].at.Before(cutoff)) {
		r.base = r.entries[r.head].id
		r.entries[r.head] = ringEntry{}
		r.head++
	}
	if r.head > 1024 && r.head > len(r.entries)/2 {
		// In place: the backing array is kept for the entries to come.
		n := copy(r.entries, r.entries[r.head:])
		clear(r.entries[n:])
		r.entries = r.entries[:n]
		r.head = 0
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
	live := r.entries[r.head:]
	i := r.head + sort.Search(len(live), func(i int) bool { return after.Less(live[i].id) })
	size := 0
	for ; i < len(r.entries); i++ {
		e := &r.entries[i]
		if !e.expiresAt.IsZero() && !now.Before(e.expiresAt) {
			next = e.id
			continue
		}
		if e.frame == nil {
			m := messages.Message{ID: e.id, Topic: sub.topic, Payload: e.payload, Timestamp: e.at, Metadata: e.metadata, ExpiresAt: e.expiresAt}
			e.frame = m.Frame()
			e.payload, e.metadata = nil, nil
		}
		if len(out) >= maxReplayPageMsgs || (len(out) > 0 && size+len(e.frame) > maxBytes) {
			return out, next, false
		}
		out = append(out, delivery{frame: e.frame, id: e.id, sub: sub})
		size += len(e.frame)
		next = e.id
	}
	return out, next, true
}

// reset forgets everything (a restarted actor reads from the store again).
func (r *hotRing) reset() {
	*r = newHotRing(r.maxAge, r.maxMsgs)
}
