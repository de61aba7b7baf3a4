package actors

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
)

// What topic and connection actors say to each other.
//
// Subscribing. The connection actor sends subscribeRequest to the topic
// actor (through the registry, which may spawn it); the topic actor answers
// subscribeReply. A live reply means the subscription is in the topic's
// subscriber set: every message delivered from then on is pushed to the
// connection's outbox. Otherwise the subscription is replaying: the topic
// actor pushes it nothing, and the connection pulls the replay one page at a
// time with replayRequest, as its socket drains and its replay budget
// allows; the topic actor answers each with a replayPage, read from its hot
// ring or (on a goroutine) from the store. The page that reaches the topic's
// last delivered message carries live: the topic actor added the
// subscription to its set when it sent that page, so replay and live
// delivery join without a gap; the connection drops ids it already wrote,
// so they join without a repeat.
//
// Leaving. unsubscribeRequest removes a subscription, replaying or live. A
// topic actor that stops after repeated failures sends topicFailed to each of
// its subscriptions' connections.
type (
	subscribeRequest struct {
		sub *subscription
		pos messages.Position
	}
	subscribeReply struct {
		sub       *subscription
		topic     *actor.PID // the topic actor, for replayRequests
		live      bool
		truncated bool  // the requested point is older than what is retained
		err       error // the replay could not start; live delivery continues
	}
	replayRequest struct {
		sub      *subscription
		after    messages.ID // exclusive
		maxBytes int         // the page's frames fit in this (at least one frame)
	}
	replayPage struct {
		sub    *subscription
		frames []delivery
		next   messages.ID // the next request's "after"
		live   bool        // the replay is done; live delivery follows
		err    error       // the read failed; live delivery follows
	}
	unsubscribeRequest struct{ sub *subscription }
	topicFailed        struct{ sub *subscription }
)

// subscription is one connection's subscription to one topic. The topic
// actor holds it to push deliveries; its mutable fields belong to the
// connection actor alone.
type subscription struct {
	topic  string
	conn   *actor.PID
	outbox *outbox
	obs    TopicObserver
	// transport of the connection ("ws", "sse", "poll"), for the admin view.
	transport string

	// This subscription's frames in outbox; guarded by the outbox's mu.
	outQueued, outBytes int

	// Owned by the connection actor.
	topicPID    *actor.PID
	lastSent    messages.ID // newest id written; older or equal ids are dropped
	active      bool
	replaying   bool        // pulling its replay; not yet live
	subscribing bool        // made by the subscribe in progress: its frames wait for "subscribed" (held)
	replayAfter messages.ID // the next replayRequest's "after"
	reserved    int         // replay bytes reserved for the request in flight
	queued      bool        // waiting in the connection's replay queue

	// left is set when the connection drops the subscription (drop); a
	// replay page being read for it stops there (readReplayPage, see gone).
	// Without it, the pages of connections closing at once were read and
	// encoded for nobody: up to the process's replay budget, 64 MiB by
	// default. (Last: it fits in the padding after queued.)
	left atomic.Bool
}

// gone reports whether no one will read what is encoded for s: its
// connection dropped it or is stopping. Safe from any goroutine.
func (s *subscription) gone() bool { return s.left.Load() || s.outbox.isStopping() }
