package persistence

import (
	"context"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// testLimitsPerAppend: limits carried by the context of an Append
// (WithLimits, a topic's policy) trim that topic on that append, in place of
// the store's own; another topic keeps the store's.
func testLimitsPerAppend(t *testing.T, open openFunc) {
	const limit = 10
	s := open(t, Limits{MaxMessages: 1000})
	ctx := WithLimits(context.Background(), Limits{MaxMessages: limit})
	for i := 0; i < 30; i++ {
		if _, err := s.Append(ctx, "small", msgs(i*10, 10)); err != nil {
			t.Fatal(err)
		}
		appendAll(t, s, "big", msgs(i*10, 10))
	}
	if got := len(mustRange(t, s, "small", messages.ID{}, 1000).Messages); got < limit || got > limit+trimSlack {
		t.Fatalf("with MaxMessages %d per append the topic holds %d, want %d..%d", limit, got, limit, limit+trimSlack)
	}
	if got := len(mustRange(t, s, "big", messages.ID{}, 1000).Messages); got != 300 {
		t.Fatalf("the other topic holds %d, want all 300 under the store's limit", got)
	}
}

// testLimitsHoldBetweenAppends: a topic's own limits, looser than the
// store's, still hold while no append comes (the memory store's sweeper
// trims quiet topics: with the last append's limits, not the store's).
func testLimitsHoldBetweenAppends(t *testing.T, open openFunc) {
	s := open(t, Limits{MaxMessages: 10, Retention: time.Hour})
	ctx := WithLimits(context.Background(), Limits{MaxMessages: 100, Retention: time.Hour})
	if n, err := s.Append(ctx, "loose", msgs(0, 50)); err != nil || n != 50 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	time.Sleep(200 * time.Millisecond) // the memory store sweeps every 20 ms here
	if p := mustRange(t, s, "loose", messages.ID{}, 1000); len(p.Messages) != 50 || p.Truncated {
		t.Fatalf("under its own MaxMessages 100 the topic holds %d (truncated %v), want 50", len(p.Messages), p.Truncated)
	}
}

// testRetentionToForever: once a topic is kept forever (its retention
// changed to 0), what an append stored under the old retention (an expiry
// on the Valkey stream) no longer removes it.
func testRetentionToForever(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	short := WithLimits(context.Background(), Limits{Retention: 200 * time.Millisecond})
	if n, err := s.Append(short, "kept", msgs(0, 1)); err != nil || n != 1 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	forever := WithLimits(context.Background(), Limits{})
	for i := 1; i <= 8; i++ { // 800 ms: past the old expiry (twice 200 ms)
		if n, err := s.Append(forever, "kept", msgs(i, 1)); err != nil || n != 1 {
			t.Fatalf("Append = %d, %v", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p := mustRange(t, s, "kept", messages.ID{}, 100); len(p.Messages) < 8 {
		t.Fatalf("kept forever, the topic holds %d of the 8 messages stored since", len(p.Messages))
	}
}
