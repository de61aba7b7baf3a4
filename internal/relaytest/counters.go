package relaytest

import (
	"sync/atomic"
	"time"

	"github.com/pulsar-relay/relay/actors"
)

// Counters is an actors.Observer that counts what fault and back-pressure
// tests assert on.
type Counters struct {
	Restarts, Stops, SlowDisconnects, Drops, Deliveries atomic.Int64
	// ReplayBytesNow is the replay bytes reserved now; ReplayBytesMax its
	// high-water mark; ReplayWaits counts pages that waited for the budget.
	ReplayBytesNow, ReplayBytesMax, ReplayWaits atomic.Int64
	TopicsActiveNow                             atomic.Int64
}

var (
	_ actors.Observer       = (*Counters)(nil)
	_ actors.ReplayObserver = (*Counters)(nil)
)

func (c *Counters) ReplayBytes(delta int) {
	n := c.ReplayBytesNow.Add(int64(delta))
	for {
		m := c.ReplayBytesMax.Load()
		if n <= m || c.ReplayBytesMax.CompareAndSwap(m, n) {
			return
		}
	}
}
func (c *Counters) ReplayWaited() { c.ReplayWaits.Add(1) }

func (c *Counters) Topic(string) actors.TopicObserver { return nopTopic{} }
func (c *Counters) TopicsActive(d int)                { c.TopicsActiveNow.Add(int64(d)) }
func (c *Counters) Subscriptions(int)                 {}
func (c *Counters) ActorRestarted(string)             { c.Restarts.Add(1) }
func (c *Counters) ActorStopped(string)               { c.Stops.Add(1) }
func (c *Counters) Delivered(_ string, n int)         { c.Deliveries.Add(int64(n)) }
func (c *Counters) Dropped(_ string, n int)           { c.Drops.Add(int64(n)) }
func (c *Counters) SlowConsumerDisconnected()         { c.SlowDisconnects.Add(1) }

type nopTopic struct{}

func (nopTopic) Stored(int)                    {}
func (nopTopic) DeliveryLatency(time.Duration) {}
