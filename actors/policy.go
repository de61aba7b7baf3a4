package actors

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/persistence"
	"github.com/pulsar-relay/relay/policy"
)

// Per-topic policies (docs/policies.md). A policy is data: a topic actor
// resolves its effective policy (policy.Set.Resolve over the process-wide
// base) when it is spawned and again when it receives policyChanged; it
// keeps what it derived from it in its own fields, so nothing reads a
// shared value at delivery time. What each field governs, and when a change
// takes effect on a running topic:
//
//   - mailbox_size: the bound the registry checks before queueing a publish
//     (topicEntry.mailbox), from the next publish.
//   - max_batch, hot_retention: the next group-commit write and the next
//     message added to the hot ring (hot_retention and the ring's size are
//     capped by retention and max_messages, as the process-wide ones are).
//   - retention, max_messages: passed to the store with the next Append
//     (persistence.WithLimits); Valkey trims with them on that append.
//     Reads (history, replays) filter by the store's process-wide retention.
//   - connection_queue_size, connection_queue_bytes, slow_consumer: bound
//     this topic's frames in each subscriber connection's queue (see
//     queueLimits), from the next frame pushed.
//   - supervisor_*: read by the topic guardian's strategy at the actor's
//     next failure (topicEntry.supervisor).
//   - anonymous_read: answered by TopicManager.EffectivePolicy; the gateway
//     asks it.
//
// No connection is cut by a change: subscriptions keep their place, and
// frames already queued stay queued.

// policyChanged tells a running topic actor that the policy set changed.
type policyChanged struct {
	set  *policy.Set
	base policy.Policy
}

// queueLimits bound one topic's frames in a subscriber connection's queue:
// at most maxMsgs frames and maxBytes bytes of this topic may wait in one
// connection's outbox; past either, policy applies to this topic's frames
// (PolicyDropOldest drops this topic's oldest queued frame, PolicyDisconnect
// closes the connection with 4008). The connection's whole queue stays
// bounded by the process-wide RELAY_CONNECTION_QUEUE_SIZE/BYTES with the
// process-wide RELAY_SLOW_CONSUMER_POLICY, whatever its topics' policies
// say: a connection subscribed to several topics is cut (or drops its
// oldest frame of any topic) when the sum overflows the process-wide
// bound. A queueLimits value is immutable once a topic actor published it.
type queueLimits struct {
	maxMsgs, maxBytes int
	policy            SlowConsumerPolicy
}

// policies holds the manager's policy set and the process-wide base.
type policies struct {
	base policy.Policy // every field set
	set  atomic.Pointer[policy.Set]
	mu   sync.Mutex // orders SetPolicies against spawns (see SetPolicies)
}

// basePolicyOf is the process-wide policy of a Config with defaults
// applied: what a topic gets for every field no rule sets.
func basePolicyOf(c *Config) policy.Policy {
	retention, maxMessages := c.StoreLimits.Retention, c.StoreLimits.MaxMessages
	if retention <= 0 {
		retention = 1<<63 - 1 // keep forever
	}
	if maxMessages <= 0 {
		maxMessages = 1 << 40
	}
	hot, mailbox, batch := c.HotTierRetention, c.TopicMailboxSize, c.MaxBatch
	qsize, qbytes := c.ConnectionQueueSize, c.ConnectionQueueBytes
	slow := policy.SlowConsumer(c.SlowConsumerPolicy)
	restarts, window, backoff := c.Supervisor.MaxRestarts, c.Supervisor.Window, c.Supervisor.Backoff
	anonymous := false // with auth on, a read needs a credential unless a policy allows it
	return policy.Policy{
		Retention: &retention, MaxMessages: &maxMessages, HotRetention: &hot,
		MailboxSize: &mailbox, MaxBatch: &batch,
		ConnectionQueueSize: &qsize, ConnectionQueueBytes: &qbytes, SlowConsumer: &slow,
		SupervisorMaxRestarts: &restarts, SupervisorWindow: &window, SupervisorBackoff: &backoff,
		AnonymousRead: &anonymous,
	}
}

// BasePolicy is the process-wide policy: the values a field falls back to.
// Every field is set.
func (m *TopicManager) BasePolicy() policy.Policy { return m.pols.base.Merge(policy.Policy{}) }

// Policies is the policy set in force (nil: none).
func (m *TopicManager) Policies() *policy.Set { return m.pols.set.Load() }

