package actors_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// countingSink is a Sink that counts message frames and discards them.
type countingSink struct {
	messages   atomic.Int64
	subscribed atomic.Int64
}

var messagePrefix = []byte(`{"type":"message"`)

func (s *countingSink) Write(frame []byte) error {
	if bytes.HasPrefix(frame, messagePrefix) {
		s.messages.Add(1)
	} else {
		s.subscribed.Add(1)
	}
	return nil
}
func (s *countingSink) Flush() error      { return nil }
func (s *countingSink) Close(int, string) {}

type fanOut struct {
	mgr    *actors.TopicManager
	sinks  []*countingSink
	conns  []*actors.Connection
	finish func()
}

func newFanOut(tb testing.TB, subscribers int, obs actors.Observer) *fanOut {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	system := actors.NewActorSystem(log)
	store := persistence.NewMemoryStore(persistence.Limits{MaxMessages: 100_000})
	tb.Cleanup(func() { _ = store.Close() })
	mgr := actors.NewTopicManager(system, store, actors.Config{Observer: obs, ConnectionQueueSize: 1 << 20, ConnectionQueueBytes: 1 << 30}, log)
	f := &fanOut{mgr: mgr}
	frame, err := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["bench"]}`))
	if err != nil {
		tb.Fatal(err)
	}
	for range subscribers {
		s := &countingSink{}
		c, err := mgr.Connect(s, "ws", nil)
		if err != nil {
			tb.Fatal(err)
		}
		c.Subscribe(frame)
		f.sinks = append(f.sinks, s)
		f.conns = append(f.conns, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range f.sinks {
		for s.subscribed.Load() == 0 {
			if time.Now().After(deadline) {
				tb.Fatal("subscriptions did not complete")
			}
			time.Sleep(time.Millisecond)
		}
	}
	f.finish = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, c := range f.conns {
			c.Stop(ctx)
		}
		mgr.Shutdown(ctx)
		system.Shutdown()
	}
	return f
}

// waitDelivered waits until every sink has n message frames.
func (f *fanOut) waitDelivered(tb testing.TB, n int64) {
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range f.sinks {
		for s.messages.Load() < n {
			if time.Now().After(deadline) {
				tb.Fatalf("deliveries stalled at %d of %d", s.messages.Load(), n)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// BenchmarkTopicFanOut1000 publishes b.N messages to one topic with 1,000
// subscribers (no sockets: the Sink discards) and reports deliveries/s and
// allocations per delivery. One op is one published message.
func BenchmarkTopicFanOut1000(b *testing.B) {
	benchFanOut(b, 1000, nil)
}

func benchFanOut(b *testing.B, subscribers int, obs actors.Observer) {
	f := newFanOut(b, subscribers, obs)
	defer f.finish()
	payload := []byte(`{"user_id":123,"message":"Hello"}`)
	b.ReportAllocs()
	b.ResetTimer()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	const publishers = 4
	var wg sync.WaitGroup
	var next atomic.Int64
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				m := messages.Message{Topic: "bench", Payload: payload, Timestamp: time.Now()}
				if _, err := f.mgr.Publish(context.Background(), m); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	f.waitDelivered(b, int64(b.N))
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&after)
	deliveries := float64(b.N) * float64(subscribers)
	b.ReportMetric(deliveries/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(elapsed.Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
}
