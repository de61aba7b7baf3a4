package actors

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/pulsar-relay/relay/messages"
)

// connConfig is a connection actor's slice of Config.
type connConfig struct {
	replayPageBytes int
	replayBytes     int // per connection
	subscribeRate   rate.Limit
	subscribeBurst  int
}

func connConfigOf(c *Config) connConfig {
	return connConfig{
		replayPageBytes: c.ReplayPageBytes, replayBytes: c.ConnectionReplayBytes,
		subscribeRate: rate.Limit(float64(c.SubscribeRate)), subscribeBurst: c.SubscribeBurst,
	}
}

// connDeps are a connection actor's collaborators, one value shared by
// every connection actor (an idle connection costs one pointer for them).
type connDeps struct {
	topics topicRouter
	post   poster
	budget *byteBudget // the process's replay pages
	cfg    connConfig
	obs    Observer
	robs   ReplayObserver
	log    *slog.Logger
	faults *Faults
}

// Commands a connection actor receives from its Connection, and from itself.
type (
	subscribeCmd   struct{ frame messages.ClientFrame }
	unsubscribeCmd struct{ topics []string }
	// flushCmd: the outbox has frames (sent by the outbox's wake-up).
	flushCmd struct{}
	// flushHeldCmd: a run on a topic actor's goroutine left bytes held in
	// the sink (see NoBlockSink); Flush them.
	flushHeldCmd struct{}
	// overflowCmd: the outbox overflowed under PolicyDisconnect.
	overflowCmd struct{}
	// replayKick: retry replay requests that waited for the process budget.
	replayKick struct{}
)

var (
	theFlush      = &flushCmd{}
	theFlushHeld  = &flushHeldCmd{}
	theOverflow   = &overflowCmd{}
	theReplayKick = &replayKick{}
)

const (
	maxTopicsPerConnection = 1000
	// replayRetryDelay is how long a connection whose replay waits for the
	// process budget waits before it asks again.
	replayRetryDelay = 20 * time.Millisecond
)

// connActor owns one subscriber connection: its subscriptions, its outbox,
// the replays it pulls, and the writes to its socket.
type connActor struct {
	*connDeps
	id        string
	sink      Sink
	transport string
	outbox    *outbox
	quota     SubscriptionQuota // nil: none
	mb        *mailbox          // its own (see drain)
	slots     chan struct{}     // see Connection.slots; released as commands are handled
	done      chan struct{}

	subs       map[string]*subscription
	inProgress *subscribeState // a subscribe waiting for its topic actors
	deferred   []any           // commands that arrived meanwhile, in order (at most maxPendingCommands)
	flushDue   bool
	batch      []delivery
	early      []delivery // live frames of subscriptions whose last replay page is still in the mailbox
	held       []delivery // frames of subscriptions made by the subscribe in progress (at most heldBytes)
	heldBytes  int
	failed     bool
	dirty      bool            // a Write since the last Flush
	flusher    *delayedFlusher // nil: Flush at the end of each message
	flushLater bool            // the flusher will send flushNow
	limiter    *rate.Limiter

	replayQueue    []*subscription // waiting to request their next replay page
	replayInFlight int             // bytes reserved for pages requested and not yet written
	replayRetry    bool            // a replayKick is scheduled
	onStop         func()          // leaves the manager's connection index
}

// subscribeState tracks a subscribe until every topic actor has replied.
type subscribeState struct {
	frame   messages.ClientFrame
	topics  []string // newly subscribed, in frame order
	failed  []string // topics whose actor could not be reached
	replies map[*subscription]*subscribeReply
	waiting map[*subscription]bool // routed, not yet answered
}

