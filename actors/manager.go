package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// TopicManager spawns topic actors on demand and routes publishes and
// subscriptions to them. Lookups go through a concurrent map, so the manager
// is not a mailbox every publish queues behind; it is entered only on a miss.
//
// It supervises topic actors through a protoactor guardian with the
// configured restart budget, and connection actors through a second guardian
// that stops (never restarts) a failed connection.
//
// Concurrency: all methods are safe for concurrent use.
type TopicManager struct {
	cfg    Config
	store  persistence.Store
	log    *slog.Logger
	system *actor.ActorSystem
	topics *actor.RootContext // spawns topic actors under their guardian
	conns  *actor.RootContext // spawns connection actors under theirs

	mu         sync.Mutex // serialises spawns
	entries    sync.Map   // topic name -> *topicEntry
	gen        atomic.Uint64
	closed     atomic.Bool
	stopEvents func() // ends the supervision event subscription
}

// NewTopicManager starts the manager on system. It logs and counts every
// supervision decision (restart, stop) it sees on the system's event stream.
func NewTopicManager(system *actor.ActorSystem, store persistence.Store, cfg Config, logger *slog.Logger) *TopicManager {
	cfg = cfg.WithDefaults()
	m := &TopicManager{cfg: cfg, store: store, log: logger, system: system}
	sv := cfg.Supervisor
	topicStrategy := actor.NewOneForOneStrategy(sv.MaxRestarts, sv.Window, func(reason any) actor.Directive {
		time.Sleep(sv.Backoff) // runs on the failing actor's goroutine, delays only its restart
		return actor.RestartDirective
	})
	// A connection's state is its socket: a half-written frame cannot be
	// recovered by a restart, so a failed connection actor is stopped, its
	// socket closed with 1011, and the client resumes with "since".
	connStrategy := actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })
	m.topics = system.Root.Copy().WithGuardian(topicStrategy) // WithGuardian mutates: copy first
	m.conns = system.Root.Copy().WithGuardian(connStrategy)
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
	if len(ev.Child.Id) >= 5 && ev.Child.Id[:5] == "conn/" {
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

// topicEntry is the manager's handle on one incarnation of a topic actor.
// inflight counts publishes and subscribes sent to the actor but not yet
// processed; it bounds the topic's queue, and -1 marks the entry closed.
type topicEntry struct {
	pid      *actor.PID
	inflight atomic.Int64
}

var errEntryClosed = errors.New("topic actor closed")

// acquire reserves a place in the topic's queue. limit 0 means no bound.
func (e *topicEntry) acquire(limit int64) error {
	for {
		v := e.inflight.Load()
		switch {
		case v < 0:
			return errEntryClosed
		case limit > 0 && v >= limit:
			return messages.ErrOverloaded
		}
		if e.inflight.CompareAndSwap(v, v+1) {
			return nil
		}
	}
}

func (e *topicEntry) release() { e.inflight.Add(-1) }

// tryClose marks an entry with nothing in flight closed.
func (e *topicEntry) tryClose() bool { return e.inflight.CompareAndSwap(0, -1) }

// entry returns the live entry of topic, spawning its actor on a miss.
func (m *TopicManager) entry(topic string) (*topicEntry, error) {
	if e, ok := m.entries.Load(topic); ok {
		return e.(*topicEntry), nil
	}
	if m.closed.Load() {
		return nil, fmt.Errorf("relay shutting down: %w", messages.ErrUnavailable)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries.Load(topic); ok {
		return e.(*topicEntry), nil
	}
	e := &topicEntry{}
	t := newTopicActor(m, topic, e)
	props := actor.PropsFromProducer(func() actor.Actor { return t })
	// Each incarnation gets its own name: a topic actor that is still
	// stopping after idling must not block its successor with ErrNameExists.
	pid, err := m.topics.SpawnNamed(props, "topic/"+topic+"/"+strconv.FormatUint(m.gen.Add(1), 10))
	if err != nil {
		return nil, fmt.Errorf("spawn topic %q: %w", topic, err)
	}
	e.pid = pid
	m.entries.Store(topic, e)
	m.cfg.Observer.TopicsActive(1)
	return e, nil
}

// forget removes e from the map if it is still topic's current entry.
func (m *TopicManager) forget(topic string, e *topicEntry) {
	if m.entries.CompareAndDelete(topic, e) {
		m.cfg.Observer.TopicsActive(-1)
	}
}

// send delivers msg to topic's actor after reserving a queue place (bounded
// by limit, 0 for none). The actor releases the place once it handled msg.
func (m *TopicManager) send(topic string, limit int64, msg any) error {
	for range 100 {
		e, err := m.entry(topic)
		if err != nil {
			return err
		}
		switch err := e.acquire(limit); {
		case err == nil:
			m.system.Root.Send(e.pid, msg)
			return nil
		case errors.Is(err, errEntryClosed):
			m.forget(topic, e) // idle stop raced with us; spawn a fresh one
			continue
		default:
			return fmt.Errorf("publish to %q: %w", topic, err)
		}
	}
	return fmt.Errorf("topic %q keeps closing: %w", topic, messages.ErrUnavailable)
}

// Publish stores msg on its topic and returns it with its ID. It returns
// after the store took the message, or with an error wrapping
// messages.ErrOverloaded (the topic's queue is full; nothing was queued) or
// messages.ErrUnavailable (the store failed or ctx ended first; nothing was
// acknowledged). Publish never waits on subscribers.
func (m *TopicManager) Publish(ctx context.Context, msg messages.Message) (messages.Message, error) {
	p := &publish{msg: msg, received: monoNow(), reply: make(chan publishResult, 1)}
	if err := m.send(msg.Topic, int64(m.cfg.TopicMailboxSize), p); err != nil {
		return messages.Message{}, err
	}
	select {
	case r := <-p.reply:
		return r.msg, r.err
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
// the order given. Each result means what Publish's would.
func (m *TopicManager) PublishAll(ctx context.Context, msgs []messages.Message) []PublishResult {
	results := make([]PublishResult, len(msgs))
	reply := make(chan publishResult, len(msgs))
	pending := 0
	now := monoNow()
	for i, msg := range msgs {
		p := &publish{msg: msg, received: now, reply: reply, idx: i}
		if err := m.send(msg.Topic, int64(m.cfg.TopicMailboxSize), p); err != nil {
			results[i].Err = err
			continue
		}
		pending++
	}
	timedOut := fmt.Errorf("publish: %w: %w", messages.ErrUnavailable, context.DeadlineExceeded)
	for ; pending > 0; pending-- {
		select {
		case r := <-reply:
			results[r.idx] = PublishResult{Msg: r.msg, Err: r.err}
		case <-ctx.Done():
			for i := range results {
				if results[i].Err == nil && results[i].Msg.ID.IsZero() {
					results[i].Err = timedOut
				}
			}
			return results
		}
	}
	return results
}

// Shutdown stops every topic actor and waits for them, up to ctx.
func (m *TopicManager) Shutdown(ctx context.Context) {
	m.closed.Store(true)
	m.stopEvents()
	var futures []*actor.Future
	m.entries.Range(func(key, value any) bool {
		e := value.(*topicEntry)
		futures = append(futures, m.system.Root.StopFuture(e.pid))
		m.forget(key.(string), e)
		return true
	})
	for _, f := range futures {
		if ctx.Err() != nil {
			return
		}
		_, _ = f.Result()
	}
}

// ActiveTopics returns the number of live topic actors.
func (m *TopicManager) ActiveTopics() int {
	n := 0
	m.entries.Range(func(any, any) bool { n++; return true })
	return n
}
