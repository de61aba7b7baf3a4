package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// TopicManager is the gateway's entry to the actor system: it publishes
// (Publish, PublishAll), connects subscribers (Connect) and shuts the actors
// down. Topic actors are found or spawned through its registry, whose
// concurrent map keeps the manager from being a mailbox every publish queues
// behind.
//
// It supervises topic actors through a protoactor guardian with the
// configured restart budget, and connection actors through a second guardian
// that stops (never restarts) a failed connection.
//
// Concurrency: all methods are safe for concurrent use.
type TopicManager struct {
	cfg        Config
	log        *slog.Logger
	post       poster
	system     *actor.ActorSystem
	conns      *actor.RootContext // spawns connection actors under their guardian
	reg        *registry
	replay     *byteBudget // the process's replay pages
	hot        *hotBudget  // the topics' hot rings
	connDeps   *connDeps   // shared by every connection actor
	sessions   atomic.Uint64
	stopEvents func()          // ends the supervision event subscription
	hub        *feedHub        // the live feed of a shared store (feed.go); nil otherwise
	pols       policies        // the policy set and the base (policy.go)
	connIdx    connIndex       // live connections, for the admin view (policy_admin.go)
	flusher    *delayedFlusher // nil unless cfg.WriteDelay > 0
	dispatcher *workerDispatcher
}

// NewTopicManager starts the manager on system. It logs and counts every
// supervision decision (restart, stop) it sees on the system's event stream.
func NewTopicManager(system *actor.ActorSystem, store persistence.Store, cfg Config, logger *slog.Logger) *TopicManager {
	cfg = cfg.withDefaults()
	m := &TopicManager{cfg: cfg, log: logger, post: system.Root, system: system,
		replay: newByteBudget(cfg.ReplayBytes, replayObserver(cfg.Observer)), dispatcher: newWorkerDispatcher(),
		hot: newHotBudget(cfg.HotTierBytes)}
	if o, ok := cfg.Observer.(HotTierObserver); ok {
		o.ObserveHotTier(m.hot.bytes)
	}
	m.pols.base = basePolicyOf(&cfg)
	m.pols.set.Store(cfg.Policies)
	m.reg = &registry{post: system.Root, maxTopics: int64(cfg.MaxTopics), obs: cfg.Observer}
	// Each topic's restart budget and backoff come from its policy.
	topicStrategy := &topicStrategy{reg: m.reg, def: cfg.Supervisor}
	// A connection's state is its socket: a half-written frame cannot be
	// recovered by a restart, so a failed connection actor is stopped, its
	// socket closed with 1011, and the client resumes with "since".
	connStrategy := actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })
	topics := system.Root.Copy().WithGuardian(topicStrategy) // WithGuardian mutates: copy first
	m.conns = system.Root.Copy().WithGuardian(connStrategy)
	if cfg.WriteDelay > 0 {
		m.flusher = &delayedFlusher{post: system.Root, every: cfg.WriteDelay}
	}

	deps := topicDeps{
		store: store, cfg: topicConfigOf(&cfg, persistence.AppendsInline(store)), home: m.reg, post: system.Root,
		obs: cfg.Observer, log: logger, faults: cfg.Faults, spread: m.dispatcher, shares: runtime.GOMAXPROCS(0),
		hot: m.hot,
	}
	if cfg.SharedStore {
		m.hub = newFeedHub(store, m.reg, system.Root, &cfg, logger)
		switch err := m.hub.start(); {
		case errors.Is(err, errLocalFeed):
			m.hub = nil // nothing to hear: topic actors deliver their own writes
		case err != nil:
			logger.Error("live feed unavailable: subscribers hear only this relay's publishes", "err", err)
			m.hub = nil
		}
		deps.feed = m.hub
	}
	m.reg.spawn = func(topic string, e *topicEntry, name string) (*actor.PID, error) {
		t := newTopicActor(deps, topic, e)
		t.applyPolicy(m.EffectivePolicy(topic)) // under reg.mu: see SetPolicies
		mb := newMailbox(nil)
		e.mb = mb // before the entry is published (registry.entry)
		return topics.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return t },
			actor.WithDispatcher(m.dispatcher), actor.WithMailbox(func() actor.Mailbox { return mb })), name)
	}

	m.connDeps = &connDeps{
		topics: m.reg, post: system.Root, budget: m.replay, cfg: connConfigOf(&cfg),
		obs: cfg.Observer, robs: replayObserver(cfg.Observer), log: logger, faults: cfg.Faults,
	}

	es := system.EventStream.Subscribe(func(ev any) {
		if se, ok := ev.(*actor.SupervisorEvent); ok {
			m.onSupervisorEvent(se)
		}
	})
	m.stopEvents = func() { system.EventStream.Unsubscribe(es) }
	return m
}

func (m *TopicManager) onSupervisorEvent(ev *actor.SupervisorEvent) {
	kind := "topic"
	if strings.HasPrefix(ev.Child.Id, "conn/") {
		kind = "connection"
	}
	switch ev.Directive {
	case actor.RestartDirective:
		m.cfg.Observer.ActorRestarted(kind)
		m.log.Warn("actor restarted", "kind", kind, "actor", ev.Child.Id, "err", fmt.Sprint(ev.Reason))
	case actor.StopDirective:
		m.cfg.Observer.ActorStopped(kind)
		m.log.Error("actor stopped after failure", "kind", kind, "actor", ev.Child.Id, "err", fmt.Sprint(ev.Reason))
	}
}

