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
// context.DeadlineExceeded, and an ended ctx gives ErrUnavailable with its
// error; a reused timer never fires early for the next publish.
func TestPublishWithin(t *testing.T) {
	store := relaytest.NewFaultyStore(nil)
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{StoreTimeout: time.Minute})
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
