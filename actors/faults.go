package actors

import "sync"

// Faults injects failures into actors for tests. It is reachable only through
// Config.Faults, which production wiring leaves nil; nothing on the network
// can set it. Safe for concurrent use.
type Faults struct {
	mu          sync.Mutex
	topicPanics map[string]int
	flushPanics map[string]int
	connPanics  map[string]int
}

// PanicTopic makes the actor of topic panic on its next n messages.
func (f *Faults) PanicTopic(topic string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.topicPanics == nil {
		f.topicPanics = make(map[string]int)
	}
	f.topicPanics[topic] += n
}

// PanicTopicFlush makes the actor of topic panic the next n times it is
// about to wake its subscribers for deliveries it has queued (between
// queueing a batch's frames and the wake-ups they owe).
func (f *Faults) PanicTopicFlush(topic string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flushPanics == nil {
		f.flushPanics = make(map[string]int)
	}
	f.flushPanics[topic] += n
}

// PanicConnection makes the connection actor with session id panic on its
// next message.
func (f *Faults) PanicConnection(sessionID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.connPanics == nil {
		f.connPanics = make(map[string]int)
	}
	f.connPanics[sessionID]++
}

func take(f *Faults, m map[string]int, key string) bool {
	if m[key] == 0 {
		return false
	}
	m[key]--
	return true
}

// maybePanic panics if a fault is armed for key. A nil *Faults never panics.
func (f *Faults) maybePanicTopic(topic string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	hit := take(f, f.topicPanics, topic)
	f.mu.Unlock()
	if hit {
		panic("injected fault: topic " + topic)
	}
}

func (f *Faults) maybePanicFlush(topic string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	hit := take(f, f.flushPanics, topic)
	f.mu.Unlock()
	if hit {
		panic("injected fault: topic " + topic + " before waking its subscribers")
	}
}

func (f *Faults) maybePanicConnection(id string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	hit := take(f, f.connPanics, id)
	f.mu.Unlock()
	if hit {
		panic("injected fault: connection " + id)
	}
}