// Publish stores msg on its topic and returns it with its ID. It returns
// after the store took the message, or with an error wrapping
// messages.ErrOverloaded (the topic's queue is full; nothing was queued),
// messages.ErrIdempotencyKeyReused (msg's key was used with another
// request), or messages.ErrUnavailable (the store failed, the process's
// topic cap is reached, or ctx ended first; nothing was acknowledged; with
// ctx's error wrapped too). A repeat of an idempotent publish returns the
// first message (Duplicate set). Publish never waits on subscribers.
//
// When the topic actor is idle, Publish runs its queued work on the
// caller's goroutine (at most 32 messages; see mailbox.postHere), so the
// caller must hold no lock the relay's actors take and must not be an
// actor's run; a gateway handler qualifies.
func (m *TopicManager) Publish(ctx context.Context, msg messages.Message) (messages.Message, error) {
	p := &publish{msg: msg, received: monoNow(), reply: make(chan *publish, 1)}
	if err := m.reg.routeHere(msg.Topic, topicMailbox, p); err != nil {
		return messages.Message{}, fmt.Errorf("publish: %w", err)
	}
	select {
	case <-p.reply:
		return p.result()
	case <-ctx.Done():
		return messages.Message{}, fmt.Errorf("publish to %q: %w: %w", msg.Topic, messages.ErrUnavailable, ctx.Err())
	}
}

// PublishResult is the outcome of one message of PublishAll.
type PublishResult struct {
	Msg messages.Message // with its ID, when Err is nil
	Err error
}

// PublishAll publishes msgs (to any topics) concurrently and returns one
// result per message, in the order given. Messages of one topic are stored in
// the order given. Each result means what Publish's would; a message still
// unanswered when ctx ends gets ErrUnavailable wrapping ctx's error
// (context.Canceled when the client went away, DeadlineExceeded on timeout).
func (m *TopicManager) PublishAll(ctx context.Context, msgs []messages.Message) []PublishResult {
	results := make([]PublishResult, len(msgs))
	answered := make([]bool, len(msgs))
	reply := make(chan *publish, len(msgs))
	pending := 0
	now := monoNow()
	published := make([]*publish, len(msgs)) // nil where route refused
	for i, msg := range msgs {
		p := &publish{msg: msg, received: now, reply: reply, idx: i}
		// route, not routeHere: queued together, a topic's messages are
		// stored as one batch (and count against its mailbox bound together).
		if err := m.reg.route(msg.Topic, topicMailbox, p); err != nil {
			results[i].Err = fmt.Errorf("publish: %w", err)
			answered[i] = true
			continue
		}
		published[i] = p
		pending++
	}
	for ; pending > 0; pending-- {
		select {
		case p := <-reply:
			msg, err := p.result()
			results[p.idx] = PublishResult{Msg: msg, Err: err}
			answered[p.idx] = true
		case <-ctx.Done():
			return m.giveUp(ctx.Err(), published, reply, pending, results, answered)
		}
	}
	return results
}

// giveUp ends PublishAll when its ctx ended with pending messages
// unanswered: those still queued are abandoned (never written) and get
// ErrUnavailable wrapping why; those already in a write wait for its
// answer, up to writeGrace, so that a rejected result means not stored,
// unless ctx was cancelled (the client went away: nobody reads the
// results).
func (m *TopicManager) giveUp(why error, published []*publish, reply chan *publish, pending int, results []PublishResult, answered []bool) []PublishResult {
	err := fmt.Errorf("publish: %w: %w", messages.ErrUnavailable, why)
	inWrite := 0
	for _, p := range published {
		if p == nil || answered[p.idx] {
			continue
		}
		if m.abandon(p) {
			results[p.idx].Err = err
			answered[p.idx] = true
			pending-- // its answer still comes, unread: reply has room for every message
		} else {
			inWrite++
		}
	}
	if inWrite > 0 && !errors.Is(why, context.Canceled) {
		t := getTimer(m.writeGrace())
		defer putTimer(t)
	wait:
		for ; pending > 0; pending-- {
			select {
			case p := <-reply:
				if answered[p.idx] {
					pending++ // an abandoned one's answer: not counted
					continue
				}
				msg, e := p.result()
				results[p.idx] = PublishResult{Msg: msg, Err: e}
				answered[p.idx] = true
			case <-t.C:
				break wait
			}
		}
	}
	unknown := fmt.Errorf("publish: %w: %w (its write's outcome is unknown)", messages.ErrUnavailable, why)
	for i := range results {
		if !answered[i] {
			results[i].Err = unknown
		}
	}
	return results
}

// Shutdown stops every topic actor and waits for them, up to ctx.
func (m *TopicManager) Shutdown(ctx context.Context) {
	m.reg.closed.Store(true)
	m.stopEvents()
	defer m.dispatcher.stop()
	if m.hub != nil {
		m.hub.close()
	}
	var futures []*actor.Future
	m.reg.each(func(topic string, e *topicEntry) {
		futures = append(futures, m.system.Root.StopFuture(e.pid))
		m.reg.forget(topic, e)
	})
	for _, f := range futures {
		if ctx.Err() != nil {
			return
		}
		_, _ = f.Result()
	}
}

// ActiveTopics returns the number of live topic actors.
func (m *TopicManager) ActiveTopics() int { return int(m.reg.live.Load()) }
