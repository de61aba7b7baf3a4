package actors

// fitTopic applies d's topic bound (d.lim, see queueLimits) before d is
// queued: while this subscription's frames in the queue are at the topic's
// connection_queue_size or d would take them over connection_queue_bytes,
// drop-oldest drops the subscription's oldest queued frame (counted like
// any drop-oldest drop) and disconnect overflows the queue. It reports
// false after an overflow, with mu released; otherwise mu stays held.
// d.sub is not nil.
func (o *outbox) fitTopic(d delivery) bool {
	s, l := d.sub, d.lim
	for s.outQueued > 0 && (s.outQueued >= l.maxMsgs || s.outBytes+len(d.frame) > l.maxBytes) {
		if l.policy != PolicyDropOldest {
			o.overflowLocked()
			return false
		}
		i := o.indexOf(s)
		if i < 0 { // the counters are out of step with the ring: never drop blindly
			break
		}
		o.removeAt(i)
	}
	return true
}

// indexOf is the position (0 = oldest) of s's oldest queued frame, or -1.
// Called with mu held; O(position).
func (o *outbox) indexOf(s *subscription) int {
	for i := 0; i < o.n; i++ {
		if o.ring[(o.head+i)%len(o.ring)].sub == s {
			return i
		}
	}
	return -1
}

// queueRoom is an amount of an outbox's queue: frames and their bytes.
type queueRoom struct{ msgs, bytes int }

// hasRoom reports whether the queue can take room more now. A closed one
// takes anything (it drops it), and so does an empty one: what it cannot
// take even then is its slow-consumer policy's.
func (o *outbox) hasRoom(room queueRoom) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed() || o.n == 0 || (o.n+room.msgs <= o.maxMsgs && o.bytes+room.bytes <= o.maxBytes)
}

// depth is what the queue holds now: frames and bytes.
func (o *outbox) depth() (msgs, bytes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n, o.bytes
}
