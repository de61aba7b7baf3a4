package persistence

import (
	"time"
)

// DefaultSweepInterval is how often a MemoryStore sweeps by default.
const DefaultSweepInterval = 30 * time.Second

// sweeper runs sweep every interval until Close.
func (s *MemoryStore) sweeper(interval time.Duration) {
	defer s.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.sweep()
		}
	}
}

// sweep applies retention to every topic, also the quiet ones that no
// append trims: it drops messages over the topic's limits (the last
// append's, WithLimits, else the store's) or past their ttl, then
// removes topics left empty from the map (their epoch goes with them, so a
// later append starts a new incarnation and an old resume point reports
// Truncated), and forgets expired idempotency keys. Each topic is locked
// only while it is swept.
func (s *MemoryStore) sweep() {
	now := s.now()
	s.idem.expire(now)
	s.mu.RLock()
	all := make([]*memTopic, 0, len(s.topics))
	names := make([]string, 0, len(s.topics))
	for name, t := range s.topics {
		all = append(all, t)
		names = append(names, name)
	}
	s.mu.RUnlock()

	var empty []string
	for i, t := range all {
		t.mu.Lock()
		before := t.msgs.Bytes()
		t.trim(t.limits, now)
		t.dropExpired(now)
		s.bytes.Add(t.msgs.Bytes() - before)
		if t.msgs.Len() == 0 {
			empty = append(empty, names[i])
		}
		t.mu.Unlock()
	}
	if len(empty) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range empty {
		t := s.topics[name]
		if t == nil {
			continue
		}
		t.mu.Lock()
		if t.msgs.Len() == 0 { // no append came in between
			s.removeLocked(name, t)
		}
		t.mu.Unlock()
	}
}

// dropExpired removes messages whose ttl has passed, keeping the order.
// Expiry is not trimming: trimmed (and so Truncated) does not change.
func (t *memTopic) dropExpired(now time.Time) {
	ns := now.UnixNano()
	t.msgs.Filter(func(e *logEntry) bool { return !e.expired(ns) })
}

// Topics returns how many topics the store holds, for a gauge.
func (s *MemoryStore) Topics() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.topics)
}
