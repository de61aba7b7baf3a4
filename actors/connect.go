package actors

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
)

// Close codes the actors ask a Sink to close with.
const (
	CloseNormal        = 1000
	CloseGoingAway     = 1001
	ClosePolicy        = 1008
	CloseTooBig        = 1009
	CloseInternalError = 1011
	CloseTryAgainLater = 1013
	CloseSlowConsumer  = 4008
)

// Sink is a connection's socket as its connection actor sees it. The gateway
// implements it for WebSocket, long-poll and SSE.
type Sink interface {
	// Write sends one frame, or buffers it until Flush, and returns when it
	// is written (or buffered) or has failed. The implementation bounds how
	// long a write may take (a peer that does not read is dropped). Called
	// only from the connection actor. A sink may keep frame only until Flush
	// returns: the caller may reuse it afterwards.
	Write(frame []byte) error
	// Flush ends a burst of Writes (one message handled by the connection
	// actor: a drain of its outbox, a subscribe, a replay page). A buffering
	// sink writes what it holds; a long-poll sink may complete its response.
	// Called only from the connection actor, after at least one Write since
	// the last Flush.
	Flush() error
	// Close closes the connection with a close code and reason. Safe to call
	// from any goroutine, more than once; it must not block the caller.
	Close(code int, reason string)
}

// A NoBlockSink is a Sink whose writes can be made not to block for a
// while. A quiet topic actor with few subscribers (see inlineFanOut) runs
// an idle connection actor's drain on its own goroutine instead of waking
// another one (see mailbox.runHere): for a delivery or two, the hand-off to
// another goroutine, often on the other core, costs more than the write;
// a quiet topic with many subscribers runs them in a few shares, one
// goroutine each (spreadFanOut). That is only safe while nothing in the
// run can block, so the run is bracketed by these two, and it takes at
// most hereDrainBytes from the outbox.
type NoBlockSink interface {
	Sink
	// BeginNoBlock starts a stretch in which no Write or Flush blocks, from
	// any goroutine: what the socket does not take at once stays held, in
	// order. It reports false, starting nothing, when the sink cannot
	// promise that now; the run then happens on the dispatcher as usual.
	BeginNoBlock() bool
	// EndNoBlock ends the stretch; it reports whether bytes stayed held,
	// which a Flush outside it (a run on the dispatcher) must then write.
	EndNoBlock() bool
}

// maxPendingCommands bounds the subscribe and unsubscribe commands a
// connection has sent its actor and the actor has not handled: past it,
// Subscribe and Unsubscribe wait (the gateway's reader stops reading the
// socket), so a client cannot grow the actor's mailbox.
const maxPendingCommands = 16

// Connection is the gateway's handle on a connection actor. Its methods
// return without waiting on the socket; the actor writes every reply and
// message frame to the Sink in order per topic.
type Connection struct {
	// ID is the session id sent in "subscribed" frames.
	ID     string
	pid    *actor.PID
	root   *actor.RootContext
	outbox *outbox
	slots  chan struct{} // commands sent and not yet handled
	done   chan struct{} // closed when the actor stopped
}

// SubscriptionQuota is a client's share of the topic actors: how many
// topics it may subscribe at once over all its connections. A connection
// actor calls Take(n) before it subscribes n new topics (false: it
// subscribes none of them) and Give(n) for what it took and no longer
// holds (dropped, refused, the connection ended), always on its own
// goroutine; one quota serves many connections at once.
type SubscriptionQuota interface {
	Take(n int) bool
	Give(n int)
}

// Connect spawns a connection actor writing to sink. transport names the
// connection kind for metrics ("ws", "poll", "sse"); quota, when not nil,
// bounds the topics its client subscribes. It fails with ErrUnavailable
// once shutdown began.
func (m *TopicManager) Connect(sink Sink, transport string, quota SubscriptionQuota) (*Connection, error) {
	if m.reg.closing() {
		return nil, fmt.Errorf("relay shutting down: %w", messages.ErrUnavailable)
	}
	id := "s" + strconv.FormatUint(m.sessions.Add(1), 36) + strconv.FormatInt(time.Now().UnixNano()&0xffffff, 36)
	c := &connActor{
		connDeps: m.connDeps,
		id:       id, sink: sink, transport: transport, quota: quota,
		subs:  make(map[string]*subscription),
		slots: make(chan struct{}, maxPendingCommands),
		done:  make(chan struct{}),
	}
	indexed := m.connIdx.add(c) // for the admin view (policy_admin.go)
	c.flusher = m.flusher
	mb := newMailbox(theFlush)
	c.mb = mb
	props := actor.PropsFromProducer(func() actor.Actor { return c },
		actor.WithDispatcher(m.dispatcher), actor.WithMailbox(func() actor.Mailbox { return mb }))
	pid, err := m.conns.SpawnNamed(props, "conn/"+id)
	if err != nil {
		c.onStop()
		return nil, fmt.Errorf("spawn connection: %w: %w", messages.ErrUnavailable, err)
	}
	obs, log := m.cfg.Observer, m.log
	c.outbox = newConnOutbox(&m.cfg, m.post, pid, mb, func() {
		obs.SlowConsumerDisconnected()
		log.Warn("slow consumer: outgoing queue full, disconnecting", "conn", id)
	})
	if nb, ok := sink.(NoBlockSink); ok {
		c.outbox.wakeHere = func() {
			mb.runHere(nb.BeginNoBlock, func() {
				if nb.EndNoBlock() {
					mb.PostUserMessage(theFlushHeld)
				}
			})
		}
	}
	indexed.Store(c.outbox)
	return &Connection{ID: id, pid: pid, root: m.system.Root, outbox: c.outbox, slots: c.slots, done: c.done}, nil
}

// command sends cmd to the actor, waiting while maxPendingCommands are
// unhandled; it gives up once the actor stopped.
func (c *Connection) command(cmd any) {
	select {
	case c.slots <- struct{}{}:
		c.root.Send(c.pid, cmd)
	case <-c.done:
	}
}

// Subscribe asks the actor to subscribe per a validated subscribe frame. It
// may wait while earlier commands are unhandled.
func (c *Connection) Subscribe(f messages.ClientFrame) { c.command(&subscribeCmd{f}) }

// Unsubscribe asks the actor to drop topics. It may wait while earlier
// commands are unhandled.
func (c *Connection) Unsubscribe(topics []string) { c.command(&unsubscribeCmd{topics}) }

// Send queues a control frame (pong, error) in the connection's outbox,
// behind the live frames queued before it. It counts against the outbox's
// bounds like a message: a client that does not read its pongs is a slow
// consumer. It never blocks.
func (c *Connection) Send(frame []byte) { c.outbox.push(delivery{frame: frame}) }

// Stop stops the actor, unsubscribing it everywhere, and waits until it has
// stopped or ctx ends.
func (c *Connection) Stop(ctx context.Context) {
	// Replay pages stop being read for it now, not once the actor gets to
	// its stop: when hundreds of connections close at once, that can be
	// tens of milliseconds of reading pages for nobody.
	c.outbox.markStopping()
	f := c.root.StopFuture(c.pid)
	done := make(chan struct{})
	go func() { _, _ = f.Result(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
