package actors

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/persistence"
)

// lockedFeed is a Feed whose Up takes mu, as the Valkey feed's takes its
// own lock, which a Subscribe holds while it waits for a link's reader.
type lockedFeed struct {
	persistence.Feed
	mu *sync.Mutex
}

func (f lockedFeed) Up() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return true
}

// TestOnLinkNeverCallsTheFeed: the feed calls OnLink with its handler lock
// held; a Subscribe may hold the feed's lock while it waits for a reader
// that waits for that handler lock. OnLink called Feed.Up, which waits for
// the feed's lock: the three waited on each other for good (every link's
// reader stopped, so no notice reached any relay). OnLink must return
// while the feed's lock is held; the link gauge is set from checkLoop.
func TestOnLinkNeverCallsTheFeed(t *testing.T) {
	var mu sync.Mutex
	h := newFeedHub(nil, &registry{}, nil, &Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.feed = lockedFeed{mu: &mu}
	mu.Lock() // a Subscribe in progress
	done := make(chan struct{})
	go func() {
		h.OnLink(true, nil)
		h.OnLink(false, nil)
		h.OnLink(true, nil)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("OnLink waited for the feed's lock")
	}
	mu.Unlock()
}
