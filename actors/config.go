package actors

import (
	"fmt"
	"time"

	"github.com/pulsar-relay/relay/persistence"
)

// Config tunes the actor system. The zero value of every field means its
// default, named in the field's comment; WithDefaults fills them in.
type Config struct {
	// HotTierRetention keeps recent messages in each topic actor's memory
	// ring for cheap replays (RELAY_HOT_TIER_RETENTION, default 600s).
	HotTierRetention time.Duration
	// HotTierMaxMessages caps the ring per topic (default 10,000), so a busy
	// topic's ring stays bounded in memory whatever the retention.
	HotTierMaxMessages int
	// StoreLimits are the store's retention limits: the hot ring never
	// holds more than the store keeps, so a replay from the ring and one from
	// the store agree on what is retained.
	StoreLimits persistence.Limits
	// TopicMailboxSize bounds the publishes queued or in flight per topic
	// (RELAY_TOPIC_MAILBOX_SIZE, default 10,000). A publish over it is
	// refused at once with ErrOverloaded instead of waiting.
	TopicMailboxSize int
	// MaxBatch caps one group-commit write (default 512 messages).
	MaxBatch int
	// StoreTimeout bounds every store call (default 2s); a publish whose
	// write does not finish in time answers ErrUnavailable.
	StoreTimeout time.Duration
	// TopicIdleTimeout stops a topic actor with no subscribers and no traffic
	// for this long (default 60s); the next publish or subscribe revives it.
	TopicIdleTimeout time.Duration

	// ConnectionQueueSize bounds each connection's outgoing queue in
	// messages (RELAY_CONNECTION_QUEUE_SIZE, default 4,096).
	ConnectionQueueSize int
	// ConnectionQueueBytes bounds it in bytes (default 16 MiB).
	ConnectionQueueBytes int
	// SlowConsumerPolicy applies when a connection's queue is full
	// (RELAY_SLOW_CONSUMER_POLICY, default PolicyDisconnect).
	SlowConsumerPolicy SlowConsumerPolicy
	// WriteTimeout bounds one socket write (default 10s); a peer that does not
	// take a frame in time is dropped.
	WriteTimeout time.Duration

	// Supervisor is the restart budget of topic actors.
	Supervisor SupervisorConfig

	// Observer receives counts for metrics (default: none).
	Observer Observer
	// Faults injects failures; tests only, nil in production.
	Faults *Faults
}

// SupervisorConfig is a restart budget: at most MaxRestarts within Window,
// waiting Backoff before each restart.
type SupervisorConfig struct {
	MaxRestarts int           // RELAY_SUPERVISOR_MAX_RESTARTS, default 10
	Window      time.Duration // RELAY_SUPERVISOR_WINDOW, default 10s
	Backoff     time.Duration // RELAY_SUPERVISOR_BACKOFF, default 100ms
}

// SlowConsumerPolicy says what happens when a connection's queue overflows.
type SlowConsumerPolicy string

const (
	// PolicyDisconnect closes the connection with code 4008.
	PolicyDisconnect SlowConsumerPolicy = "disconnect"
	// PolicyDropOldest drops the oldest queued message, counted.
	PolicyDropOldest SlowConsumerPolicy = "drop-oldest"
)

// ParseSlowConsumerPolicy accepts "disconnect" or "drop-oldest".
func ParseSlowConsumerPolicy(s string) (SlowConsumerPolicy, error) {
	switch p := SlowConsumerPolicy(s); p {
	case PolicyDisconnect, PolicyDropOldest:
		return p, nil
	}
	return "", fmt.Errorf("slow consumer policy %q: want %q or %q", s, PolicyDisconnect, PolicyDropOldest)
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur(&c.HotTierRetention, 600*time.Second)
	def(&c.HotTierMaxMessages, 10_000)
	if m := c.StoreLimits.MaxMessages; m > 0 && m < c.HotTierMaxMessages {
		c.HotTierMaxMessages = m
	}
	if r := c.StoreLimits.Retention; r > 0 && r < c.HotTierRetention {
		c.HotTierRetention = r
	}
	def(&c.TopicMailboxSize, 10_000)
	def(&c.MaxBatch, 512)
	defDur(&c.StoreTimeout, 2*time.Second)
	defDur(&c.TopicIdleTimeout, 60*time.Second)
	def(&c.ConnectionQueueSize, 4096)
	def(&c.ConnectionQueueBytes, 16<<20)
	if c.SlowConsumerPolicy == "" {
		c.SlowConsumerPolicy = PolicyDisconnect
	}
	defDur(&c.WriteTimeout, 10*time.Second)
	def(&c.Supervisor.MaxRestarts, 10)
	defDur(&c.Supervisor.Window, 10*time.Second)
	defDur(&c.Supervisor.Backoff, 100*time.Millisecond)
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}
