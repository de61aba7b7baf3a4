package actors_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
)

// TestPublishWithin: answered and stored within the timeout it returns the
// stored message; a store slower than the timeout gives ErrUnavailable with
// context.DeadlineExceeded (here the write's own, at StoreTimeout: the
// publish was already in it), and an ended ctx gives ErrUnavailable with
// its error; a reused timer never fires early for the next publish.
func TestPublishWithin(t *testing.T) {
	store := relaytest.NewFaultyStore(nil)
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{StoreTimeout: 200 * time.Millisecond})
	for i := range 3 {
		got, err := m.PublishWithin(context.Background(), message("within", i), time.Minute)
		if err != nil || got.ID.IsZero() {
			t.Fatalf("publish %d: %v, %v", i, got.ID, err)
		}
	}
	store.Stall(time.Hour)
	_, err := m.PublishWithin(context.Background(), message("within", 9), 10*time.Millisecond)
	if !errors.Is(err, messages.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled store: %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // with the store still stalled, so the reply cannot win the race
	_, err = m.PublishWithin(ctx, message("within-2", 1), time.Minute)
	if !errors.Is(err, messages.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("ended ctx: %v, want ErrUnavailable and Canceled", err)
	}
	store.Stall(0)
	// The timer that fired above is reused: this publish gets its full minute.
	if _, err := m.PublishWithin(context.Background(), message("within-3", 1), time.Minute); err != nil {
		t.Fatalf("after the stall: %v", err)
	}
}

// TestGivingUpMeansNotStored: a publisher that gives up waiting (its
// timeout, or a bulk's ctx) while its publish is still queued gets
// ErrUnavailable and the publish is never written; one whose publish is
// already in a write gets that write's outcome, however long past its own
// timeout, so a refusal always means not stored.
func TestGivingUpMeansNotStored(t *testing.T) {
	store := relaytest.NewFaultyStore(nil)
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{StoreTimeout: 5 * time.Second})
	store.Stall(600 * time.Millisecond)
	first := make(chan error, 1)
	go func() {
		_, err := m.PublishWithin(context.Background(), message("fate", 0), 200*time.Millisecond)
		first <- err
	}()
	relaytest.Eventually(t, 5*time.Second, "the first publish in the (stalled) write", func() bool { return store.InFlight() == 1 })
	_, err := m.PublishWithin(context.Background(), message("fate", 1), 200*time.Millisecond)
	if !errors.Is(err, messages.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued behind a stalled write: %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	for i, r := range m.PublishAll(ctx, []messages.Message{message("fate", 2), message("fate", 3)}) {
		if !errors.Is(r.Err, messages.ErrUnavailable) {
			t.Fatalf("bulk item %d queued behind a stalled write: %v, want ErrUnavailable", i, r.Err)
		}
	}
	if err := <-first; err != nil {
		t.Fatalf("the publish in the write: %v, want its stored answer", err)
	}
	store.Stall(0)
	if _, err := m.PublishWithin(context.Background(), message("fate", 4), time.Minute); err != nil {
		t.Fatal(err)
	}
	p, err := store.Range(context.Background(), "fate", messages.ID{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, msg := range p.Messages {
		got = append(got, string(msg.Payload))
	}
	if len(got) != 2 || got[0] != string(message("fate", 0).Payload) || got[1] != string(message("fate", 4).Payload) {
		t.Fatalf("stored %v; want only the two publishes answered as stored", got)
	}
}
