package persistence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// appendAsync runs AppendAsync (the store's, or Append on a goroutine)
// with a deadline 5 s away and waits for its done, failing the test if done
// is called more than once or not within 10 s.
func appendAsync(t *testing.T, s Store, topic string, batch []messages.Message) (int, error) {
	t.Helper()
	return appendAsyncBy(t, s, topic, batch, time.Now().Add(5*time.Second))
}

// appendAsyncBy is appendAsync with the given deadline.
func appendAsyncBy(t *testing.T, s Store, topic string, batch []messages.Message, deadline time.Time) (int, error) {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	got := make(chan result, 2)
	AppendAsync(s, testCtx(t), topic, batch, deadline, func(n int, err error) { got <- result{n, err} })
	select {
	case r := <-got:
		select {
		case <-got:
			t.Errorf("AppendAsync to %q called done twice", topic)
		case <-time.After(10 * time.Millisecond):
		}
		return r.n, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("AppendAsync to %q: done not called within 10s", topic)
		return 0, nil
	}
}

// testAppendAsync: batches handed to AppendAsync for many topics at once
// (the Valkey store sends the batches of one moment in one round) are
// stored as Append stores them: done once per batch, every message
// stored in order with increasing ids, and an idempotent repeat in a later
// batch answered with the first message's id. A batch whose deadline has
// passed is answered with ErrUnavailable wrapping DeadlineExceeded and
// stores nothing. After Close, done reports ErrUnavailable.
func testAppendAsync(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	n, err := appendAsyncBy(t, s, "async-late", msgs(0, 2), time.Now().Add(-time.Millisecond))
	if n != 0 || !errors.Is(err, messages.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AppendAsync past its deadline = %d, %v; want 0 and ErrUnavailable wrapping DeadlineExceeded", n, err)
	}
	if got := mustRange(t, s, "async-late", messages.ID{}, 10).Messages; len(got) != 0 {
		t.Errorf("a batch past its deadline stored %d messages", len(got))
	}
	const topics, batches, per = 20, 10, 3
	var wg sync.WaitGroup
	var calls atomic.Int64
	stored := make([][]messages.ID, topics)
	for k := range topics {
		wg.Add(1)
		go func() { // one batch in flight per topic, as a topic actor has
			defer wg.Done()
			topic := fmt.Sprintf("async-%d", k)
			for b := range batches {
				batch := msgs(b*per, per)
				if b == batches-1 { // a repeat of the first message's key
					batch[0] = keyed(b*per, "first", "h")
				}
				if b == 0 {
					batch[0] = keyed(0, "first", "h")
				}
				n, err := appendAsync(t, s, topic, batch)
				calls.Add(1)
				if n != per || err != nil {
					t.Errorf("%s batch %d: AppendAsync = %d, %v; want %d, nil", topic, b, n, err, per)
					return
				}
				for i, m := range batch {
					if b == batches-1 && i == 0 {
						if !m.Duplicate || m.ID != stored[k][0] {
							t.Errorf("%s: the repeat got %+v; want a Duplicate of %s", topic, m, stored[k][0])
						}
						continue
					}
					stored[k] = append(stored[k], m.ID)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := calls.Load(); got != topics*batches {
		t.Fatalf("%d batches answered, want %d", got, topics*batches)
	}
	for k := range topics {
		topic := fmt.Sprintf("async-%d", k)
		assertIncreasing(t, stored[k])
		assertIDs(t, topic, mustRange(t, s, topic, messages.ID{}, 1000).Messages, stored[k])
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n, err := appendAsync(t, s, "async-0", msgs(0, 1)); n != 0 || !errors.Is(err, messages.ErrUnavailable) {
		t.Errorf("AppendAsync after Close = %d, %v; want 0, ErrUnavailable", n, err)
	}
}
