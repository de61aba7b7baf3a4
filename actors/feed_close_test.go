package actors

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/persistence"
)

// gatedFeed is a persistence.Feed whose Subscribe waits for release.
type gatedFeed struct {
	entered chan string
	release chan struct{}
}

func (f *gatedFeed) Subscribe(topic string) error {
	f.entered <- topic
	<-f.release
	return nil
}
func (f *gatedFeed) Unsubscribe(string) error { return nil }
func (f *gatedFeed) Up() bool                 { return true }
func (f *gatedFeed) Close() error             { return nil }

// gatedFeedStore hands out a gatedFeed.
type gatedFeedStore struct {
	*persistence.MemoryStore
	feed *gatedFeed
}

func (s gatedFeedStore) NewFeed(persistence.FeedHandler) (persistence.Feed, error) {
	return s.feed, nil
}

type discardPoster struct{}

func (discardPoster) Send(*actor.PID, any) {}

// TestFeedHubClosesWithAWatchChangeInFlight: an interest dropped while its
// subscribe is still in flight, then the hub closed before the subscribe
// returns, leaves a topic whose want differs from what the feed has. close
// waits for the reconciling goroutine, which must end rather than start
// another for the difference (it used to, without end).
func TestFeedHubClosesWithAWatchChangeInFlight(t *testing.T) {
	feed := &gatedFeed{entered: make(chan string, 1), release: make(chan struct{})}
	store := gatedFeedStore{MemoryStore: persistence.NewMemoryStore(persistence.Limits{}), feed: feed}
	t.Cleanup(func() { _ = store.Close() })
	cfg := Config{}
	h := newFeedHub(store, nil, discardPoster{}, &cfg, slog.New(slog.DiscardHandler))
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	h.watch("t", actor.NewPID("local", "t"), 1)
	select {
	case <-feed.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not reach the feed")
	}
	h.unwatch("t") // want 0 while the subscribe is in flight
	closed := make(chan struct{})
	go func() {
		h.close()
		close(closed)
	}()
	// close has marked the hub closed once it waits; then the subscribe returns.
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		c := h.closed
		h.mu.Unlock()
		if c || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(feed.release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return: the reconciling goroutines did not end")
	}
}
