package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// TestTopicActorPanicRestarts: a panic injected into a topic actor while 100
// subscribers receive a steady stream restarts the actor; subscribers stay
// connected and every acknowledged message reaches each of them once, in
// order.
func TestTopicActorPanicRestarts(t *testing.T) {
	relaytest.CheckLeaks(t)
	faults, counters := &actors.Faults{}, &relaytest.Counters{}
	r := relaytest.Start(t, relaytest.Options{Actors: actors.Config{Faults: faults, Observer: counters}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic = "steady"
	clients := make([]*relaytest.Client, 100)
	for i := range clients {
		clients[i] = r.Dial(ctx)
		clients[i].Subscribe(ctx, map[string]any{"topics": []string{topic}})
	}

	var mu sync.Mutex
	acked := map[string]bool{}
	refused := 0
	relaytest.Publishers(4, 250, nil, func(p, i int) bool {
		if p == 0 && i == 100 {
			faults.PanicTopic(topic, 1) // the next message the actor takes panics
		}
		status, body := r.Publish(topic, map[string]any{"p": p, "i": i})
		mu.Lock()
		defer mu.Unlock()
		switch status {
		case http.StatusCreated:
			acked[body["message_id"].(string)] = true
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Errorf("publish: %d %v", status, body)
		}
		return true
	})()
	relaytest.Eventually(t, 10*time.Second, "the restart to be counted", func() bool { return counters.Restarts.Load() >= 1 })
	stored := storedAfter(t, r.Store, topic, "")
	for _, id := range stored {
		if !acked[id] {
			t.Fatalf("message %s is stored but was not acknowledged", id)
		}
	}
	if len(acked) != len(stored) || len(acked)+refused != 1000 {
		t.Fatalf("acked %d, stored %d, refused %d; want acked = stored and acked + refused = 1000", len(acked), len(stored), refused)
	}
	got := collect(t, ctx, clients, len(stored))
	checkDeliveries(t, got, func(int) []string { return []string{topic} }, map[string][]string{topic: stored})
	t.Logf("restarts=%d refused=%d acked=%d", counters.Restarts.Load(), refused, len(acked))
}

// TestConnectionActorPanicClosesOnlyThatConnection: a panic in one
// connection actor closes that connection with 1011; the other subscribers
// of the topic see no gap.
func TestConnectionActorPanicClosesOnlyThatConnection(t *testing.T) {
	relaytest.CheckLeaks(t)
	faults := &actors.Faults{}
	r := relaytest.Start(t, relaytest.Options{Actors: actors.Config{Faults: faults}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "shared"
	victim := r.Dial(ctx)
	sub := victim.Subscribe(ctx, map[string]any{"topics": []string{topic}})
	others := make([]*relaytest.Client, 10)
	for i := range others {
		others[i] = r.Dial(ctx)
		others[i].Subscribe(ctx, map[string]any{"topics": []string{topic}})
	}
	for i := range 50 {
		if i == 20 {
			faults.PanicConnection(sub.SessionID)
		}
		r.MustPublish(topic, map[string]any{"i": i})
	}
	var lastErr error
	for {
		if _, err := victim.Read(ctx); err != nil {
			lastErr = err
			break
		}
	}
	if st := relaytest.CloseStatus(lastErr); st != 1011 {
		t.Fatalf("victim got %v (status %d), want close 1011", lastErr, st)
	}
	stored := storedAfter(t, r.Store, topic, "")
	got := collect(t, ctx, others, len(stored))
	checkDeliveries(t, got, func(int) []string { return []string{topic} }, map[string][]string{topic: stored})
}

// TestRestartBudgetExhausted: a topic actor that keeps failing is stopped;
// its subscribers get an error frame naming the topic, the relay stays up,
// and the next publish starts a fresh actor.
func TestRestartBudgetExhausted(t *testing.T) {
	relaytest.CheckLeaks(t)
	faults, counters := &actors.Faults{}, &relaytest.Counters{}
	r := relaytest.Start(t, relaytest.Options{Actors: actors.Config{Faults: faults, Observer: counters,
		Supervisor: actors.SupervisorConfig{MaxRestarts: 2, Window: 10 * time.Second, Backoff: time.Millisecond}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "doomed"
	c := r.Dial(ctx)
	c.Subscribe(ctx, map[string]any{"topics": []string{topic}})
	r.MustPublish(topic, map[string]any{"ok": 1})
	if f := c.MustRead(ctx); f.Type != "message" {
		t.Fatalf("got %+v", f)
	}

	faults.PanicTopic(topic, 3) // two restarts are allowed; the third failure stops it
	// The first failure is this publish's own. The other two hit whatever
	// reaches the restarted actor next: its catch-up read or the next
	// publishes (each refused with 503, or, once the actor has stopped,
	// stored by a fresh one).
	if status, body := r.Publish(topic, map[string]any{"boom": 0}); status != http.StatusServiceUnavailable {
		t.Fatalf("publish during failures: %d %v, want 503", status, body)
	}
	for i := 1; i < 3 && counters.Stops.Load() == 0; i++ {
		r.Publish(topic, map[string]any{"boom": i})
	}
	f := c.MustRead(ctx)
	if f.Type != "error" || f.Code != "SUBSCRIPTION_ERROR" || !contains(f.Message, topic) {
		t.Fatalf("subscriber got %+v, want a SUBSCRIPTION_ERROR naming %q", f, topic)
	}
	if counters.Restarts.Load() != 2 || counters.Stops.Load() != 1 {
		t.Fatalf("restarts=%d stops=%d, want 2 and 1", counters.Restarts.Load(), counters.Stops.Load())
	}
	resp, err := relaytest.HTTPClient.Get(r.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("relay not healthy after the stop: %d", resp.StatusCode)
	}

	id := r.MustPublish(topic, map[string]any{"revived": true})
	c.Subscribe(ctx, map[string]any{"topics": []string{topic}, "offset": "earliest"})
	want := storedAfter(t, r.Store, topic, "")
	if got := readIDs(t, ctx, c, len(want)); fmt.Sprint(got) != fmt.Sprint(want) || got[len(got)-1] != id {
		t.Fatalf("after revival the replay is %v, want %v ending with %s", got, want, id)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
