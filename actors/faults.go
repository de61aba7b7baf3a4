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
func (f *Faults) PanicTopic(topic string, n int) { f.arm(&f.topicPanics, topic, n) }

// PanicTopicFlush makes the actor of topic panic the next n times it is
// about to wake its subscribers for deliveries it has queued (between
// queueing a batch's frames and the wake-ups they owe).
func (f *Faults) PanicTopicFlush(topic string, n int) { f.arm(&f.flushPanics, topic, n) }

// PanicConnection makes the connection actor with session id panic on its
// next message.
func (f *Faults) PanicConnection(sessionID string) { f.arm(&f.connPanics, sessionID, 1) }

// arm adds n faults for key to *m (a field of f, set under f.mu).
func (f *Faults) arm(m *map[string]int, key string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *m == nil {
		*m = make(map[string]int)
	}
	(*m)[key] += n
}

// take uses up one fault armed for key in *m, if there is one.
func (f *Faults) take(m *map[string]int, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if (*m)[key] == 0 {
		return false
	}
	(*m)[key]--
	return true
}

// The maybePanic functions panic if a fault is armed for their key. A nil
// *Faults never panics.

func (f *Faults) maybePanicTopic(topic string) {
	if f != nil && f.take(&f.topicPanics, topic) {
		panic("injected fault: topic " + topic)
	}
}

func (f *Faults) maybePanicFlush(topic string) {
	if f != nil && f.take(&f.flushPanics, topic) {
		panic("injected fault: topic " + topic + " before waking its subscribers")
	}
}

func (f *Faults) maybePanicConnection(id string) {
	if f != nil && f.take(&f.connPanics, id) {
		panic("injected fault: connection " + id)
	}
}
