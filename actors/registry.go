package actors

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
)

// poster sends a message to an actor without waiting (*actor.RootContext is
// one). Goroutines and timers use it to hand results back to their actor.
type poster interface {
	Send(pid *actor.PID, msg any)
}

// topicRouter is how publishers and connection actors reach topic actors.
type topicRouter interface {
	// route sends msg to topic's actor, spawning it on a miss, after
	// reserving a place in its queue (limit 0: no bound; topicMailbox: the
	// topic's policy's mailbox size); the actor frees
	// the place once it handled msg. Errors wrap messages.ErrOverloaded (the
	// queue is full) or messages.ErrUnavailable (shutting down, or the
	// process's topic cap is reached).
	route(topic string, limit int64, msg any) error
	// routeExisting sends msg only if topic's actor is live, and reports
	// whether it did; it never spawns.
	routeExisting(topic string, msg any) bool
}

// topicHome is what a topic actor tells the registry that spawned it.
type topicHome interface {
	// forget removes e if it is still topic's current entry.
	forget(topic string, e *topicEntry)
	// closing reports whether the relay is shutting down.
	closing() bool
}

// topicEntry is the registry's handle on one incarnation of a topic actor.
// inflight counts messages sent to the actor but not yet handled; it bounds
// the topic's queue, and -1 marks the entry closed.
type topicEntry struct {
	pid      *actor.PID
	mb       *mailbox // the actor's mailbox, for routeHere; nil: post to pid
	inflight atomic.Int64
	// Set by the topic actor from its policy (policy.go): the bound of its
	// publish queue (route with limit topicMailbox) and its restart budget.
	mailbox    atomic.Int64
	supervisor atomic.Pointer[SupervisorConfig]
}

// topicMailbox as route's limit means the topic's own mailbox size.
const topicMailbox = -1

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

// tryClose marks an entry with nothing in flight closed: no message can
// reach the actor after it, so the actor may stop.
func (e *topicEntry) tryClose() bool { return e.inflight.CompareAndSwap(0, -1) }

// registry maps topic names to live topic actors and spawns them on a miss.
// Lookups go through a concurrent map, so the registry is not a mailbox
// every publish queues behind. Safe for concurrent use.
type registry struct {
	spawn     func(topic string, e *topicEntry, name string) (*actor.PID, error)
	post      poster
	maxTopics int64
	obs       Observer

	mu      sync.Mutex // serialises spawns
	entries sync.Map   // topic name -> *topicEntry
	live    atomic.Int64
	gen     atomic.Uint64
	closed  atomic.Bool
}

var (
	_ topicRouter = (*registry)(nil)
	_ topicHome   = (*registry)(nil)
)

// entry returns the live entry of topic, spawning its actor on a miss.
func (r *registry) entry(topic string) (*topicEntry, error) {
	if e, ok := r.entries.Load(topic); ok {
		return e.(*topicEntry), nil
	}
	if r.closed.Load() {
		return nil, fmt.Errorf("relay shutting down: %w", messages.ErrUnavailable)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries.Load(topic); ok {
		return e.(*topicEntry), nil
	}
	if r.live.Load() >= r.maxTopics {
		return nil, fmt.Errorf("topic %q: %w: %w: the relay serves at most %d topics at once",
			topic, messages.ErrUnavailable, messages.ErrTooManyTopics, r.maxTopics)
	}
	e := &topicEntry{}
	// Each incarnation gets its own name: a topic actor that is still
	// stopping after idling must not block its successor with ErrNameExists.
	pid, err := r.spawn(topic, e, "topic/"+topic+"/"+strconv.FormatUint(r.gen.Add(1), 10))
	if err != nil {
		return nil, fmt.Errorf("spawn topic %q: %w: %w", topic, messages.ErrUnavailable, err)
	}
	e.pid = pid
	r.entries.Store(topic, e)
	r.live.Add(1)
	r.obs.TopicsActive(1)
	return e, nil
}

func (r *registry) forget(topic string, e *topicEntry) {
	if r.entries.CompareAndDelete(topic, e) {
		r.live.Add(-1)
		r.obs.TopicsActive(-1)
	}
}

func (r *registry) closing() bool { return r.closed.Load() }

func (r *registry) route(topic string, limit int64, msg any) error {
	return r.send(topic, limit, msg, false)
}

// routeHere is route for publishers: when the topic actor is idle, its
// mailbox runs on the caller's goroutine (mailbox.postHere), at most
// hereLimit messages. Callers hold no lock and are not an actor's run.
func (r *registry) routeHere(topic string, limit int64, msg any) error {
	return r.send(topic, limit, msg, true)
}

// hereLimit bounds the messages a publisher handles on its own goroutine
// (its own and those queued behind it meanwhile) before the rest goes to
// the dispatcher: its answer waits for at most that much of others' work.
const hereLimit = 32

func (r *registry) send(topic string, limit int64, msg any, here bool) error {
	for range 100 {
		e, err := r.entry(topic)
		if err != nil {
			return err
		}
		lim := limit
		if lim == topicMailbox {
			lim = e.mailbox.Load()
		}
		switch err := e.acquire(lim); {
		case err == nil && here && e.mb != nil:
			e.mb.postHere(msg, hereLimit)
			return nil
		case err == nil:
			r.post.Send(e.pid, msg)
			return nil
		case errors.Is(err, errEntryClosed):
			r.forget(topic, e) // an idle stop raced with us; spawn a fresh one
			continue
		default:
			return fmt.Errorf("topic %q: %w", topic, err)
		}
	}
	return fmt.Errorf("topic %q keeps closing: %w", topic, messages.ErrUnavailable)
}

func (r *registry) routeExisting(topic string, msg any) bool {
	v, ok := r.entries.Load(topic)
	if !ok {
		return false
	}
	e := v.(*topicEntry)
	if e.acquire(0) != nil {
		return false
	}
	r.post.Send(e.pid, msg)
	return true
}

// each calls fn for every live entry.
func (r *registry) each(fn func(topic string, e *topicEntry)) {
	r.entries.Range(func(k, v any) bool {
		fn(k.(string), v.(*topicEntry))
		return true
	})
}
