package persistence

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// keyed returns msg(i) carrying an Idempotency-Key and a request hash.
func keyed(i int, key, hash string) messages.Message {
	m := msg(i)
	m.IdempotencyKey, m.RequestHash = key, hash
	return m
}

func assertRepeat(t *testing.T, what string, got, first messages.Message, conflict bool) {
	t.Helper()
	if got.ID != first.ID || !got.Timestamp.Truncate(time.Microsecond).Equal(first.Timestamp.Truncate(time.Microsecond)) {
		t.Errorf("%s: id %s timestamp %s, want the first one's %s %s", what, got.ID, got.Timestamp, first.ID, first.Timestamp)
	}
	if got.Duplicate == conflict || got.Conflict != conflict {
		t.Errorf("%s: Duplicate=%v Conflict=%v, want Conflict=%v", what, got.Duplicate, got.Conflict, conflict)
	}
}

func testIdempotentRepeat(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	first := appendAll(t, s, "idem", []messages.Message{keyed(0, "key-1", "h1")})[0]
	if first.Duplicate || first.Conflict || first.ID.IsZero() {
		t.Fatalf("first message with a key: %+v; want stored, not a repeat", first)
	}
	repeat := keyed(1, "key-1", "h1")
	repeat.Timestamp = first.Timestamp.Add(time.Second) // to see the first one come back
	again := appendAll(t, s, "idem", []messages.Message{repeat})[0]
	assertRepeat(t, "sequential repeat", again, first, false)
	// Another key, and the same key on another topic, are stored.
	other := appendAll(t, s, "idem", []messages.Message{keyed(2, "key-2", "h1")})[0]
	elsewhere := appendAll(t, s, "idem-other", []messages.Message{keyed(3, "key-1", "h1")})[0]
	if other.Duplicate || elsewhere.Duplicate {
		t.Errorf("another key (%v) or the same key on another topic (%v) was taken for a repeat", other.Duplicate, elsewhere.Duplicate)
	}
	assertIDs(t, "stored", mustRange(t, s, "idem", messages.ID{}, 100).Messages, []messages.ID{first.ID, other.ID})
}

func testIdempotentRepeatInBatch(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	batch := appendAll(t, s, "idem-batch", []messages.Message{
		keyed(0, "k", "h"), msg(1), keyed(2, "k", "h"), keyed(3, "k", "other"), msg(4),
	})
	assertRepeat(t, "repeat in the batch", batch[2], batch[0], false)
	assertRepeat(t, "conflict in the batch", batch[3], batch[0], true)
	assertIDs(t, "stored", mustRange(t, s, "idem-batch", messages.ID{}, 100).Messages,
		[]messages.ID{batch[0].ID, batch[1].ID, batch[4].ID})
	assertIncreasing(t, []messages.ID{batch[0].ID, batch[1].ID, batch[4].ID})
}

func testIdempotentConflict(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	first := appendAll(t, s, "idem-conflict", []messages.Message{keyed(0, "k", "h1")})[0]
	c := appendAll(t, s, "idem-conflict", []messages.Message{keyed(1, "k", "h2")})[0]
	assertRepeat(t, "other body, same key", c, first, true)
	assertIDs(t, "stored", mustRange(t, s, "idem-conflict", messages.ID{}, 100).Messages, []messages.ID{first.ID})
}

// After the window, a key is new again. Each attempt either is a repeat
// (which stores nothing) or stores the message and ends the wait.
func testIdempotencyExpires(t *testing.T, open openFunc) {
	const window = 300 * time.Millisecond
	s := open(t, Limits{IdempotencyWindow: window})
	start := time.Now()
	first := appendAll(t, s, "idem-expiry", []messages.Message{keyed(0, "k", "h")})[0]
	var later messages.Message
	eventually(t, 5*time.Second, func() string {
		later = appendAll(t, s, "idem-expiry", []messages.Message{keyed(1, "k", "h")})[0]
		if later.Duplicate {
			return "the key is still remembered"
		}
		return ""
	})
	if d := time.Since(start); d < window {
		t.Errorf("the key was forgotten after %s, before its window of %s", d, window)
	}
	assertIDs(t, "stored", mustRange(t, s, "idem-expiry", messages.ID{}, 100).Messages, []messages.ID{first.ID, later.ID})
}

// 16 concurrent appends with one key store one message; every caller gets
// its id.
func testIdempotentConcurrent(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	const callers = 16
	got := make([]messages.Message, callers)
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := []messages.Message{keyed(i, "same", "h")}
			if n, err := s.Append(testCtx(t), "idem-race", batch); n != 1 || err != nil {
				errs <- fmt.Errorf("caller %d: Append = %d, %v", i, n, err)
				return
			}
			got[i] = batch[0]
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	stored := mustRange(t, s, "idem-race", messages.ID{}, 100).Messages
	if len(stored) != 1 {
		t.Fatalf("%d concurrent appends with one key stored %d messages, want 1", callers, len(stored))
	}
	firsts := 0
	for i, m := range got {
		if m.ID != stored[0].ID {
			t.Errorf("caller %d got id %s, the stored one is %s", i, m.ID, stored[0].ID)
		}
		if !m.Duplicate {
			firsts++
		}
	}
	if firsts != 1 {
		t.Errorf("%d callers were told they stored the message, want 1", firsts)
	}
}
