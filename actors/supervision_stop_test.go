package actors_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// TestFinalStopAnswersWhatWasQueued: when a topic actor stops for good
// (its last allowed restart used up), what waited in its mailbox is
// answered: a connection's pending subscribe gets a SUBSCRIPTION_ERROR for
// the topic and its "subscribed" frame (so the commands deferred behind it
// run), and queued publishes get 503 at once, not at their timeout.
func TestFinalStopAnswersWhatWasQueued(t *testing.T) {
	faults, counters := &actors.Faults{}, &relaytest.Counters{}
	m := newManager(t, nil, actors.Config{Faults: faults, Observer: counters,
		Policies: mustSet(t, `{"topics":{"fragile":{"supervisor_max_restarts":1,"supervisor_window":"1m","supervisor_backoff":"1s"}}}`)})
	publish(t, m, "fragile", 0)
	s := newSink()
	c := connect(t, m, s)

	faults.PanicTopic("fragile", 2)
	// The first failure is this publish's own (503); the actor then waits
	// out its 1 s backoff with its mailbox suspended.
	if _, err := m.Publish(context.Background(), message("fragile", 1)); !errors.Is(err, messages.ErrUnavailable) {
		t.Fatalf("the failing publish: %v, want ErrUnavailable", err)
	}
	// Meanwhile a subscribe and two publishes queue. The second failure
	// hits whichever the restarted actor takes first, and it stops with
	// the others still queued: at least one publish, and the subscribe
	// (queued, or sent back to itself by the failure).
	sub := func(topics string) messages.ClientFrame {
		f, err := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":[` + topics + `]}`))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	c.Subscribe(sub(`"fragile"`))
	c.Subscribe(sub(`"calm"`)) // deferred behind the subscribe in progress
	c.Unsubscribe([]string{"calm"})
	results := make(chan error, 2)
	for i := 2; i <= 3; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := m.Publish(ctx, message("fragile", i))
			results <- err
		}()
	}

	wait := time.NewTimer(5 * time.Second) // the stop comes about 1 s in
	defer wait.Stop()
	relaytest.Eventually(t, 5*time.Second, "the subscribe and the commands behind it answered", func() bool {
		return len(s.ofType("subscribed")) == 2 && len(s.ofType("unsubscribed")) == 1
	})
	subs := s.ofType("subscribed")
	if strings.Join(subs[0].Topics, ",") != "fragile" || strings.Join(subs[1].Topics, ",") != "calm" {
		t.Fatalf("subscribed frames %+v, want fragile then calm", subs)
	}
	failed := 0
	for _, f := range s.ofType("error") {
		if f.Code == "SUBSCRIPTION_ERROR" && strings.Contains(f.Message, `"fragile"`) {
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d SUBSCRIPTION_ERROR frames for fragile, want 1: %+v", failed, s.all())
	}
	for range 2 {
		select {
		case err := <-results:
			if !errors.Is(err, messages.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a publish queued at the final stop: %v, want ErrUnavailable from the topic", err)
			}
		case <-wait.C:
			t.Fatal("a publish queued at the final stop was not answered within 5 s")
		}
	}
	if counters.Stops.Load() != 1 || counters.Restarts.Load() != 1 {
		t.Fatalf("stops=%d restarts=%d, want 1 and 1", counters.Stops.Load(), counters.Restarts.Load())
	}

	// A fresh actor serves the topic: the connection subscribes again and
	// gets the next message.
	subscribe(t, c, s, `{"type":"subscribe","topics":["fragile"]}`)
	id := publish(t, m, "fragile", 4)
	sameIDs(t, "after the stop", waitIDs(t, s, "fragile", 1, 5*time.Second), []string{id})
}

// TestSupervisorBackoffDoesNotHoldThePublisher: a publish that runs an idle
// topic actor on its own goroutine (mailbox.postHere) and makes it fail is
// answered (503) at once, not after the topic's restart backoff (3 s), which
// the supervisor waits out elsewhere; the actor comes back after it.
func TestSupervisorBackoffDoesNotHoldThePublisher(t *testing.T) {
	faults, counters := &actors.Faults{}, &relaytest.Counters{}
	m := newManager(t, nil, actors.Config{Faults: faults, Observer: counters,
		Policies: mustSet(t, `{"topics":{"slow":{"supervisor_backoff":"3s"}}}`)})
	publish(t, m, "slow", 0)
	// Let the dispatcher's run that started the actor (and may have taken
	// that publish) go idle, so that the next publish runs the mailbox on
	// its own goroutine. (Were it still running, the publish would be
	// answered from the dispatcher and the test would pass on any code.)
	time.Sleep(300 * time.Millisecond)
	faults.PanicTopic("slow", 1)

	backoff := time.NewTimer(2500 * time.Millisecond) // started with the call
	defer backoff.Stop()
	done := make(chan error, 1)
	go func() {
		_, err := m.PublishWithin(context.Background(), message("slow", 1), 200*time.Millisecond)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, messages.ErrUnavailable) {
			t.Fatalf("the failing publish: %v, want ErrUnavailable", err)
		}
	case <-backoff.C:
		t.Fatal("the failing publish was still waiting after 2.5 s: it waited out the 3 s restart backoff")
	}
	if counters.Restarts.Load() != 0 {
		t.Fatal("restarted before its backoff")
	}

	// Queued during the backoff, handled after the restart.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := m.Publish(ctx, message("slow", 2)); err != nil {
		t.Fatalf("publish after the backoff: %v", err)
	}
	if counters.Restarts.Load() != 1 || counters.Stops.Load() != 0 {
		t.Fatalf("restarts=%d stops=%d, want 1 and 0", counters.Restarts.Load(), counters.Stops.Load())
	}
}

