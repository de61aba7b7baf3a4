package actors_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
)

// noBlockSink is an actors.NoBlockSink over a heldSink (a Write is held, a
// Flush makes what is held visible), except inside a no-block stretch
// with holdInside set, where a Flush keeps it held (a socket that took
// nothing at once) and EndNoBlock reports it.
type noBlockSink struct {
	*heldSink
	holdInside bool

	mu             sync.Mutex
	inside         bool
	begins         int
	writesInside   int
	flushesOutside int
}

var _ actors.NoBlockSink = (*noBlockSink)(nil)

func newNoBlockSink(holdInside bool) *noBlockSink {
	return &noBlockSink{heldSink: &heldSink{visible: newSink()}, holdInside: holdInside}
}

func (s *noBlockSink) BeginNoBlock() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inside = true
	s.begins++
	return true
}

func (s *noBlockSink) EndNoBlock() bool {
	s.mu.Lock()
	s.inside = false
	s.mu.Unlock()
	return s.heldCount() > 0
}

func (s *noBlockSink) Write(frame []byte) error {
	s.mu.Lock()
	if s.inside {
		s.writesInside++
	}
	s.mu.Unlock()
	return s.heldSink.Write(frame)
}

func (s *noBlockSink) Flush() error {
	s.mu.Lock()
	inside := s.inside
	if !inside {
		s.flushesOutside++
	}
	s.mu.Unlock()
	if inside && s.holdInside {
		return nil
	}
	return s.heldSink.Flush()
}

func (s *noBlockSink) counts() (begins, writesInside, flushesOutside int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begins, s.writesInside, s.flushesOutside
}

// publishQuietly publishes n messages to topic, each more than the
// topic's inline gap (1 ms) after the one before, so the topic is quiet.
func publishQuietly(t *testing.T, m *actors.TopicManager, topic string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		time.Sleep(3 * time.Millisecond)
		ids[i] = publish(t, m, topic, i)
	}
	return ids
}

// TestQuietTopicWritesToFewSubscribersOnItsOwnGoroutine: a quiet topic with
// a few subscribers writes to their sinks inside a no-block stretch (the
// connection actor's drain run on the topic actor's goroutine), and every
// message arrives once, in order.
func TestQuietTopicWritesToFewSubscribersOnItsOwnGoroutine(t *testing.T) {
	m := newManager(t, nil, actors.Config{})
	few := []*noBlockSink{newNoBlockSink(false), newNoBlockSink(false)}
	for _, s := range few {
		subscribe(t, connect(t, m, s), s.visible, `{"type":"subscribe","topics":["few"]}`)
	}
	const n = 10
	fewIDs := publishQuietly(t, m, "few", n)
	for _, s := range few {
		sameIDs(t, "few", waitIDs(t, s.visible, "few", n, 5*time.Second), fewIDs)
		if _, inside, _ := s.counts(); inside == 0 {
			t.Errorf("no message to the quiet topic with 2 subscribers was written inside a no-block stretch")
		}
	}
}

// gatedSink is a noBlockSink whose BeginNoBlock waits until gate is
// closed: a stretch begun on the publisher's goroutine would hold up the
// publish. entered counts the BeginNoBlock calls that began waiting.
type gatedSink struct {
	*noBlockSink
	gate    chan struct{}
	entered *atomic.Int32
}

func (s *gatedSink) BeginNoBlock() bool {
	s.entered.Add(1)
	<-s.gate
	return s.noBlockSink.BeginNoBlock()
}

