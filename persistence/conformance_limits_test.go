package persistence

import (
	"context"
	"testing"

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
