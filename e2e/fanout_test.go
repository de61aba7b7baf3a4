package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
)

// collect reads n message frames per client concurrently and returns, per
// client, the ids per topic in arrival order; it fails the test on an error,
// so it is only for the test's goroutine (collectAsync is for any other).
func collect(t *testing.T, ctx context.Context, clients []*relaytest.Client, n int) []map[string][]string {
	t.Helper()
	got, err := collectFrames(ctx, clients, n)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// collectFrames is collect returning the first error instead of failing
// the test (FailNow only works on the test's goroutine).
func collectFrames(ctx context.Context, clients []*relaytest.Client, n int) ([]map[string][]string, error) {
	out := make([]map[string][]string, len(clients))
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := map[string][]string{}
			for k := range n {
				f, err := c.Read(ctx)
				if err != nil {
					errs <- fmt.Errorf("client %d after %d messages: %w", i, k, err)
					return
				}
				if f.Type != "message" {
					errs <- fmt.Errorf("client %d: unexpected frame %+v", i, f)
					return
				}
				got[f.Topic] = append(got[f.Topic], f.MessageID)
			}
			out[i] = got
		}()
	}
	wg.Wait()
	close(errs)
	return out, <-errs // nil when no client failed
}

// collectAsync runs collectFrames on its own goroutine; wait returns its
// result once it is done (done is closed whatever collectFrames does).
func collectAsync(ctx context.Context, clients []*relaytest.Client, n int) (wait func() ([]map[string][]string, error)) {
	var got []map[string][]string
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		got, err = collectFrames(ctx, clients, n)
	}()
	return func() ([]map[string][]string, error) { <-done; return got, err }
}

// publishAll publishes perTopic messages to each topic from 8 concurrent
// publishers, interleaving topics, and returns the acked ids per topic in id
// order (the store's order).
func publishAll(t *testing.T, r *relaytest.Relay, topics []string, perTopic int) map[string][]string {
	t.Helper()
	type job struct {
		topic string
		i     int
	}
	jobs := make(chan job)
	go func() {
		defer close(jobs)
		for i := range perTopic {
			for _, tp := range topics {
				jobs <- job{tp, i}
			}
		}
	}()
	// The publishers run off the test's goroutine: they record the first
	// refusal (and keep draining jobs so the feeder ends) for the test to
	// report, instead of calling FailNow.
	var wg sync.WaitGroup
	var failOnce sync.Once
	var failed error
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if status, body := r.Publish(j.topic, map[string]any{"i": j.i}); status != http.StatusCreated {
					failOnce.Do(func() { failed = fmt.Errorf("publish to %s: status %d body %v", j.topic, status, body) })
				}
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	want := map[string][]string{}
	for _, tp := range topics {
		want[tp] = storedAfter(t, r.Store, tp, "")
		if len(want[tp]) != perTopic {
			t.Fatalf("topic %s: store holds %d, want %d", tp, len(want[tp]), perTopic)
		}
	}
	return want
}

func checkDeliveries(t *testing.T, got []map[string][]string, subsOf func(client int) []string, want map[string][]string) {
	t.Helper()
	for i, g := range got {
		for _, tp := range subsOf(i) {
			w := want[tp]
			if len(g[tp]) != len(w) {
				t.Fatalf("client %d topic %s: %d messages, want %d", i, tp, len(g[tp]), len(w))
			}
			for k := range w {
				if g[tp][k] != w[k] {
					t.Fatalf("client %d topic %s message %d: got %s, want %s (order, gap or duplicate)", i, tp, k, g[tp][k], w[k])
				}
			}
		}
	}
}

// 100 subscribers x 1,000 messages: 200 x 2,000 under the race detector took
// minutes on a loaded 2-core machine, long enough for the relay to drop
// clients the test could not schedule (write timeout).
func TestFanOutOneTopic100Subscribers(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	clients := make([]*relaytest.Client, 100)
	for i := range clients {
		clients[i] = r.Dial(ctx)
		clients[i].Subscribe(ctx, map[string]any{"topics": []string{"fanout"}})
	}
	wait := collectAsync(ctx, clients, 1000)
	want := publishAll(t, r, []string{"fanout"}, 1000)
	got, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	checkDeliveries(t, got, func(int) []string { return []string{"fanout"} }, want)
}

func TestFanOut50Topics(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var topics []string
	for i := range 50 {
		topics = append(topics, fmt.Sprintf("topic-%02d", i))
	}
	clients := make([]*relaytest.Client, 200) // 4 per topic
	for i := range clients {
		clients[i] = r.Dial(ctx)
		clients[i].Subscribe(ctx, map[string]any{"topics": []string{topics[i%50]}})
	}
	const perTopic = 40
	wait := collectAsync(ctx, clients, perTopic)
	want := publishAll(t, r, topics, perTopic)
	got, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	checkDeliveries(t, got, func(i int) []string { return []string{topics[i%50]} }, want)
}
