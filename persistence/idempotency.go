package persistence

import (
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
// (topic, key) to the first message's record, bounded in count. Every record
// lives for the same window, so insertion order is expiry order: a FIFO of
// keys lets expired records (and, over the cap, the oldest live ones) go in
// O(1) each.
//
// Concurrency: safe for concurrent use. Check-then-put for one topic is made
// atomic by the caller holding that topic's lock.
type idemTable struct {
	window time.Duration
	cap    int

	mu    sync.Mutex
	m     map[string]*idemRecord
	queue []idemRef // oldest first, from head
	head  int
}

type idemRef struct {
	k   string
	rec *idemRecord
}

func newIdemTable(window time.Duration, limit int) *idemTable {
	return &idemTable{window: window, cap: limit, m: make(map[string]*idemRecord)}
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
// for the window, dropping expired records and, over the cap, the oldest.
func (it *idemTable) put(topic string, m *messages.Message, now time.Time) {
	k := idemMapKey(topic, m.IdempotencyKey)
	rec := &idemRecord{hash: m.RequestHash, id: m.ID, ts: m.Timestamp, expires: now.Add(it.window)}
	it.mu.Lock()
	defer it.mu.Unlock()
	it.m[k] = rec
	it.queue = append(it.queue, idemRef{k: k, rec: rec})
	it.expireLocked(now)
	for len(it.m) > it.cap {
		it.popLocked()
	}
}

// expire drops the records whose window has passed at now.
func (it *idemTable) expire(now time.Time) {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.expireLocked(now)
}

func (it *idemTable) expireLocked(now time.Time) {
	for it.head < len(it.queue) && !now.Before(it.queue[it.head].rec.expires) {
		it.popLocked()
	}
}

// popLocked drops the oldest queued record (if the map still holds that
// very record: a key re-remembered later has a newer one).
func (it *idemTable) popLocked() {
	ref := it.queue[it.head]
	it.queue[it.head] = idemRef{}
	it.head++
	if it.m[ref.k] == ref.rec {
		delete(it.m, ref.k)
	}
	if it.head == len(it.queue) {
		it.queue, it.head = it.queue[:0], 0
	} else if it.head > 1024 && it.head*2 > len(it.queue) {
		n := copy(it.queue, it.queue[it.head:])
		clear(it.queue[n:])
		it.queue, it.head = it.queue[:n], 0
	}
}

// len returns how many records are kept.
func (it *idemTable) len() int {
	it.mu.Lock()
	defer it.mu.Unlock()
	return len(it.m)
}
