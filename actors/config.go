package actors

import (
	"fmt"
	"time"

	"github.com/pulsar-relay/relay/persistence"
	"github.com/pulsar-relay/relay/policy"
)

// Defaults of Config. cmd/relay's settings table writes its defaults from
// these constants, so each default is written once.
const (
	DefaultHotTierRetention      = 600 * time.Second
	DefaultHotTierMaxMessages    = 10_000
	DefaultHotTierBytes          = 256 << 20
	DefaultTopicMailboxSize      = 10_000
	DefaultMaxBatch              = 512
	DefaultStoreTimeout          = 2 * time.Second
	DefaultTopicIdleTimeout      = 60 * time.Second
	DefaultMaxTopics             = 100_000
	DefaultConnectionQueueSize   = 4096
	DefaultConnectionQueueBytes  = 16 << 20
	DefaultSlowConsumerPolicy    = PolicyDisconnect
	DefaultReplayPageBytes       = 1 << 20
	DefaultConnectionReplayBytes = 4 << 20
	DefaultReplayBytes           = 64 << 20
	DefaultSubscribeRate         = 100
	DefaultSubscribeBurst        = 1000
	DefaultSupervisorMaxRestarts = 10
	DefaultSupervisorWindow      = 10 * time.Second
	DefaultSupervisorBackoff     = 100 * time.Millisecond
)

// Config tunes the actor system. The zero value of every field means its
// default (the Default* constant of the same name).
type Config struct {
	// HotTierRetention keeps recent messages in each topic actor's memory
	// ring for cheap replays (RELAY_HOT_TIER_RETENTION).
	HotTierRetention time.Duration
	// HotTierMaxMessages caps the ring per topic, so a busy topic's ring
	// stays bounded in memory whatever the retention.
	HotTierMaxMessages int
	// HotTierBytes bounds what all topics' rings hold together
	// (RELAY_HOT_TIER_BYTES; see hotBudget).
	HotTierBytes int64
	// StoreLimits are the store's retention limits: the hot ring never
	// holds more than the store keeps, so a replay from the ring and one from
	// the store agree on what is retained.
	StoreLimits persistence.Limits
	// SharedStore: other relay instances may append to the same streams
	// (Valkey). Topic actors with local subscribers then follow their
	// stream through the store's Feed (feed.go), and the hot ring serves a
	// replay only while it does; otherwise replays read the store. (The
	// memory store is never shared.)
	SharedStore bool
	// PositionCheckInterval is how often a relay on a shared store compares
	// every watched topic's stream tip with what it delivered, in one
	// batched call (RELAY_POSITION_CHECK_INTERVAL, default
	// DefaultPositionCheckInterval, 5 s): a topic found behind (a lost
	// notice, a wedged pub/sub subscription) catches up within about that.
	PositionCheckInterval time.Duration
	// TopicMailboxSize bounds the publishes queued or in flight per topic
	// (RELAY_TOPIC_MAILBOX_SIZE). A publish over it is refused at once with
	// ErrOverloaded instead of waiting.
	TopicMailboxSize int
	// MaxBatch caps one group-commit write (RELAY_MAX_BATCH).
	MaxBatch int
	// StoreTimeout bounds every store call the actors make
	// (RELAY_STORE_TIMEOUT); a write that does not finish in time answers
	// its publishes with ErrUnavailable.
	StoreTimeout time.Duration
	// TopicIdleTimeout stops a topic actor with no subscribers and no traffic
	// for this long (RELAY_TOPIC_IDLE_TIMEOUT); the next publish or subscribe
	// revives it. A topic actor never published to stops as soon as its last
	// subscriber leaves.
	TopicIdleTimeout time.Duration
	// MaxTopics caps live topic actors in the process (RELAY_MAX_TOPICS).
	// Over it a publish to a new topic fails with ErrUnavailable and a
	// subscribe to one gets a SUBSCRIPTION_ERROR frame.
	MaxTopics int

	// ConnectionQueueSize bounds each connection's outgoing queue of live
	// and control frames in messages (RELAY_CONNECTION_QUEUE_SIZE).
	ConnectionQueueSize int
	// ConnectionQueueBytes bounds it in bytes (RELAY_CONNECTION_QUEUE_BYTES).
	ConnectionQueueBytes int
	// SlowConsumerPolicy applies when a connection's queue is full
	// (RELAY_SLOW_CONSUMER_POLICY).
	SlowConsumerPolicy SlowConsumerPolicy
	// ReplayPageBytes bounds one replay page (its frames' bytes; at most
	// 1,000 messages, at least one message).
	ReplayPageBytes int
	// ConnectionReplayBytes bounds the replay pages one connection has in
	// memory at once (at least one page).
	ConnectionReplayBytes int
	// ReplayBytes bounds the replay pages of all connections in memory at
	// once; a page over it waits.
	ReplayBytes int
	// SubscribeRate and SubscribeBurst limit how many new topic
	// subscriptions one connection may make per second, and at once; over
	// it a subscribe gets a RATE_LIMIT_EXCEEDED frame.
	SubscribeRate  int
	SubscribeBurst int
	// WriteDelay lets a connection collect frames for up to this long
	// before writing them to its socket (RELAY_WRITE_DELAY; 0, the
	// default: write at the end of each drain, adding no latency).
	WriteDelay time.Duration

	// Supervisor is the restart budget of topic actors.
	Supervisor SupervisorConfig

	// Policies are the per-topic policies in force at start (nil: none;
	// every topic runs with the fields above). TopicManager.SetPolicies
	// replaces them on a running relay (policy.go).
	Policies *policy.Set

	// Observer receives counts for metrics (default: none).
	Observer Observer
	// Faults injects failures; tests only, nil in production.
	Faults *Faults
}