// EffectivePolicy is topic's policy under the set in force, every field
// set: what its topic actor runs with (or will, once it handled the latest
// change).
func (m *TopicManager) EffectivePolicy(topic string) policy.Policy {
	return m.pols.set.Load().Resolve(topic, m.pols.base)
}

// SetPolicies installs set (nil: none) and tells every running topic actor,
// which applies it before its next message. It returns the number of topic
// actors told. A topic actor spawned concurrently resolves set itself: the
// set is stored under the lock spawns hold, and the walk below sees every
// actor spawned before it.
func (m *TopicManager) SetPolicies(set *policy.Set) int {
	m.pols.mu.Lock()
	m.reg.mu.Lock()
	m.pols.set.Store(set)
	m.reg.mu.Unlock()
	defer m.pols.mu.Unlock()
	n := 0
	m.reg.each(func(topic string, _ *topicEntry) {
		if m.reg.routeExisting(topic, &policyChanged{set: set, base: m.pols.base}) {
			n++
		}
	})
	m.log.Info("policies applied", "rules", set.Len(), "topics", n)
	return n
}

// applyPolicy makes p (complete) the topic actor's effective policy. It
// runs in the actor (or before it starts).
func (t *topicActor) applyPolicy(p policy.Policy) {
	t.pol = p
	t.cfg.maxBatch = *p.MaxBatch
	t.storeLimits.MaxMessages = *p.MaxMessages
	t.storeLimits.Retention = *p.Retention
	if *p.Retention >= 1<<62 {
		t.storeLimits.Retention = 0
	}
	t.storeCtx = persistence.WithLimits(context.Background(), t.storeLimits)
	hot, ringMax := *p.HotRetention, t.baseRingMax
	if hot > *p.Retention {
		hot = *p.Retention
	}
	ringMax = min(ringMax, *p.MaxMessages)
	t.ring.maxAge, t.ring.maxMsgs = hot, ringMax
	t.qlim = &queueLimits{maxMsgs: *p.ConnectionQueueSize, maxBytes: *p.ConnectionQueueBytes,
		policy: SlowConsumerPolicy(*p.SlowConsumer)}
	t.entry.mailbox.Store(int64(*p.MailboxSize))
	t.entry.supervisor.Store(&SupervisorConfig{MaxRestarts: *p.SupervisorMaxRestarts,
		Window: *p.SupervisorWindow, Backoff: *p.SupervisorBackoff})
}

// topicStrategy supervises topic actors with each topic's own restart
// budget and backoff (topicEntry.supervisor), or def for an actor it
// cannot find. It behaves as protoactor's one-for-one strategy otherwise,
// and publishes the same SupervisorEvents.
type topicStrategy struct {
	reg *registry
	def SupervisorConfig
}

var _ actor.SupervisorStrategy = (*topicStrategy)(nil)

// HandleFailure runs on the failing actor's goroutine, which may be a
// publisher's (mailbox.postHere): it must not wait out the backoff there.
// The failed actor's mailbox stays suspended (EscalateFailure suspended
// it) until the Restart, sent when the backoff has passed from a timer's
// goroutine (RestartChildren only posts the system message). An actor
// stopped meanwhile (shutdown) is not restarted: its PID has left the
// process registry by then, and a Restart that still crosses its Stop
// finds the topic actor ended (topicActor.Receive).
func (s *topicStrategy) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID,
	rs *actor.RestartStatistics, reason any, _ any) {
	cfg := s.configOf(child)
	rs.Fail()
	if rs.NumberOfFailures(cfg.Window) > cfg.MaxRestarts {
		rs.Reset()
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
		sup.StopChildren(child)
		return
	}
	restart := func() {
		if _, alive := system.ProcessRegistry.Get(child); !alive {
			return // stopped during the backoff
		}
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.RestartDirective})
		sup.RestartChildren(child)
	}
	if cfg.Backoff <= 0 {
		restart()
		return
	}
	time.AfterFunc(cfg.Backoff, restart)
}

// configOf finds child's topic entry by its name, "topic/<topic>/<n>"
// (topic names hold no "/").
func (s *topicStrategy) configOf(child *actor.PID) SupervisorConfig {
	rest, ok := strings.CutPrefix(child.Id, "topic/")
	if i := strings.LastIndexByte(rest, '/'); ok && i > 0 {
		if v, ok := s.reg.entries.Load(rest[:i]); ok {
			e := v.(*topicEntry)
			if e.pid != nil && e.pid.Id == child.Id {
				if c := e.supervisor.Load(); c != nil {
					return *c
				}
			}
		}
	}
	return s.def
}
