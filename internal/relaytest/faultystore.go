package relaytest

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// FaultyStore wraps a Store for fault-injection tests: it can make Append
// fail or stall. Safe for concurrent use.
type FaultyStore struct {
	persistence.Store
	failing  atomic.Bool
	delay    atomic.Int64 // nanoseconds each Append waits first
	inFlight atomic.Int64 // Appends under way
}

// InFlight returns how many Appends are under way (waiting out a Stall
// included): a test's way to know a write has started.
func (f *FaultyStore) InFlight() int { return int(f.inFlight.Load()) }

// NewFaultyStore wraps s (a fresh memory store when nil).
func NewFaultyStore(s persistence.Store) *FaultyStore {
	if s == nil {
		s = persistence.NewMemoryStore(persistence.Limits{})
	}
	return &FaultyStore{Store: s}
}

// Fail makes every Append fail with ErrUnavailable until Fail(false).
func (f *FaultyStore) Fail(on bool) { f.failing.Store(on) }

// Stall makes every Append wait d first (0 to stop), honouring its context.
func (f *FaultyStore) Stall(d time.Duration) { f.delay.Store(int64(d)) }

// Append implements persistence.Store.
func (f *FaultyStore) Append(ctx context.Context, topic string, batch []messages.Message) (int, error) {
	f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	if d := time.Duration(f.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("faulty store: %w: %w", messages.ErrUnavailable, ctx.Err())
		}
	}
	if f.failing.Load() {
		return 0, fmt.Errorf("faulty store: %w: injected failure", messages.ErrUnavailable)
	}
	return f.Store.Append(ctx, topic, batch)
}
