package persistence

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// MemoryStore keeps messages in process memory: the default store, lost on
// restart. Ids take their millisecond from the message's Timestamp and stay
// strictly increasing per topic even when timestamps step back.
type MemoryStore struct {
	limits   Limits
	now      func() time.Time
	idem     *idemTable
	maxBytes int64        // WithByteBudget; 0: none
	bytes    atomic.Int64 // what all topics' messages take (entryBytes)
	evicting atomic.Bool  // one evict at a time

	mu     sync.RWMutex
	topics map[string]*memTopic
	floor  messages.ID // newest id of any topic removed from the map
	closed bool

	stop chan struct{} // closed by Close: ends the sweeper
	wg   sync.WaitGroup
}

var _ Store = (*MemoryStore)(nil)

type memTopic struct {
	name    string // the topic's name; immutable
	epoch   string // this incarnation's random id; immutable
	mu      sync.RWMutex
	msgs    msgLog      // ascending ids
	origin  messages.ID // first id ever assigned; zero until then
	last    messages.ID // newest id ever assigned
	trimmed messages.ID // newest id removed by trimming
	limits  Limits      // what the last append trimmed with; the sweeper's too
	dead    bool        // removed from the map: writers look again
}

// MemoryOption configures a MemoryStore.
type MemoryOption func(*memoryOptions)

type memoryOptions struct {
	now      func() time.Time
	idemCap  int
	sweep    time.Duration
	maxBytes int64
}

// WithByteBudget bounds what the messages of all topics take together
// (RELAY_MEMORY_STORE_BYTES): past it, an append is followed by trimming
// the oldest messages of the topics holding the most, down to seven eighths
// of the budget. Trimmed messages are gone as if by retention (a resume
// before them reports Truncated). n <= 0: no budget.
func WithByteBudget(n int64) MemoryOption {
	return func(o *memoryOptions) { o.maxBytes = n }
}

// WithSweepInterval sets how often the sweeper drops expired and
// out-of-retention messages, removes emptied topics and forgets expired
// idempotency keys (default DefaultSweepInterval).
func WithSweepInterval(d time.Duration) MemoryOption {
	return func(o *memoryOptions) { o.sweep = d }
}

// WithClock makes the store read the time from now instead of time.Now (for
// tests: retention, ttl and idempotency expiry follow it).
func WithClock(now func() time.Time) MemoryOption {
	return func(o *memoryOptions) { o.now = now }
}

// WithIdempotencyCap bounds how many (topic, Idempotency-Key) records the
// store keeps (default DefaultIdempotencyCap). Over the cap the oldest
// record is forgotten before its window ends, so a repeat of that key would
// be stored again: size the cap above the keys expected per window.
func WithIdempotencyCap(n int) MemoryOption {
	return func(o *memoryOptions) { o.idemCap = n }
}

// NewMemoryStore returns an empty store that trims to limits on every append
// and runs a sweeper goroutine (see sweep) until Close.
func NewMemoryStore(limits Limits, opts ...MemoryOption) *MemoryStore {
	o := memoryOptions{now: time.Now, idemCap: DefaultIdempotencyCap, sweep: DefaultSweepInterval}
	for _, opt := range opts {
		opt(&o)
	}
	if o.idemCap <= 0 {
		o.idemCap = DefaultIdempotencyCap
	}
	if o.sweep <= 0 {
		o.sweep = DefaultSweepInterval
	}
	s := &MemoryStore{
		limits:   limits,
		now:      o.now,
		idem:     newIdemTable(limits.idempotencyWindow(), o.idemCap),
		maxBytes: max(o.maxBytes, 0),
		topics:   make(map[string]*memTopic),
		stop:     make(chan struct{}),
	}
	s.wg.Add(1)
	go s.sweeper(o.sweep)
	return s
}

// IdempotencyKeys returns how many Idempotency-Key records the store holds
// (bounded by WithIdempotencyCap), for a gauge.
func (s *MemoryStore) IdempotencyKeys() int { return s.idem.len() }