// Receive implements actor.Actor. Every message that wrote frames ends with
// one Sink.Flush; with a write delay (Config.WriteDelay) the Flush waits for
// the delayed flusher's flushNow instead, at most the delay.
func (c *connActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *flushNow:
		c.flushLater = false
	case *flushHeldCmd:
		c.dirty = true // a run that must not block left bytes held (NoBlockSink)
	default:
		c.receive(ctx)
		if c.dirty && !c.failed && c.flusher != nil && !isStopping(ctx.Message()) {
			if !c.flushLater {
				c.flushLater = true
				c.flusher.add(ctx.Self())
			}
			return
		}
	}
	if c.dirty && !c.failed {
		c.dirty = false
		if err := c.sink.Flush(); err != nil {
			c.failed = true
			c.log.Debug("flush failed, closing", "conn", c.id, "err", err)
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
		c.faults.maybePanicConnection(c.id)
		c.onSubscribeReply(ctx, msg)
		return
	case *replayPage:
		c.onReplayPage(ctx, msg)
		return
	case *replayKick:
		c.replayRetry = false
		c.pumpReplays(ctx)
		return
	case *overflowCmd:
		// Close from the actor, after the write that was stuck has returned:
		// the writer lock is free, so the 4008 close frame goes out at once
		// (a peer that reads nothing at all meets the write timeout instead).
		c.failed = true
		c.sink.Close(CloseSlowConsumer, "slow consumer")
		return
	case *topicFailed:
		if c.subs[msg.sub.topic] == msg.sub {
			c.drop(msg.sub)
			c.write(ctx, messages.NewErrorFrame(messages.CodeSubscriptionError,
				fmt.Sprintf("topic %q stopped after repeated failures; subscribe again", msg.sub.topic)))
		}
		// A topic that failed before answering this subscribe: dropped
		// above, so finishing skips it.
		c.onSubscribeReply(ctx, &subscribeReply{sub: msg.sub, live: true})
		c.pumpReplays(ctx) // its page in flight, if any, will not come back to pump
		return
	}
	c.faults.maybePanicConnection(c.id)
	if c.inProgress != nil {
		// Commands wait for the subscribe; frames do not, but for those of
		// the topics it subscribes, held until "subscribed" is written (a
		// subscribe can wait seconds for a store probe, and the topics
		// already live must not stall behind it meanwhile).
		if _, ok := ctx.Message().(*flushCmd); ok {
			c.drain(ctx)
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
	case *subscribeCmd:
		<-c.slots
		c.startSubscribe(ctx, msg.frame)
	case *unsubscribeCmd:
		<-c.slots
		for _, t := range msg.topics {
			if s := c.subs[t]; s != nil {
				c.drop(s)
			}
		}
		c.write(ctx, messages.EncodeFrame(messages.UnsubscribedFrame{Type: messages.TypeUnsubscribed, Topics: msg.topics}))
		c.pumpReplays(ctx) // a dropped page in flight will not come back to pump
	}
}

// startSubscribe registers new subscriptions with their topic actors; the
// "subscribed" frame follows once every actor replied, and replays after
// it. Topics already subscribed keep their place and are only acknowledged
// again.
func (c *connActor) startSubscribe(ctx actor.Context, f messages.ClientFrame) {
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
	if c.limiter == nil {
		c.limiter = rate.NewLimiter(c.cfg.subscribeRate, c.cfg.subscribeBurst)
	}
	if newCount > 0 && !c.limiter.AllowN(time.Now(), newCount) {
		c.write(ctx, messages.NewErrorFrame(messages.CodeRateLimitExceeded,
			fmt.Sprintf("subscribe rate limit: at most %g new topics per second per connection; nothing was subscribed", float64(c.cfg.subscribeRate))))
		return
	}
	if c.quota != nil && newCount > 0 && !c.quota.Take(newCount) {
		c.write(ctx, messages.NewErrorFrame(messages.CodeRateLimitExceeded,
			"over the topics one client may subscribe at once, over all its connections (RELAY_RATE_SUBSCRIPTIONS); nothing was subscribed"))
		return
	}
	taken := newCount // given back below for each topic not subscribed after all
	st := &subscribeState{frame: f, replies: make(map[*subscription]*subscribeReply), waiting: make(map[*subscription]bool)}
	c.inProgress = st
	for _, t := range f.Topics {
		if c.subs[t] != nil {
			continue
		}
		s := &subscription{topic: t, conn: ctx.Self(), outbox: c.outbox, obs: c.obs.Topic(t), active: true, transport: c.transport, subscribing: true}
		c.subs[t] = s
		st.topics = append(st.topics, t)
		if err := c.topics.route(t, 0, &subscribeRequest{sub: s, pos: f.Position(t)}); err != nil {
			st.replies[s] = &subscribeReply{sub: s}
			st.failed = append(st.failed, t) // answered with an error frame below
			delete(c.subs, t)
			s.active = false
			c.log.Warn("subscribe failed", "conn", c.id, "topic", t, "err", err)
			continue
		}
		st.waiting[s] = true
		c.obs.Subscriptions(1)
		taken--
	}
	c.giveQuota(taken) // refused by the registry, or named twice in the frame
	c.maybeFinishSubscribe(ctx)
}

// giveQuota gives n subscriptions back to the client's quota.
func (c *connActor) giveQuota(n int) {
	if c.quota != nil && n > 0 {
		c.quota.Give(n)
	}
}

func (c *connActor) onSubscribeReply(ctx actor.Context, r *subscribeReply) {
	if st := c.inProgress; st != nil && st.waiting[r.sub] {
		delete(st.waiting, r.sub)
		st.replies[r.sub] = r
		c.maybeFinishSubscribe(ctx)
	}
}

// maybeFinishSubscribe completes the subscribe once all replies are in:
// "subscribed" (with truncated topics), error frames, then the commands and
// live frames that waited; replays start after it, page by page.
func (c *connActor) maybeFinishSubscribe(ctx actor.Context) {
	st := c.inProgress
	if len(st.waiting) > 0 {
		return
	}
	c.inProgress = nil
	var truncated []string
	for _, t := range st.topics {
		if s := c.subs[t]; s != nil && st.replies[s].truncated {
			truncated = append(truncated, t)
		}
	}
	subscribed := st.frame.Topics
	if len(st.failed) > 0 { // not subscribed: their error frames follow
		subscribed = slices.DeleteFunc(slices.Clone(subscribed), func(t string) bool { return slices.Contains(st.failed, t) })
	}
	c.write(ctx, messages.EncodeFrame(messages.SubscribedFrame{
		Type: messages.TypeSubscribed, Topics: subscribed, SessionID: c.id,
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
		s.topicPID = r.topic
		if r.err != nil {
			// Details stay in the topic actor's log.
			c.write(ctx, messages.NewErrorFrame(messages.CodeSubscriptionError,
				fmt.Sprintf("replay of %q failed; live delivery continues", t)))
		}
		s.subscribing = false
		// Nothing at or before the subscriber's point is written, live or
		// replayed ("since" is exclusive): a topic actor behind the store
		// (its link was down while another relay appended) goes live at a
		// point it has not reached, and its catch-up then offers what the
		// subscriber already has.
		after := st.frame.Position(t).After
		if s.lastSent.Less(after) {
			s.lastSent = after
		}
		if !r.live {
			s.replaying = true
			s.replayAfter = after
			c.enqueueReplay(s)
		}
	}
	c.writeHeld(ctx)
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
	c.pumpReplays(ctx)
}

// drop ends a subscription: the topic actor forgets it, its replay budget
// is returned, and queued frames for it are skipped. The caller pumps the
// replay queue after (pumpReplays): a page in flight for s is not answered
// once s is gone, and its arrival is what would have pumped.
func (c *connActor) drop(s *subscription) {
	s.left.Store(true)
	s.active = false
	s.replaying = false
	s.subscribing = false
	c.releaseReplay(s)
	c.early = slices.DeleteFunc(c.early, func(d delivery) bool { return d.sub == s })
	c.held = slices.DeleteFunc(c.held, func(d delivery) bool { return d.sub == s })
	delete(c.subs, s.topic)
	c.giveQuota(1)
	c.obs.Subscriptions(-1)
	c.topics.routeExisting(s.topic, &unsubscribeRequest{sub: s})
}

// hereDrainBytes bounds what a connection actor run on a topic actor's
// goroutine (mailbox.runHere) takes from its outbox: in that run nothing
// blocks, so what the socket does not take stays held in the sink, and
// past this the rest waits in the outbox (under its bounds and the
// slow-consumer policy) for a run on the dispatcher.
const hereDrainBytes = 64 << 10

// drain writes queued frames. It yields after a few rounds so commands are
// not starved by a busy topic; a flush it sends itself continues later.
func (c *connActor) drain(ctx actor.Context) {
	budget := math.MaxInt
	if c.mb.here {
		budget = hereDrainBytes
	}
	if c.inProgress != nil {
		// What is taken may all be held: take no more than heldMaxBytes
		// allows, and past it leave the rest in the outbox (under its
		// bounds) until the subscribe is done.
		budget = min(budget, heldMaxBytes-c.heldBytes)
		if budget <= 0 {
			c.flushDue = true
			return
		}
	}
	for range 8 {
		var dropped, took int
		c.batch, dropped, took = c.outbox.drain(c.batch[:0], 256, budget)
		budget -= took
		if dropped > 0 {
			c.obs.Dropped("slow_consumer", dropped)
		}
		if len(c.batch) == 0 {
			return
		}
		n := 0
		for _, d := range c.batch {
			if c.outbox.closed() { // disconnecting: let the close frame through next
				break
			}
			switch {
			case d.sub == nil: // a control frame
				c.write(ctx, d.frame)
			case d.sub.subscribing:
				c.held = append(c.held, d)
				c.heldBytes += len(d.frame)
			case d.sub.replaying:
				// Its topic actor made it live and sent the last replay page
				// before this frame: the page is next in the mailbox.
				c.early = append(c.early, d)
			case c.writeDelivery(ctx, d):
				n++
			}
		}
		clear(c.batch)
		c.obs.Delivered(c.transport, n)
		if c.failed {
			return
		}
		if budget <= 0 {
			break
		}
	}
	if c.inProgress != nil && c.heldBytes >= heldMaxBytes {
		c.flushDue = true // the rest once the subscribe is done
		return
	}
	ctx.Send(ctx.Self(), theFlush)
}

// heldMaxBytes bounds the frames a connection holds for the topics of a
// subscribe in progress (drain): past it, the outbox keeps the rest.
const heldMaxBytes = 1 << 20

// writeHeld writes the frames held for the subscribe just finished, after
// its "subscribed" frame, as drain would have: a subscription now replaying
// keeps them for after its replay (early).
func (c *connActor) writeHeld(ctx actor.Context) {
	n := 0
	for _, d := range c.held {
		switch {
		case d.sub.replaying:
			c.early = append(c.early, d)
		case c.writeDelivery(ctx, d):
			n++
		}
	}
	clear(c.held)
	c.held, c.heldBytes = c.held[:0], 0
	if n > 0 {
		c.obs.Delivered(c.transport, n)
	}
}

// writeDelivery writes d unless its subscription ended or already has it.
func (c *connActor) writeDelivery(ctx actor.Context, d delivery) bool {
	s := d.sub
	if !s.active || !s.lastSent.Less(d.id) {
		return false
	}
	if !c.write(ctx, d.frame) {
		return false
	}
	s.lastSent = d.id
	if d.received != 0 {
		s.obs.DeliveryLatency(monoSince(d.received))
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
		c.log.Debug("write failed, closing", "conn", c.id, "err", err)
		ctx.Stop(ctx.Self())
		return false
	}
	return true
}

// stopped unsubscribes everywhere and closes the socket (a no-op when the
// gateway closed it already).
func (c *connActor) stopped() {
	if c.onStop != nil {
		c.onStop()
	}
	c.outbox.close()
	for _, s := range c.subs {
		c.drop(s)
	}
	close(c.done)
	c.sink.Close(CloseInternalError, "connection closed by server")
}