// SupervisorConfig is a restart budget: at most MaxRestarts within Window,
// waiting Backoff before each restart.
type SupervisorConfig struct {
	MaxRestarts int           // RELAY_SUPERVISOR_MAX_RESTARTS
	Window      time.Duration // RELAY_SUPERVISOR_WINDOW
	Backoff     time.Duration // RELAY_SUPERVISOR_BACKOFF
}

// SlowConsumerPolicy says what happens when a connection's queue overflows.
type SlowConsumerPolicy string

const (
	// PolicyDisconnect closes the connection with code 4008.
	PolicyDisconnect SlowConsumerPolicy = "disconnect"
	// PolicyDropOldest drops the oldest queued frame, counted.
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

// withDefaults returns c with every zero field set to its Default*.
func (c Config) withDefaults() Config {
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
	defDur(&c.HotTierRetention, DefaultHotTierRetention)
	def(&c.HotTierMaxMessages, DefaultHotTierMaxMessages)
	if c.HotTierBytes <= 0 {
		c.HotTierBytes = DefaultHotTierBytes
	}
	if m := c.StoreLimits.MaxMessages; m > 0 && m < c.HotTierMaxMessages {
		c.HotTierMaxMessages = m
	}
	if r := c.StoreLimits.Retention; r > 0 && r < c.HotTierRetention {
		c.HotTierRetention = r
	}
	def(&c.TopicMailboxSize, DefaultTopicMailboxSize)
	def(&c.MaxBatch, DefaultMaxBatch)
	defDur(&c.StoreTimeout, DefaultStoreTimeout)
	defDur(&c.TopicIdleTimeout, DefaultTopicIdleTimeout)
	def(&c.MaxTopics, DefaultMaxTopics)
	def(&c.ConnectionQueueSize, DefaultConnectionQueueSize)
	def(&c.ConnectionQueueBytes, DefaultConnectionQueueBytes)
	if c.SlowConsumerPolicy == "" {
		c.SlowConsumerPolicy = DefaultSlowConsumerPolicy
	}
	def(&c.ReplayPageBytes, DefaultReplayPageBytes)
	def(&c.ConnectionReplayBytes, DefaultConnectionReplayBytes)
	def(&c.ReplayBytes, DefaultReplayBytes)
	def(&c.SubscribeRate, DefaultSubscribeRate)
	def(&c.SubscribeBurst, DefaultSubscribeBurst)
	def(&c.Supervisor.MaxRestarts, DefaultSupervisorMaxRestarts)
	defDur(&c.Supervisor.Window, DefaultSupervisorWindow)
	defDur(&c.Supervisor.Backoff, DefaultSupervisorBackoff)
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}
