package actors_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// heldSink is a sink like the gateway's: a Write is held, and only a Flush
// makes the frames written since the last Flush visible (in visible).
type heldSink struct {
	visible *fakeSink

	mu         sync.Mutex
	held       [][]byte
	flushes    int
	emptyFlush int // Flushes with nothing written since the last one
}

func (s *heldSink) Write(frame []byte) error {
	s.mu.Lock()
	s.held = append(s.held, append([]byte(nil), frame...))
	s.mu.Unlock()
	return nil
}

func (s *heldSink) Flush() error {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.flushes++
	if len(held) == 0 {
		s.emptyFlush++
	}
	s.mu.Unlock()
	for _, f := range held {
		if err := s.visible.Write(f); err != nil {
			return err
		}
	}
	return nil
}

func (s *heldSink) Close(code int, reason string) { s.visible.Close(code, reason) }

// heldCount is the number of frames written since the last Flush.
func (s *heldSink) heldCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// TestEveryWriteIsFlushed: with and without a write delay, every frame the
// connection actor writes is followed by a Flush (none is left held), and
// Flush is never called without a Write before it.
func TestEveryWriteIsFlushed(t *testing.T) {
	for _, delay := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(fmt.Sprint("delay=", delay), func(t *testing.T) {
			m := newManager(t, nil, actors.Config{WriteDelay: delay})
			sink := &heldSink{visible: newSink()}
			c := connect(t, m, sink)
			subscribe(t, c, sink.visible, `{"type":"subscribe","topics":["held"]}`)
			const n = 300
			want := make([]string, 0, n)
			for i := range n {
				want = append(want, publish(t, m, "held", i))
			}
			sameIDs(t, "delivered", waitIDs(t, sink.visible, "held", n, 10*time.Second), want)
			relaytest.Eventually(t, 5*time.Second, "nothing left held", func() bool {
				sink.mu.Lock()
				defer sink.mu.Unlock()
				return len(sink.held) == 0
			})
			sink.mu.Lock()
			defer sink.mu.Unlock()
			if sink.emptyFlush > 0 {
				t.Fatalf("%d of %d Flushes had no Write before them", sink.emptyFlush, sink.flushes)
			}
		})
	}
}
