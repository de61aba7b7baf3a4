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
// implements it for WebSocket (and later long-poll).
type Sink interface {
	// Write sends one frame, or buffers it until Flush, and returns when it
	// is written (or buffered) or has failed. The implementation bounds how
	// long a write may take (a peer that does not read is dropped). Called
	// only from the connection actor. A sink may keep frame only until Flush
	// returns: the caller may reuse it afterwards.
	Write(frame []byte) error
	// Flush ends a burst of Writes (one message handled by the connection
	// actor: a drain of its outbox, a subscribe with its replay, a control
	// frame). A buffering sink writes what it holds; a long-poll sink may
	// complete its response. Called only from the connection actor, after at
	// least one Write since the last Flush.
	Flush() error
	// Close closes the connection with a close code and reason. Safe to call
	// from any goroutine, more than once; it must not block the caller.
	Close(code int, reason string)
}

// Subscription is one connection's subscription to one topic. The topic
// actor holds it to push deliveries; its mutable fields belong to the
// connection actor alone.
type Subscription struct {
	Topic  string
	conn   *actor.PID
	outbox *Outbox
	obs    TopicObserver

	// Owned by the connection actor.
	lastSent messages.ID // newest id written; older or equal ids are dropped
	active   bool
}

// Connection is the gateway's handle on a connection actor. Its methods
// enqueue commands and return at once; the actor writes every reply and
// message frame to the Sink in order.
type Connection struct {
	// ID is the session id sent in "subscribed" frames.
	ID  string
	pid *actor.PID
	m   *TopicManager
}

// Commands a connection actor receives.
type (
	subscribeCmd   struct{ frame messages.ClientFrame }
	unsubscribeCmd struct{ topics []string }
	frameCmd       struct{ frame []byte }
	flushCmd       struct{}
	// overflowCmd: the outbox overflowed under PolicyDisconnect.
	overflowCmd struct{}
	// subscribeReply answers a subscribeRequest: replay these ring frames,
	// or read the store (fromStore), before the live messages in the outbox.
	subscribeReply struct {
		sub       *Subscription
		replay    []Delivery
		fromStore bool
		upTo      messages.ID
	}
	topicFailed struct{ sub *Subscription }
)

var (
	theFlush    = &flushCmd{}
	theOverflow = &overflowCmd{}
)

// Connect spawns a connection actor writing to sink. transport names the
// connection kind for metrics ("ws", "poll").
func (m *TopicManager) Connect(sink Sink, transport string) (*Connection, error) {
	if m.closed.Load() {
		return nil, fmt.Errorf("relay shutting down: %w", messages.ErrUnavailable)
	}
	id := "s" + strconv.FormatUint(m.gen.Add(1), 36) + strconv.FormatInt(time.Now().UnixNano()&0xffffff, 36)
	c := &connActor{m: m, id: id, sink: sink, transport: transport, subs: make(map[string]*Subscription)}
	props := actor.PropsFromProducer(func() actor.Actor { return c })
	pid, err := m.conns.SpawnNamed(props, "conn/"+id)
	if err != nil {
		return nil, fmt.Errorf("spawn connection: %w", err)
	}
	root := m.system.Root
	c.outbox = NewOutbox(m.cfg.ConnectionQueueSize, m.cfg.ConnectionQueueBytes, m.cfg.SlowConsumerPolicy,
		func() { root.Send(pid, theFlush) },
		func() {
			m.cfg.Observer.SlowConsumerDisconnected()
			m.log.Warn("slow consumer: outgoing queue full, disconnecting", "conn", id)
			root.Send(pid, theOverflow)
		})
	return &Connection{ID: id, pid: pid, m: m}, nil
}

// Subscribe asks the actor to subscribe per a validated subscribe frame.
func (c *Connection) Subscribe(f messages.ClientFrame) { c.m.system.Root.Send(c.pid, &subscribeCmd{f}) }

// Unsubscribe asks the actor to drop topics.
func (c *Connection) Unsubscribe(topics []string) {
	c.m.system.Root.Send(c.pid, &unsubscribeCmd{topics})
}