// TestWideQuietFanOutSpreadsOffThePublisher: a quiet topic with more
// subscribers than it writes to itself runs their connection actors on
// other goroutines (its shares), each inside a no-block stretch: the
// publish is answered while a stretch is held up, and then every message
// arrives once, in order, written inside a stretch.
func TestWideQuietFanOutSpreadsOffThePublisher(t *testing.T) {
	m := newManager(t, nil, actors.Config{})
	gate := make(chan struct{})
	openGate := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(openGate) // before the manager's: no run stays held up
	var entered atomic.Int32
	var wide []*gatedSink
	for range 12 { // more than inlineFanOut
		s := &gatedSink{noBlockSink: newNoBlockSink(false), gate: gate, entered: &entered}
		subscribe(t, connect(t, m, s), s.visible, `{"type":"subscribe","topics":["wide"]}`)
		wide = append(wide, s)
	}
	type result struct {
		msg messages.Message
		err error
	}
	published := make(chan result, 1)
	go func() { // m.Publish, not the publish helper: no t.Fatal off the test goroutine
		msg, err := m.Publish(context.Background(), message("wide", 0))
		published <- result{msg, err}
	}()
	var first string
	select {
	case r := <-published:
		if r.err != nil {
			t.Fatal(r.err)
		}
		first = r.msg.ID.String()
	case <-time.After(10 * time.Second):
		t.Fatal("the publish waited for its subscribers' writes: the fan-out ran on the publisher's goroutine")
	}
	relaytest.Eventually(t, 10*time.Second, "a subscriber's run waiting to begin its no-block stretch", func() bool {
		return entered.Load() > 0
	})
	openGate()
	const n = 10
	ids := append([]string{first}, publishQuietly(t, m, "wide", n-1)...)
	for _, s := range wide {
		sameIDs(t, "wide", waitIDs(t, s.visible, "wide", n, 5*time.Second), ids)
		if _, inside, _ := s.counts(); inside == 0 {
			t.Errorf("no message to the wide quiet topic was written inside a no-block stretch")
		}
	}
}

// TestBytesHeldByANoBlockRunAreFlushedAfter: when the socket takes nothing
// inside the stretch, the connection actor flushes what stayed held in a
// run of its own, outside the stretch; nothing is lost or reordered.
func TestBytesHeldByANoBlockRunAreFlushedAfter(t *testing.T) {
	m := newManager(t, nil, actors.Config{})
	s := newNoBlockSink(true)
	subscribe(t, connect(t, m, s), s.visible, `{"type":"subscribe","topics":["held"]}`)
	_, _, before := s.counts()
	const n = 10
	ids := publishQuietly(t, m, "held", n)
	sameIDs(t, "held", waitIDs(t, s.visible, "held", n, 5*time.Second), ids)
	begins, inside, after := s.counts()
	if begins == 0 || inside == 0 {
		t.Fatalf("%d stretches, %d writes inside: the inline path was not taken", begins, inside)
	}
	if after == before {
		t.Fatal("no Flush outside a stretch: the held bytes were not flushed by the connection actor")
	}
	relaytest.Eventually(t, 5*time.Second, "nothing left held", func() bool { return s.heldCount() == 0 })
}

// TestANoticesMessagesLeaveInOneWriteRun: the messages of one batch (here
// one notice of five, appended by "another relay") are queued to every
// subscriber before any connection actor is woken, so a quiet topic's few
// subscribers get them in one no-block stretch: one write(2) each, where
// waking after each message wrote the first alone and left the rest to
// the dispatcher.
func TestANoticesMessagesLeaveInOneWriteRun(t *testing.T) {
	store := newAnnouncingStore()
	m := newManager(t, store, actors.Config{SharedStore: true})
	few := []*noBlockSink{newNoBlockSink(false), newNoBlockSink(false)}
	for _, s := range few {
		subscribe(t, connect(t, m, s), s.visible, `{"type":"subscribe","topics":["batch"]}`)
	}
	var before [2][3]int // the subscribe answer's writes
	for i, s := range few {
		before[i][0], before[i][1], before[i][2] = s.counts()
	}
	time.Sleep(3 * time.Millisecond) // quiet: past the inline gap
	fill(t, store, "batch", 5)
	want := storedIDs(t, store, "batch", messages.ID{})
	for i, s := range few {
		sameIDs(t, "batch", waitIDs(t, s.visible, "batch", 5, 5*time.Second), want)
		begins, inside, outside := s.counts()
		begins, inside, outside = begins-before[i][0], inside-before[i][1], outside-before[i][2]
		if begins != 1 || inside != 5 || outside != 0 {
			t.Errorf("subscriber %d: %d no-block stretches with %d writes inside and %d flushes outside; want the 5 frames in 1 stretch, none outside",
				i, begins, inside, outside)
		}
	}
}
