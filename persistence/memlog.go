package persistence

import (
	"math"
	"sort"

	"github.com/pulsar-relay/relay/internal/slab"
	"github.com/pulsar-relay/relay/messages"
)

// logChunk is how many entries one chunk of a msgLog holds.
const logChunk = 1024

// msgLog is one topic's messages in ascending id order, in chunks of
// logChunk entries: appending never copies what is stored, and trimming
// from the front frees whole chunks. (One slice grown by append copied the
// whole topic, pointers and all, at every growth: about 2.4 µs per message
// at 350,000 messages, a tenth of a publish's CPU under load.) Chunk k
// holds positions [k*logChunk, (k+1)*logChunk) counted from the first
// chunk's start. A log's first chunk grows by doubling, so a topic of a few
// messages holds a few slots; every later chunk is made whole at once (the
// topic has filled one already), so no entry is copied by a regrowth.
//
// An entry keeps what a reader gets back and nothing more: the topic is the
// log's, the idempotency fields are the store's idemTable's, times are
// Unix nanoseconds, and a payload of up to slab.MaxCopy bytes is copied
// into the log's slab (append-only blocks shared by many payloads, sized
// by what the log holds) instead of keeping the caller's buffer (a
// publish's whole request body). That is 64 bytes an entry and the
// payload itself, against 152 and the body's size class as
// messages.Message values: a store that grows by a message per publish
// grows the process by half as much, and on this VM every new page is a
// fault costing about 18 µs (bench/NOTES.md, item 55). Trimming from the
// front frees blocks in order. Stored bytes are never written again, so a
// reader may keep a payload after the lock is released.
//
// Not safe for concurrent use: memTopic.mu guards it.
type msgLog struct {
	chunks [][]logEntry
	head   int       // position of the first live entry in chunks[0]
	n      int       // live entries
	bytes  int64     // entryBytes of the live entries
	slab   slab.Slab // the payloads' copies
}

// logEntry is one stored message.
type logEntry struct {
	id       messages.ID
	payload  []byte // in the log's slab, or the caller's own when large
	metadata map[string]string
	ts       int64 // Timestamp, Unix ns (messages.UnixNano)
	expires  int64 // ExpiresAt, Unix ns; 0: never
}

// noCutoff is a cutoff before every stored timestamp (no retention).
const noCutoff = math.MinInt64

// message is e as a message of topic.
func (e *logEntry) message(topic string) messages.Message {
	return messages.Message{
		ID:        e.id,
		Topic:     topic,
		Payload:   e.payload,
		Timestamp: messages.TimeOfUnixNano(e.ts),
		Metadata:  e.metadata,
		ExpiresAt: messages.TimeOfUnixNano(e.expires),
	}
}

// expired reports whether e's ttl has passed at now (Unix ns), as
// messages.Message.Expired.
func (e *logEntry) expired(now int64) bool { return e.expires != 0 && now >= e.expires }

// bytes is entryBytes of e.
func (e *logEntry) bytes() int64 { return entryBytes(len(e.payload), e.metadata) }

// Len is the number of messages held.
func (l *msgLog) Len() int { return l.n }

// Bytes is what the log takes while it holds a message: its messages, by
// entryBytes, and topicOverhead.
func (l *msgLog) Bytes() int64 {
	if l.n == 0 {
		return 0
	}
	return l.bytes + topicOverhead
}

// topicOverhead is what a topic holding messages is counted for besides
// them: its map entry, its state and its log's first chunk and block take
// about 630 bytes of heap (TestMemoryStoreCountsWhatATopicTakes), with
// headroom for the collector as msgOverhead has. Without it, topics of one
// message each held about 2.3 times what they were counted for. An empty
// topic counts nothing: the byte budget's evict removes a topic it empties
// at once, the sweeper one emptied by retention or ttl.
const topicOverhead = 768

// msgOverhead is what a stored message is counted for besides its payload
// and metadata. An entry takes 64 bytes; the rest is headroom for the
// collector, which lets the heap reach about twice what is live before it
// runs, so that RELAY_MEMORY_STORE_BYTES stays near what the process holds.
const msgOverhead = 256

// entryBytes is the memory one stored message is counted for. Idempotency
// fields are not stored with it (the idemTable, bounded by its own cap,
// keeps them).
func entryBytes(payload int, metadata map[string]string) int64 {
	return int64(msgOverhead + payload + messages.MetadataBytes(metadata))
}

// At returns the i-th entry (0 <= i < Len), oldest first. It stays valid
// until the log changes.
func (l *msgLog) At(i int) *logEntry {
	i += l.head
	return &l.chunks[i/logChunk][i%logChunk]
}

// Append adds m at the end. m.Payload is copied when small; a large one is
// kept as it is, so the caller must not change it afterwards (slab.Copy).
func (l *msgLog) Append(m *messages.Message) {
	l.add(logEntry{
		id:       m.ID,
		payload:  l.slab.Copy(m.Payload, int(l.bytes)),
		metadata: m.Metadata,
		ts:       messages.UnixNano(m.Timestamp),
		expires:  messages.UnixNano(m.ExpiresAt),
	})
}

// add appends e, whose payload the log already holds.
func (l *msgLog) add(e logEntry) {
	last := len(l.chunks) - 1
	if last < 0 || len(l.chunks[last]) == logChunk {
		size := logChunk
		if last < 0 {
			size = min(4, logChunk)
		}
		l.chunks = append(l.chunks, make([]logEntry, 0, size))
		last++
	}
	c := l.chunks[last]
	if len(c) == cap(c) {
		grown := make([]logEntry, len(c), min(2*cap(c), logChunk))
		copy(grown, c)
		c = grown
	}
	l.chunks[last] = append(c, e)
	l.n++
	l.bytes += e.bytes()
}

// DropFront removes the k oldest messages (k <= Len) and lets their
// payloads go.
func (l *msgLog) DropFront(k int) {
	for k > 0 {
		c := l.chunks[0]
		end := min(len(c), l.head+k)
		for i := l.head; i < end; i++ {
			l.bytes -= c[i].bytes()
		}
		clear(c[l.head:end])
		k -= end - l.head
		l.n -= end - l.head
		l.head = end
		if l.head == logChunk {
			l.chunks[0] = nil
			l.chunks = l.chunks[1:]
			l.head = 0
		}
	}
	if l.n == 0 {
		*l = msgLog{}
	}
}

// After returns the position of the first message with an id after id
// (Len when none).
func (l *msgLog) After(id messages.ID) int {
	return sort.Search(l.n, func(i int) bool { return id.Less(l.At(i).id) })
}

// From returns the position of the first message with an id at or after id
// (Len when none).
func (l *msgLog) From(id messages.ID) int {
	return sort.Search(l.n, func(i int) bool { return !l.At(i).id.Less(id) })
}

// Filter keeps the messages keep reports true for, in order. When it keeps
// them all it changes nothing (no copy). Kept payloads are not copied
// again: they stay in the blocks they are in.
func (l *msgLog) Filter(keep func(*logEntry) bool) {
	first := -1
	for i := 0; i < l.n; i++ {
		if !keep(l.At(i)) {
			first = i
			break
		}
	}
	if first < 0 {
		return
	}
	kept := msgLog{slab: l.slab}
	for i := 0; i < l.n; i++ {
		if e := l.At(i); keep(e) {
			kept.add(*e)
		}
	}
	if kept.n == 0 {
		kept = msgLog{}
	}
	*l = kept
}