// Send writes a control frame (pong, error) in order with the actor's other
// frames.
func (c *Connection) Send(frame []byte) { c.m.system.Root.Send(c.pid, &frameCmd{frame}) }

// Stop stops the actor, unsubscribing it everywhere, and waits until it has
// stopped or ctx ends.
func (c *Connection) Stop(ctx context.Context) {
	f := c.m.system.Root.StopFuture(c.pid)
	done := make(chan struct{})
	go func() { _, _ = f.Result(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// connActor owns one subscriber connection: its subscriptions, its outbox and
// the writes to its socket.
type connActor struct {
	m         *TopicManager
	id        string
	sink      Sink
	transport string
	outbox    *Outbox

	subs       map[string]*Subscription
	inProgress *subscribeState // a subscribe waiting for its topic actors
	deferred   []any           // commands that arrived meanwhile, in order
	flushDue   bool
	batch      []Delivery
	buf        []byte
	failed     bool
	dirty      bool // a Write since the last Flush
}

// subscribeState tracks a subscribe until every topic actor has replied.
type subscribeState struct {
	frame   messages.ClientFrame
	topics  []string // newly subscribed, in frame order
	failed  []string // topics whose actor could not be reached
	replies map[*Subscription]*subscribeReply
}

const maxTopicsPerConnection = 1000

// Receive implements actor.Actor. Every message that wrote frames ends with
// one Sink.Flush.
func (c *connActor) Receive(ctx actor.Context) {
	c.receive(ctx)
	if c.dirty && !c.failed {
		c.dirty = false
		if err := c.sink.Flush(); err != nil {
			c.failed = true
			c.m.log.Debug("flush failed, closing", "conn", c.id, "err", err)
			ctx.Stop(ctx.Self())
		}
	}
}

func (c *connActor) receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started, *actor.Restarting, *actor.Stopping:
		return
	case *actor.Stopped:
		c.stopped()
		return
	case actor.SystemMessage, actor.AutoReceiveMessage:
		return
	case *subscribeReply:
		c.m.cfg.Faults.maybePanicConnection(c.id)
		c.onSubscribeReply(ctx, msg)
		return
	case *overflowCmd:
		// Close from the actor, after the write that was stuck has returned:
		// the writer lock is free, so the 4008 close frame goes out at once
		// (a peer that reads nothing at all meets WriteTimeout instead).
		c.failed = true
		c.sink.Close(CloseSlowConsumer, "slow consumer")
		return
	case *topicFailed:
		if c.subs[msg.sub.Topic] == msg.sub {
			c.drop(msg.sub)
			c.write(ctx, messages.NewErrorFrame(messages.CodeSubscriptionError,
				fmt.Sprintf("topic %q stopped after repeated failures; subscribe again", msg.sub.Topic)))
		}
		return
	}
	c.m.cfg.Faults.maybePanicConnection(c.id)
	if c.inProgress != nil {
		if _, ok := ctx.Message().(*flushCmd); ok {
			c.flushDue = true
		} else {
			c.deferred = append(c.deferred, ctx.Message())
		}
		return
	}
	c.handle(ctx, ctx.Message())
}

func (c *connActor) handle(ctx actor.Context, msg any) {
	switch msg := msg.(type) {
	case *flushCmd:
		c.drain(ctx)
	case *frameCmd:
		c.write(ctx, msg.frame)
	case *subscribeCmd:
		c.startSubscribe(ctx, msg.frame)
	case *unsubscribeCmd:
		for _, t := range msg.topics {
			if s := c.subs[t]; s != nil {
				c.drop(s)
			}
		}
		c.write(ctx, messages.EncodeFrame(messages.UnsubscribedFrame{Type: messages.TypeUnsubscribed, Topics: msg.topics}))
	}
}

// startSubscribe registers new subscriptions with their topic actors; the
// "subscribed" frame and replays follow once every actor replied. Topics
// already subscribed keep their place and are only acknowledged again.
func (c *connActor) startSubscribe(ctx actor.Context, f messages.ClientFrame) {
	st := &subscribeState{frame: f, replies: make(map[*Subscription]*subscribeReply)}
	newCount := 0
	for _, t := range f.Topics {
		if c.subs[t] == nil {
			newCount++
		}
	}
	if len(c.subs)+newCount > maxTopicsPerConnection {
		c.write(ctx, messages.NewErrorFrame(messages.CodeSubscriptionError,
			fmt.Sprintf("a connection may subscribe to at most %d topics", maxTopicsPerConnection)))
		return
	}
	c.inProgress = st
	for _, t := range f.Topics {
		if c.subs[t] != nil {
			continue
		}
		s := &Subscription{Topic: t, conn: ctx.Self(), outbox: c.outbox, obs: c.m.cfg.Observer.Topic(t), active: true}
		c.subs[t] = s
		st.topics = append(st.topics, t)
		if err := c.m.send(t, 0, &subscribeRequest{sub: s, pos: f.Position(t)}); err != nil {
			st.replies[s] = &subscribeReply{sub: s}
			st.failed = append(st.failed, t) // answered with an error frame below
			delete(c.subs, t)
			s.active = false
			c.m.log.Warn("subscribe failed", "conn", c.id, "topic", t, "err", err)
			continue
		}
		c.m.cfg.Observer.Subscriptions(1)
	}
	c.maybeFinishSubscribe(ctx)
}

func (c *connActor) onSubscribeReply(ctx actor.Context, r *subscribeReply) {
	if c.inProgress == nil {
		return
	}
	c.inProgress.replies[r.sub] = r
	c.maybeFinishSubscribe(ctx)
}

// maybeFinishSubscribe completes the subscribe once all replies are in:
// "subscribed" (with truncated topics), each topic's replay, then the
// commands and live messages that waited.
func (c *connActor) maybeFinishSubscribe(ctx actor.Context) {
	st := c.inProgress
	if len(st.replies) < len(st.topics) {
		return
	}
	c.inProgress = nil
	var truncated []string
	pages := make(map[string][]messages.Message)
	for _, t := range st.topics {
		s := c.subs[t]
		if s == nil {
			continue
		}
		r := st.replies[s]
		if r.fromStore {
			pos := st.frame.Position(t)
			msgs, trunc, err := c.readStore(t, pos.After)
			if err != nil {
				c.write(ctx, messages.NewErrorFrame(messages.CodeSubscriptionError,
					fmt.Sprintf("replay of %q failed: %v; live delivery continues", t, err)))
			}
			if trunc && pos.Explicit {
				truncated = append(truncated, t)
			}
			pages[t] = msgs
		}
	}
	c.write(ctx, messages.EncodeFrame(messages.SubscribedFrame{
		Type: messages.TypeSubscribed, Topics: st.frame.Topics, SessionID: c.id,
		Timestamp: messages.FormatTime(time.Now()), Truncated: truncated,
	}))
	for _, t := range st.failed {
		c.write(ctx, messages.NewErrorFrame(messages.CodeSubscriptionError,
			fmt.Sprintf("subscribe to %q failed: the relay cannot serve it now; subscribe again", t)))
	}
	for _, t := range st.topics {
		s := c.subs[t]
		if s == nil {
			continue
		}
		r := st.replies[s]
		for _, d := range r.replay {
			c.writeDelivery(ctx, d)
		}
		if r.fromStore {
			c.replayStore(ctx, s, pages[t])
		}
	}
	deferred := c.deferred
	c.deferred = nil
	for i, cmd := range deferred {
		c.handle(ctx, cmd)
		if c.inProgress != nil { // another subscribe: wait for it too
			c.deferred = append(deferred[i+1:], c.deferred...)
			return
		}
	}
	if c.flushDue {
		c.flushDue = false
		c.drain(ctx)
	}
}

// readStore reads the first replay page of topic after `after`.
func (c *connActor) readStore(topic string, after messages.ID) ([]messages.Message, bool, error) {
	rctx, cancel := context.WithTimeout(context.Background(), c.m.cfg.StoreTimeout)
	defer cancel()
	page, err := c.m.store.Range(rctx, topic, after, replayPage)
	msgs, trunc := page.Messages, page.Truncated
	// A short page with Next: the store's scan stopped early (a run of
	// expired entries); read on, so a short page still means the end.
	for err == nil && !page.Next.IsZero() && len(msgs) < replayPage {
		page, err = c.m.store.Range(rctx, topic, page.Next, replayPage-len(msgs))
		msgs = append(msgs, page.Messages...)
	}
	return msgs, trunc, err
}

const replayPage = 1000

// replayStore writes a stored replay, page after page, until the store has
// nothing newer than what the live queue will bring. It reads on the
// connection actor: a long replay delays only this connection.
func (c *connActor) replayStore(ctx actor.Context, s *Subscription, page []messages.Message) {
	for {
		for i := range page {
			m := &page[i]
			if !s.lastSent.Less(m.ID) {
				continue
			}
			c.buf = m.AppendFrame(c.buf[:0])
			if !c.write(ctx, c.buf) {
				return
			}
			s.lastSent = m.ID
		}
		if len(page) < replayPage {
			return
		}
		next, _, err := c.readStore(s.Topic, s.lastSent)
		if err != nil {
			c.write(ctx, messages.NewErrorFrame(messages.CodeSubscriptionError,
				fmt.Sprintf("replay of %q failed: %v; live delivery continues", s.Topic, err)))
			return
		}
		page = next
	}
}

// drop ends a subscription: the topic actor forgets it and queued frames
// for it are skipped.
func (c *connActor) drop(s *Subscription) {
	s.active = false
	delete(c.subs, s.Topic)
	c.m.cfg.Observer.Subscriptions(-1)
	if e, ok := c.m.entries.Load(s.Topic); ok {
		e := e.(*topicEntry)
		if e.acquire(0) == nil {
			c.m.system.Root.Send(e.pid, &unsubscribeRequest{sub: s})
		}
	}
}

// drain writes queued deliveries. It yields after a few rounds so commands
// are not starved by a busy topic; a flush it sends itself continues later.
func (c *connActor) drain(ctx actor.Context) {
	for range 8 {
		var dropped int
		c.batch, dropped = c.outbox.Drain(c.batch[:0], 256)
		if dropped > 0 {
			c.m.cfg.Observer.Dropped("slow_consumer", dropped)
		}
		if len(c.batch) == 0 {
			return
		}
		n := 0
		for _, d := range c.batch {
			if c.outbox.Closed() { // disconnecting: let the close frame through next
				break
			}
			if c.writeDelivery(ctx, d) {
				n++
			}
		}
		clear(c.batch)
		c.m.cfg.Observer.Delivered(c.transport, n)
		if c.failed {
			return
		}
	}
	ctx.Send(ctx.Self(), theFlush)
}

// writeDelivery writes d unless its subscription ended or already has it.
func (c *connActor) writeDelivery(ctx actor.Context, d Delivery) bool {
	s := d.Sub
	if !s.active || !s.lastSent.Less(d.ID) {
		return false
	}
	if !c.write(ctx, d.Frame) {
		return false
	}
	s.lastSent = d.ID
	if d.Received != 0 {
		s.obs.DeliveryLatency(monoSince(d.Received))
	}
	return true
}

// write sends one frame; a failed write stops the actor (the peer is gone or
// too slow).
func (c *connActor) write(ctx actor.Context, frame []byte) bool {
	if c.failed {
		return false
	}
	c.dirty = true
	if err := c.sink.Write(frame); err != nil {
		c.failed = true
		c.m.log.Debug("write failed, closing", "conn", c.id, "err", err)
		ctx.Stop(ctx.Self())
		return false
	}
	return true
}

// stopped unsubscribes everywhere and closes the socket (a no-op when the
// gateway closed it already).
func (c *connActor) stopped() {
	c.outbox.Close()
	for _, s := range c.subs {
		c.drop(s)
	}
	c.sink.Close(CloseInternalError, "connection closed by server")
}
