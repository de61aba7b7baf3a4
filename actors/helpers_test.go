package actors_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// fakeSink is an actors.Sink that records frames. While blocked, Write
// waits (a peer that does not read) until unblock or Close.
type fakeSink struct {
	mu        sync.Mutex
	frames    []sinkFrame
	closeCode int
	blocked   chan struct{} // nil: writes go through
	closed    chan struct{}
	closeOnce sync.Once
}

// sinkFrame is a written frame, decoded.
type sinkFrame struct {
	Type      string   `json:"type"`
	MessageID string   `json:"message_id"`
	Topic     string   `json:"topic"`
	Topics    []string `json:"topics"`
	Truncated []string `json:"truncated"`
	Code      string   `json:"code"`
	Message   string   `json:"message"`
}

func newSink() *fakeSink { return &fakeSink{closed: make(chan struct{})} }

// block makes later writes wait until unblock.
func (s *fakeSink) block() {
	s.mu.Lock()
	s.blocked = make(chan struct{})
	s.mu.Unlock()
}

func (s *fakeSink) unblock() {
	s.mu.Lock()
	if s.blocked != nil {
		close(s.blocked)
		s.blocked = nil
	}
	s.mu.Unlock()
}

func (s *fakeSink) Write(frame []byte) error {
	s.mu.Lock()
	gate := s.blocked
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-s.closed:
			return fmt.Errorf("sink closed")
		}
	}
	var f sinkFrame
	if err := json.Unmarshal(frame, &f); err != nil {
		return fmt.Errorf("bad frame %q: %w", frame, err)
	}
	s.mu.Lock()
	s.frames = append(s.frames, f)
	s.mu.Unlock()
	return nil
}

func (s *fakeSink) Flush() error { return nil }

func (s *fakeSink) Close(code int, _ string) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closeCode = code
		s.mu.Unlock()
		close(s.closed)
	})
}

func (s *fakeSink) code() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeCode
}

// all returns the frames written so far.
func (s *fakeSink) all() []sinkFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.frames)
}

// ids returns the message ids written for topic, in order.
func (s *fakeSink) ids(topic string) []string {
	var out []string
	for _, f := range s.all() {
		if f.Type == "message" && f.Topic == topic {
			out = append(out, f.MessageID)
		}
	}
	return out
}

// ofType returns the frames of one type.
func (s *fakeSink) ofType(typ string) []sinkFrame {
	var out []sinkFrame
	for _, f := range s.all() {
		if f.Type == typ {
			out = append(out, f)
		}
	}
	return out
}

// newManager starts an actor system and manager, shut down in cleanup.
func newManager(t testing.TB, store persistence.Store, cfg actors.Config) *actors.TopicManager {
	t.Helper()
	if store == nil {
		store = persistence.NewMemoryStore(persistence.Limits{})
		t.Cleanup(func() { _ = store.Close() })
	}
	log := relaytest.Logger()
	system := actors.NewActorSystem(log)
	m := actors.NewTopicManager(system, store, cfg, log)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
		system.Shutdown()
	})
	return m
}

// connect opens a connection on sink, stopped in cleanup.
func connect(t testing.TB, m *actors.TopicManager, sink actors.Sink) *actors.Connection {
	t.Helper()
	c, err := m.Connect(sink, "ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Stop(ctx)
	})
	return c
}

// subscribe sends a subscribe frame given as JSON and waits for its
// "subscribed" frame (the n-th on this sink).
func subscribe(t testing.TB, c *actors.Connection, sink *fakeSink, frame string) sinkFrame {
	t.Helper()
	f, err := messages.DecodeClientFrame([]byte(frame))
	if err != nil {
		t.Fatal(err)
	}
	before := len(sink.ofType("subscribed"))
	c.Subscribe(f)
	var got sinkFrame
	relaytest.Eventually(t, 5*time.Second, "subscribed", func() bool {
		subs := sink.ofType("subscribed")
		if len(subs) > before {
			got = subs[before]
			return true
		}
		return false
	})
	return got
}

func message(topic string, i int) messages.Message {
	return messages.Message{Topic: topic, Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Timestamp: time.Now().UTC()}
}

// publish publishes and fails the test on an error.
func publish(t testing.TB, m *actors.TopicManager, topic string, i int) string {
	t.Helper()
	got, err := m.Publish(context.Background(), message(topic, i))
	if err != nil {
		t.Fatalf("publish %d to %s: %v", i, topic, err)
	}
	return got.ID.String()
}

// storedIDs returns every retained id of topic, in order.
func storedIDs(t testing.TB, s persistence.Store, topic string, after messages.ID) []string {
	t.Helper()
	var out []string
	for {
		page, err := s.Range(context.Background(), topic, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			out = append(out, m.ID.String())
			after = m.ID
		}
		if len(page.Messages) < 1000 && page.Next.IsZero() {
			return out
		}
		if !page.Next.IsZero() && after.Less(page.Next) {
			after = page.Next
		}
	}
}

// waitIDs waits until sink has n message frames of topic and returns them.
func waitIDs(t testing.TB, sink *fakeSink, topic string, n int, d time.Duration) []string {
	t.Helper()
	var got []string
	relaytest.Eventually(t, d, fmt.Sprintf("%d messages on %s (have %d)", n, topic, len(sink.ids(topic))), func() bool {
		got = sink.ids(topic)
		return len(got) >= n
	})
	return got
}

// sameIDs fails unless got equals want.
func sameIDs(t testing.TB, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("%s: %d ids, want %d; first difference at %d: %s, want %s", what, len(got), len(want), i, got[i], want[i])
		}
	}
	t.Fatalf("%s: %d ids, want %d", what, len(got), len(want))
}

// gatedRangeStore holds the Range calls gate picks until open is closed
// (or their ctx ends), counting the reads that wait.
type gatedRangeStore struct {
	persistence.Store
	gate    func(topic string, limit int) bool
	open    chan struct{}
	waiting atomic.Int32
}

func newGatedRangeStore(s persistence.Store, gate func(topic string, limit int) bool) *gatedRangeStore {
	return &gatedRangeStore{Store: s, gate: gate, open: make(chan struct{})}
}

func (s *gatedRangeStore) Range(ctx context.Context, topic string, after messages.ID, limit int) (persistence.Page, error) {
	if s.gate(topic, limit) {
		s.waiting.Add(1)
		select {
		case <-s.open:
		case <-ctx.Done():
		}
	}
	return s.Store.Range(ctx, topic, after, limit)
}