// TestRestartDoesNotResurrectAStoppedSubscriber: a subscribe the topic
// actor failed on is sent to the back of its mailbox, behind the
// connection's own unsubscribe (the client went away during the backoff);
// handled last, it left a subscriber nobody reads, counted in the admin
// view and keeping the topic from going idle.
func TestRestartDoesNotResurrectAStoppedSubscriber(t *testing.T) {
	faults, counters := &actors.Faults{}, &relaytest.Counters{}
	m := newManager(t, nil, actors.Config{Faults: faults, Observer: counters,
		Supervisor: actors.SupervisorConfig{MaxRestarts: 10, Window: time.Minute, Backoff: time.Second}})
	publish(t, m, "x", 0) // the topic exists
	faults.PanicTopic("x", 2)
	go func() { _, _ = m.Publish(context.Background(), message("x", 1)) }() // the first failure
	time.Sleep(100 * time.Millisecond)                                      // inside the backoff
	sink := newSink()
	c := connect(t, m, sink)
	f, err := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe(f) // fails the second time, and is sent back behind...
	time.Sleep(50 * time.Millisecond)
	if counters.Restarts.Load() != 0 {
		// Not a pass: the scenario (subscribe and unsubscribe queued
		// during the first backoff) did not happen.
		t.Fatal("the topic restarted before the connection stopped: the machine was too slow for this test's 1 s backoff")
	}
	c.Stop(context.Background()) // ...the unsubscribe this sends
	relaytest.Eventually(t, 5*time.Second, "two restarts", func() bool { return viewOf(t, m, "x").Restarts >= 2 })
	publish(t, m, "x", 2) // handled after everything queued before it
	if n := viewOf(t, m, "x").Subscribers["websocket"]; n != 0 {
		t.Fatalf("topic x holds %d WebSocket subscribers after its only connection stopped", n)
	}
}

// gatedAppendStore holds every Append until release is closed, telling
// entered first.
type gatedAppendStore struct {
	persistence.Store
	entered chan struct{}
	release chan struct{}
}

func (s *gatedAppendStore) Append(ctx context.Context, topic string, batch []messages.Message) (int, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Store.Append(ctx, topic, batch)
}

// TestFinalStopCountsTheWriteInFlight: a write in flight when its topic
// actor stops for good is answered when it finishes (201: stored), and its
// message is counted as stored before that answer, as a running actor
// counts it.
func TestFinalStopCountsTheWriteInFlight(t *testing.T) {
	mem := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = mem.Close() })
	store := &gatedAppendStore{Store: mem, entered: make(chan struct{}, 8), release: make(chan struct{})}
	faults := &actors.Faults{}
	obs := &slowStoredObserver{Counters: &relaytest.Counters{}}
	m := newManager(t, store, actors.Config{Faults: faults, Observer: obs,
		Policies: mustSet(t, `{"topics":{"fragile":{"supervisor_max_restarts":1,"supervisor_window":"1m","supervisor_backoff":"1ms"}}}`)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inFlight := make(chan error, 1)
	go func() {
		_, err := m.Publish(ctx, message("fragile", 0))
		inFlight <- err
	}()
	<-store.entered // the write is out; the actor is free
	// Two failures: a restart, then the stop for good; each failing
	// publish is refused.
	faults.PanicTopic("fragile", 2)
	for i := 1; i <= 2; i++ {
		if _, err := m.Publish(ctx, message("fragile", i)); !errors.Is(err, messages.ErrUnavailable) {
			t.Fatalf("failing publish %d: %v, want ErrUnavailable", i, err)
		}
	}
	relaytest.Eventually(t, 5*time.Second, "the actor to stop for good", func() bool { return obs.Stops.Load() > 0 })
	close(store.release)
	if err := <-inFlight; err != nil {
		t.Fatalf("the publish whose write was in flight: %v, want stored", err)
	}
	if got := obs.stored.Load(); got != 1 {
		t.Fatalf("%d counted as stored when the publish was answered, want 1", got)
	}
}

// TestPanicAfterCountingCountsOnce: a topic actor that panics while it
// hands a finished write's messages to its subscribers handles the write
// again after the restart; its messages are counted as stored once.
func TestPanicAfterCountingCountsOnce(t *testing.T) {
	mem := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = mem.Close() })
	open := make(chan struct{})
	close(open)
	store := &gatedAppendStore{Store: mem, entered: make(chan struct{}, 64), release: open} // asynchronous writes
	faults := &actors.Faults{}
	obs := &slowStoredObserver{Counters: &relaytest.Counters{}}
	m := newManager(t, store, actors.Config{Faults: faults, Observer: obs,
		Supervisor: actors.SupervisorConfig{Backoff: time.Millisecond}})
	s := newSink()
	subscribe(t, connect(t, m, s), s, `{"type":"subscribe","topics":["counted-once"]}`)
	faults.PanicTopicFlush("counted-once", 1)
	for i := range 2 {
		publish(t, m, "counted-once", i)
	}
	waitIDs(t, s, "counted-once", 2, 5*time.Second)
	if got := obs.stored.Load(); got != 2 {
		t.Fatalf("%d counted as stored for 2 messages", got)
	}
	if obs.Restarts.Load() == 0 {
		t.Fatal("the armed fault did not fire: the test proves nothing")
	}
}