func (s *MemoryStore) topic(name string, create bool) (*memTopic, error) {
	s.mu.RLock()
	t, closed := s.topics[name], s.closed
	s.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("memory store: %w: closed", messages.ErrUnavailable)
	}
	if t != nil || !create {
		return t, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("memory store: %w: closed", messages.ErrUnavailable)
	}
	if t = s.topics[name]; t == nil {
		// A new incarnation's ids follow every removed topic's (floor), as
		// the Valkey store's follow the meta hash's last: a resume point
		// from an earlier incarnation then never names a new message, even
		// if the clock stepped back in between.
		t = &memTopic{name: name, epoch: newEpoch(), last: s.floor, limits: s.limits}
		s.topics[name] = t
	}
	return t, nil
}

// removeLocked takes t out of the map (the caller holds s.mu and t.mu):
// its bytes leave the budget, writers that found it look again (dead), and
// the floor keeps its newest id.
func (s *MemoryStore) removeLocked(name string, t *memTopic) {
	t.dead = true
	s.bytes.Add(-t.msgs.Bytes())
	if s.floor.Less(t.last) {
		s.floor = t.last
	}
	delete(s.topics, name)
}

// dropTopic removes topic and its messages (an owned topic's deletion).
func (s *MemoryStore) dropTopic(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.topics[name]; t != nil {
		t.mu.Lock()
		s.removeLocked(name, t)
		t.mu.Unlock()
	}
}

// holdsMessages reports whether topic holds stored messages.
func (s *MemoryStore) holdsMessages(name string) bool {
	s.mu.RLock()
	t := s.topics[name]
	s.mu.RUnlock()
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.msgs.Len() > 0
}

// AppendsInline implements Inline: Append only takes the topic's lock.
func (s *MemoryStore) AppendsInline() bool { return true }

// Append implements Store.
func (s *MemoryStore) Append(ctx context.Context, topic string, batch []messages.Message) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory store: append %q: %w: %w", topic, messages.ErrUnavailable, err)
	}
	t, err := s.lockForAppend(topic)
	if err != nil {
		return 0, fmt.Errorf("memory store: append %q: %w", topic, err)
	}
	before := t.msgs.Bytes()
	defer func() {
		s.bytes.Add(t.msgs.Bytes() - before)
		t.mu.Unlock()
		if s.maxBytes > 0 && s.bytes.Load() > s.maxBytes {
			s.evict()
		}
	}()
	now := s.now()
	for i := range batch {
		m := &batch[i]
		if m.IdempotencyKey != "" {
			// Holding t.mu makes check-then-put atomic for this topic.
			if rec := s.idem.get(topic, m.IdempotencyKey, now); rec != nil {
				rec.settle(m, topic)
				continue
			}
		}
		m.ID = messages.NextAfter(t.last, uint64(m.Timestamp.UnixMilli()))
		m.Topic = topic
		if t.origin.IsZero() {
			t.origin = m.ID
		}
		t.last = m.ID
		t.msgs.Append(m)
		if m.IdempotencyKey != "" {
			s.idem.put(topic, m, now)
		}
	}
	t.limits = appendLimits(ctx, s.limits)
	t.trim(t.limits, now)
	return len(batch), nil
}

// lockForAppend returns topic's entry, created if need be, write-locked. An
// entry the sweeper removed meanwhile is dead: look again.
func (s *MemoryStore) lockForAppend(topic string) (*memTopic, error) {
	for {
		t, err := s.topic(topic, true)
		if err != nil {
			return nil, err
		}
		t.mu.Lock()
		if !t.dead {
			return t, nil
		}
		t.mu.Unlock()
	}
}

// Bytes returns what the stored messages take (by entryBytes, bounded by
// WithByteBudget), for a gauge.
func (s *MemoryStore) Bytes() int64 { return s.bytes.Load() }

