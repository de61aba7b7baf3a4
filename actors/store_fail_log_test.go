package actors_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// failingStore refuses every Append while down is set.
type failingStore struct {
	persistence.Store
	down atomic.Bool
}

func (s *failingStore) Append(ctx context.Context, topic string, batch []messages.Message) (int, error) {
	if s.down.Load() {
		return 0, fmt.Errorf("store down: %w", messages.ErrUnavailable)
	}
	return s.Store.Append(ctx, topic, batch)
}

// TestStoreWriteFailureLoggedOncePerSpell: while the store refuses writes
// every publish is answered 503, and the topic logs the failure once, not
// once a publish; a write that succeeds ends the spell, and the next
// failure is logged again.
func TestStoreWriteFailureLoggedOncePerSpell(t *testing.T) {
	mem := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = mem.Close() })
	store := &failingStore{Store: mem}
	logs := &relaytest.SyncBuffer{}
	count := func(line string) int { return strings.Count(logs.String(), line) }
	log := slog.New(slog.NewTextHandler(logs, nil))
	system := actors.NewActorSystem(log)
	m := actors.NewTopicManager(system, store, actors.Config{}, log)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
		system.Shutdown()
	})
	refused := func(n int) {
		t.Helper()
		for i := range n {
			if _, err := m.Publish(context.Background(), message("spell", i)); !errors.Is(err, messages.ErrUnavailable) {
				t.Fatalf("publish while the store is down: %v, want ErrUnavailable", err)
			}
		}
	}
	store.down.Store(true)
	refused(20)
	if n := count("store write failed"); n != 1 {
		t.Fatalf("%d failure lines for 20 refused publishes, want 1", n)
	}
	store.down.Store(false)
	publish(t, m, "spell", 100)
	if n := count("store writes succeed again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1", n)
	}
	store.down.Store(true)
	refused(5)
	if n := count("store write failed"); n != 2 {
		t.Fatalf("%d failure lines over two spells, want 2", n)
	}
}
