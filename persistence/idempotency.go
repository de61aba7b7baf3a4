package persistence

import (
	"container/heap"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// DefaultIdempotencyCap is MemoryConfig.IdempotencyCap's default: how many
// (topic, Idempotency-Key) records the memory store keeps at most.
const DefaultIdempotencyCap = 100_000

// idemHash is the hex SHA-256 of an Idempotency-Key: the Valkey key suffix
// (keys are printable ASCII up to 255 bytes; hashing keeps the key short and
// free of anything a key name should not contain).
func idemHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// idemRecord is what a store remembers of the first message sent with an
// Idempotency-Key.
type idemRecord struct {
	hash    string // the first message's RequestHash
	id      messages.ID
	ts      time.Time
	expires time.Time
	owner   *idemOwner // whose share it counts in
}

// settle marks m as a repeat of rec: it takes rec's id and timestamp and
// becomes Duplicate, or Conflict when its RequestHash differs.
func (rec *idemRecord) settle(m *messages.Message, topic string) {
	m.ID, m.Timestamp, m.Topic = rec.id, rec.ts, topic
	if m.RequestHash != rec.hash {
		m.Conflict = true
	} else {
		m.Duplicate = true
	}
}

// idemTable is the memory store's idempotency memory: a map from
// (topic, key) to the first message's record, bounded in count and shared
// fairly among the clients that send keys (messages.Message.Publisher).
//
// Every record lives for the same window, so insertion order is expiry
// order: one FIFO of every record lets expired records go in O(1) each.
// Over the cap, the oldest record of the publisher holding the most goes
// (a max-heap of publishers by records held, each with its own FIFO), so
// a producer sending fresh keys fast pushes out only its own keys once it
// holds the most, never another's within their window. With one publisher
// (or none named) that is first in, first out.
//
// Concurrency: safe for concurrent use. Check-then-put for one topic is made
// atomic by the caller holding that topic's lock.
type idemTable struct {
	window time.Duration
	cap    int

	mu     sync.Mutex
	m      map[string]*idemRecord
	all    idemQueue // every record, oldest first
	owners map[string]*idemOwner
	most   ownerHeap // owners with records, by records held, most first
}

// idemOwner is one publisher's share: its records, oldest first.
type idemOwner struct {
	name  string
	queue idemQueue
	held  int // records of this owner in the map
	index int // in the heap
}

// idemQueue is a FIFO of records; a ref whose record has left the map
// (expired, evicted or replaced) is stale and skipped.
type idemQueue struct {
	refs []idemRef
	head int
}

type idemRef struct {
	k   string
	rec *idemRecord
}

func (q *idemQueue) push(r idemRef) { q.refs = append(q.refs, r) }
func (q *idemQueue) len() int       { return len(q.refs) - q.head }
func (q *idemQueue) front() idemRef { return q.refs[q.head] }

// pop drops the front ref, compacting once half the slice is spent.
func (q *idemQueue) pop() {
	q.refs[q.head] = idemRef{}
	q.head++
	if q.head == len(q.refs) {
		q.refs, q.head = q.refs[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.refs) {
		n := copy(q.refs, q.refs[q.head:])
		clear(q.refs[n:])
		q.refs, q.head = q.refs[:n], 0
	}
}

func newIdemTable(window time.Duration, limit int) *idemTable {
	return &idemTable{
		window: window, cap: limit,
		m:      make(map[string]*idemRecord),
		owners: make(map[string]*idemOwner),
	}
}

func idemMapKey(topic, key string) string { return topic + "\x00" + key }

// get returns the live record of (topic, key) at now, or nil.
func (it *idemTable) get(topic, key string, now time.Time) *idemRecord {
	it.mu.Lock()
	defer it.mu.Unlock()
	rec := it.m[idemMapKey(topic, key)]
	if rec == nil || !now.Before(rec.expires) {
		return nil
	}
	return rec
}

// put remembers m as the first message of (topic, m.IdempotencyKey) from now
// for the window, on m.Publisher's share, dropping expired records and, over
// the cap, the oldest of the publisher holding the most.
func (it *idemTable) put(topic string, m *messages.Message, now time.Time) {
	k := idemMapKey(topic, m.IdempotencyKey)
	it.mu.Lock()
	defer it.mu.Unlock()
	if old := it.m[k]; old != nil { // expired: get found nothing live
		it.forgetLocked(old)
	}
	o := it.owners[m.Publisher]
	if o == nil {
		o = &idemOwner{name: m.Publisher}
		it.owners[m.Publisher] = o
		heap.Push(&it.most, o)
	}
	rec := &idemRecord{hash: m.RequestHash, id: m.ID, ts: m.Timestamp, expires: now.Add(it.window), owner: o}
	it.m[k] = rec
	ref := idemRef{k: k, rec: rec}
	it.all.push(ref)
	o.queue.push(ref)
	o.held++
	heap.Fix(&it.most, o.index)
	it.expireLocked(now)
	for len(it.m) > it.cap {
		it.evictLocked()
	}
	if it.all.len() > 2*it.cap {
		it.compactLocked()
	}
}

// compactLocked drops the stale refs from the expiry queue. Records evicted
// from an owner's share leave theirs in the middle of it, where expiry does
// not reach before their time; compacting at twice the cap keeps the queue
// bounded at O(1) per put.
func (it *idemTable) compactLocked() {
	q := &it.all
	live := q.refs[:0]
	for _, ref := range q.refs[q.head:] {
		if it.m[ref.k] == ref.rec {
			live = append(live, ref)
		}
	}
	clear(q.refs[len(live):])
	q.refs, q.head = live, 0
}

// forgetLocked takes rec's share back from its owner; the caller removes
// or replaces rec in the map. Refs to it in the queues go stale.
func (it *idemTable) forgetLocked(rec *idemRecord) {
	o := rec.owner
	o.held--
	if o.held > 0 {
		heap.Fix(&it.most, o.index)
		it.dropStaleLocked(o)
		return
	}
	heap.Remove(&it.most, o.index)
	delete(it.owners, o.name)
}

// dropStaleLocked drops the stale refs at the front of o's queue. Records
// leave the map oldest first within an owner (by expiry, or by eviction
// from the front of its queue; a record replaced had expired, so it is
// older than any live one), so an owner's stale refs are always at its
// queue's front and its queue stays about the size of its share.
func (it *idemTable) dropStaleLocked(o *idemOwner) {
	for o.queue.len() > 0 {
		ref := o.queue.front()
		if it.m[ref.k] == ref.rec {
			return
		}
		o.queue.pop()
	}
}

// evictLocked drops the oldest live record of the owner holding the most.
func (it *idemTable) evictLocked() {
	o := it.most[0]
	it.dropStaleLocked(o)
	ref := o.queue.front()
	o.queue.pop()
	delete(it.m, ref.k)
	it.forgetLocked(ref.rec)
}

// expire drops the records whose window has passed at now.
func (it *idemTable) expire(now time.Time) {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.expireLocked(now)
}

func (it *idemTable) expireLocked(now time.Time) {
	for it.all.len() > 0 {
		ref := it.all.front()
		if it.m[ref.k] == ref.rec {
			if now.Before(ref.rec.expires) {
				return
			}
			delete(it.m, ref.k)
			it.forgetLocked(ref.rec)
		}
		it.all.pop()
	}
}

// len returns how many records are kept.
func (it *idemTable) len() int {
	it.mu.Lock()
	defer it.mu.Unlock()
	return len(it.m)
}

// ownerHeap is a max-heap of owners by records held (container/heap); each
// owner knows its index.
type ownerHeap []*idemOwner

func (h ownerHeap) Len() int           { return len(h) }
func (h ownerHeap) Less(i, j int) bool { return h[i].held > h[j].held }
func (h ownerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *ownerHeap) Push(x any) {
	o := x.(*idemOwner)
	o.index = len(*h)
	*h = append(*h, o)
}
func (h *ownerHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return o
}