// evict trims the topics that hold the most, oldest messages first, until
// the store holds at most seven eighths of its byte budget: each step takes
// at most half of the largest topic, so a topic flooded with large
// messages pays first and a small topic keeps its history. A topic left
// empty leaves the map at once, as the sweeper would remove it (its state
// is no longer counted). One evict runs at a time (others return: it
// already works for them); each topic is locked only while it is trimmed.
//
// The topics are ranked in a heap by what they held when looked at (a
// topic's own size is read again under its lock), and ranked again after
// a quarter of them were trimmed, or when the heap runs out: ranking again
// for every step made an evict over many one-message topics quadratic
// (40,000 topics took 5 s, a million would take hours), and never ranking
// again would miss a topic flooded while the evict runs. A topic removed
// meanwhile (deleted, swept) leaves the heap; a ranking that frees nothing
// ends the evict.
func (s *MemoryStore) evict() {
	if !s.evicting.CompareAndSwap(false, true) {
		return
	}
	defer s.evicting.Store(false)
	target := s.maxBytes - s.maxBytes/8
	var emptied []*memTopic
	defer func() { s.removeEmpty(emptied) }()
	for s.bytes.Load() > target {
		ranked := s.bySize()
		progress := false
		for steps := max(ranked.Len()/4, 1); steps > 0 && ranked.Len() > 0 && s.bytes.Load() > target; steps-- {
			t := ranked[0].t
			t.mu.Lock()
			before := t.msgs.Bytes()
			need := min(s.bytes.Load()-target, (before+1)/2)
			drop, freed := 0, int64(0)
			for !t.dead && drop < t.msgs.Len() && freed < need {
				freed += t.msgs.At(drop).bytes()
				drop++
			}
			if drop > 0 {
				t.trimmed = t.msgs.At(drop - 1).id
				t.msgs.DropFront(drop)
			}
			after := t.msgs.Bytes()
			s.bytes.Add(after - before)
			t.mu.Unlock()
			switch {
			case drop == 0: // removed meanwhile, or nothing left to take
				heap.Pop(&ranked)
			case after == 0:
				emptied = append(emptied, t)
				heap.Pop(&ranked)
				progress = true
			default:
				ranked[0].bytes = after
				heap.Fix(&ranked, 0)
				progress = true
			}
		}
		if !progress {
			return
		}
	}
}

// removeEmpty takes the topics of ts still empty out of the map (an append
// may have come in between).
func (s *MemoryStore) removeEmpty(ts []*memTopic) {
	if len(ts) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		t.mu.Lock()
		if !t.dead && t.msgs.Len() == 0 && s.topics[t.name] == t {
			s.removeLocked(t.name, t)
		}
		t.mu.Unlock()
	}
}

// bySize returns the topics holding messages in a max-heap by their bytes.
func (s *MemoryStore) bySize() topicHeap {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := make(topicHeap, 0, len(s.topics))
	for _, t := range s.topics {
		t.mu.RLock()
		n := t.msgs.Bytes()
		t.mu.RUnlock()
		if n > 0 {
			h = append(h, sizedTopic{t: t, bytes: n})
		}
	}
	heap.Init(&h)
	return h
}

// sizedTopic is a topic and its bytes when ranked.
type sizedTopic struct {
	t     *memTopic
	bytes int64
}

// topicHeap is a max-heap of topics by bytes (container/heap).
type topicHeap []sizedTopic

