package actors

import "time"

// Observer receives the actor system's counts (the metrics package implements
// it). Every method must be cheap, non-blocking and safe for concurrent use:
// some run once per delivery.
type Observer interface {
	// Topic returns the per-topic handle, resolved once when a topic actor
	// or subscription starts, so the hot path does no label lookups.
	Topic(topic string) TopicObserver
	// TopicsActive moves the active topic actor gauge by delta.
	TopicsActive(delta int)
	// Subscriptions moves the subscription gauge by delta.
	Subscriptions(delta int)
	// ActorRestarted counts a supervised restart of an actor of kind
	// ("topic" or "connection"); ActorStopped a stop after failures.
	ActorRestarted(kind string)
	ActorStopped(kind string)
	// Delivered counts n messages written to sockets of transport.
	Delivered(transport string, n int)
	// Dropped counts n messages dropped for reason ("slow_consumer").
	Dropped(reason string, n int)
	// SlowConsumerDisconnected counts a connection closed with 4008.
	SlowConsumerDisconnected()
}

// TopicObserver is an Observer's per-topic handle.
type TopicObserver interface {
	// Stored counts n messages stored (acknowledged) on the topic.
	Stored(n int)
	// DeliveryLatency observes the time from a publish's arrival until its
	// frame was written to one subscriber's socket.
	DeliveryLatency(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Topic(string) TopicObserver      { return nopObserver{} }
func (nopObserver) TopicsActive(int)                {}
func (nopObserver) Subscriptions(int)               {}
func (nopObserver) ActorRestarted(string)           {}
func (nopObserver) ActorStopped(string)             {}
func (nopObserver) Delivered(string, int)           {}
func (nopObserver) Dropped(string, int)             {}
func (nopObserver) SlowConsumerDisconnected()       {}
func (nopObserver) Stored(int)                      {}
func (nopObserver) DeliveryLatency(d time.Duration) {}

// ReplayObserver is implemented by an Observer that also counts replay
// memory; the actors use it when their Observer has it.
type ReplayObserver interface {
	// ReplayBytes moves the gauge of replay-page bytes reserved in the
	// process (bounded by Config.ReplayBytes).
	ReplayBytes(delta int)
	// ReplayWaited counts a replay page that waited because the process's
	// replay budget was spent.
	ReplayWaited()
}

// HotTierObserver is implemented by an Observer that reports the hot
// tier's size: the manager hands it, once, a function returning what every
// topic's ring holds (bounded by Config.HotTierBytes), to read at will.
type HotTierObserver interface {
	ObserveHotTier(bytes func() int64)
}

func replayObserver(o Observer) ReplayObserver {
	if r, ok := o.(ReplayObserver); ok {
		return r
	}
	return nopObserver{}
}

func (nopObserver) ReplayBytes(int) {}
func (nopObserver) ReplayWaited()   {}