func (h topicHeap) Len() int           { return len(h) }
func (h topicHeap) Less(i, j int) bool { return h[i].bytes > h[j].bytes }
func (h topicHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *topicHeap) Push(x any)        { *h = append(*h, x.(sizedTopic)) }
func (h *topicHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// trim drops messages over the count cap or older than the retention.
func (t *memTopic) trim(l Limits, now time.Time) {
	drop := 0
	if l.MaxMessages > 0 && t.msgs.Len() > l.MaxMessages {
		drop = t.msgs.Len() - l.MaxMessages
	}
	if l.Retention > 0 {
		cutoff := now.Add(-l.Retention).UnixNano()
		for drop < t.msgs.Len() && t.msgs.At(drop).ts < cutoff {
			drop++
		}
	}
	if drop == 0 {
		return
	}
	t.trimmed = t.msgs.At(drop - 1).id
	t.msgs.DropFront(drop)
}

// Range implements Store. A topic this store does not hold (never written
// since the process started, or swept away) has no epoch; a non-zero after
// on it is Truncated.
func (s *MemoryStore) Range(ctx context.Context, topic string, after messages.ID, limit int) (Page, error) {
	t, err := s.topic(topic, false)
	if err != nil {
		return Page{}, fmt.Errorf("memory store: range %q: %w", topic, err)
	}
	if t == nil {
		return Page{Truncated: !after.IsZero()}, nil
	}
	now := s.now()
	cutoff, nowNs := s.cutoff(now), now.UnixNano()
	t.mu.RLock()
	defer t.mu.RUnlock()
	page := Page{
		Epoch:     t.epoch,
		Truncated: after.Less(t.trimmed) || (!after.IsZero() && after.Less(t.origin)),
	}
	budget := scanBudget(limit)
	for i := t.msgs.After(after); i < t.msgs.Len() && len(page.Messages) < limit; i++ {
		if budget == 0 {
			page.Next = t.msgs.At(i - 1).id
			break
		}
		budget--
		e := t.msgs.At(i)
		if e.ts < cutoff {
			page.Truncated = true
			continue
		}
		if e.expired(nowNs) {
			continue
		}
		page.Messages = append(page.Messages, e.message(t.name))
	}
	return page, nil
}

// cutoff is the oldest timestamp retained at now, in Unix ns; noCutoff
// without retention.
func (s *MemoryStore) cutoff(now time.Time) int64 {
	if s.limits.Retention > 0 {
		return now.Add(-s.limits.Retention).UnixNano()
	}
	return noCutoff
}

// RevRange implements Store.
func (s *MemoryStore) RevRange(ctx context.Context, topic string, before messages.ID, limit int) (Page, error) {
	t, err := s.topic(topic, false)
	if err != nil {
		return Page{}, fmt.Errorf("memory store: revrange %q: %w", topic, err)
	}
	if t == nil {
		return Page{}, nil
	}
	now := s.now()
	cutoff, nowNs := s.cutoff(now), now.UnixNano()
	t.mu.RLock()
	defer t.mu.RUnlock()
	page := Page{Epoch: t.epoch}
	i := t.msgs.Len()
	if !before.IsZero() {
		i = t.msgs.From(before)
	}
	budget := scanBudget(limit)
	for i--; i >= 0 && len(page.Messages) < limit; i-- {
		if budget == 0 {
			page.Next = t.msgs.At(i + 1).id
			break
		}
		budget--
		e := t.msgs.At(i)
		if e.ts < cutoff {
			break
		}
		if !e.expired(nowNs) {
			page.Messages = append(page.Messages, e.message(t.name))
		}
	}
	return page, nil
}

// Tips implements Store.
func (s *MemoryStore) Tips(ctx context.Context, topics []string) (map[string]Tip, error) {
	out := make(map[string]Tip, len(topics))
	for _, name := range topics {
		t, err := s.topic(name, false)
		if err != nil {
			return nil, fmt.Errorf("memory store: tips: %w", err)
		}
		if t == nil {
			out[name] = Tip{}
			continue
		}
		t.mu.RLock()
		out[name] = Tip{Last: t.last, Epoch: t.epoch}
		t.mu.RUnlock()
	}
	return out, nil
}

// Ping implements Store.
func (s *MemoryStore) Ping(ctx context.Context) error {
	_, err := s.topic("", false)
	return err
}

// Close implements Store: it stops the sweeper and drops every topic.
// Close is idempotent.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.topics = nil
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	return nil
}
