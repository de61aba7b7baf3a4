package actors

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
)

// Messages a topic actor receives.
type (
	// publish asks the topic actor to store msg; the result goes to reply
	// (buffered, so an abandoned publisher never blocks the actor).
	publish struct {
		msg      messages.Message
		received int64 // monoNow at arrival, for delivery latency
		reply    chan publishResult
		idx      int // position in a PublishAll batch
		answered bool
	}
	publishResult struct {
		idx int
		msg messages.Message
		err error
	}
	// writeDone carries a finished group-commit write back into the actor.
	writeDone struct {
		batch []*publish
		msgs  []messages.Message
		n     int
		err   error
	}
	// subscribeRequest adds sub; the actor answers its connection with a
	// subscribeReply.
	subscribeRequest struct {
		sub *Subscription
		pos messages.Position
	}
	unsubscribeRequest struct{ sub *Subscription }
	// catchUpDone carries a store read made after a restart.
	catchUpDone struct {
		msgs []messages.Message
		err  error
		full bool
	}
	idleCheck struct{}
)

// topicActor owns one topic: its subscribers, its write queue and its hot
// ring. The same value survives supervisor restarts (the producer returns
// it), so subscribers and the place in the stream are kept; a restart clears
// the ring and re-reads from the store whatever was stored but maybe not
// delivered.
type topicActor struct {
	m     *TopicManager
	name  string
	entry *topicEntry
	log   *slog.Logger
	obs   TopicObserver

	subs          []*Subscription
	pending       []*publish // waiting for the next write
	writing       bool       // a write is in flight
	lastDelivered messages.ID
	ring          hotRing
	catchingUp    bool
	held          []*writeDone // writes finished during a catch-up
	lastActive    time.Time
	stopping      bool
	started       bool
	idleTimer     *time.Timer
}

func newTopicActor(m *TopicManager, name string, e *topicEntry) *topicActor {
	return &topicActor{
		m: m, name: name, entry: e,
		log:  m.log.With("topic", name),
		obs:  m.cfg.Observer.Topic(name),
		ring: newHotRing(m.cfg.HotTierRetention, m.cfg.HotTierMaxMessages),
	}
}

// Receive implements actor.Actor. It never blocks on I/O: store writes and
// reads run on their own goroutine and come back as messages.
func (t *topicActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		t.lastActive = time.Now()
		t.armIdle(ctx)
		if t.started { // a supervisor restart: the same value, a new incarnation
			t.ring.reset()
			t.startCatchUp(ctx)
		}
		t.started = true
		return
	case *actor.Restarting:
		if t.idleTimer != nil {
			t.idleTimer.Stop()
		}
		return
	case *actor.Stopping, *actor.Stopped:
		if _, ok := msg.(*actor.Stopped); ok {
			t.stopped()
		}
		return
	case actor.SystemMessage, actor.AutoReceiveMessage:
		return
	}
	defer t.recoverFrom(ctx)
	t.m.cfg.Faults.maybePanicTopic(t.name)

	switch msg := ctx.Message().(type) {
	case *publish:
		t.lastActive = time.Now()
		t.pending = append(t.pending, msg)
		t.maybeWrite(ctx)
	case *writeDone:
		if t.catchingUp {
			t.held = append(t.held, msg)
			return
		}
		t.finishWrite(ctx, msg)
	case *subscribeRequest:
		t.lastActive = time.Now()
		t.subscribe(ctx, msg)
		t.entry.release() // last: a panic above leaves it counted for the retry
	case *unsubscribeRequest:
		t.entry.release()
		t.subs = slices.DeleteFunc(t.subs, func(s *Subscription) bool { return s == msg.sub })
	case *catchUpDone:
		t.continueCatchUp(ctx, msg)
	case *idleCheck:
		t.checkIdle(ctx)
	}
}

// recoverFrom runs while a panic in Receive unwinds, before the supervisor
// restarts the actor, so that no publisher waits for an answer that will not
// come: a publish not yet queued is refused (503), and a finished write or
// read is sent back to self to be handled after the restart (handling them is
// idempotent: delivery skips ids already delivered, answers happen once).
func (t *topicActor) recoverFrom(ctx actor.Context) {
	r := recover()
	if r == nil {
		return
	}
	switch msg := ctx.Message().(type) {
	case *publish:
		if !msg.answered && !slices.Contains(t.pending, msg) {
			t.answer(msg, publishResult{err: fmt.Errorf("topic %q failed: %w", t.name, messages.ErrUnavailable)})
		}
	case *writeDone, *catchUpDone, *subscribeRequest:
		ctx.Send(ctx.Self(), msg)
	}
	panic(r)
}

// answer replies to a publisher once and frees its queue place.
func (t *topicActor) answer(p *publish, r publishResult) {
	if p.answered {
		return
	}
	p.answered = true
	r.idx = p.idx
	p.reply <- r
	t.entry.release()
}

// maybeWrite starts the next group-commit write if none is in flight.
func (t *topicActor) maybeWrite(ctx actor.Context) {
	if t.writing || t.catchingUp || len(t.pending) == 0 {
		return
	}
	n := min(len(t.pending), t.m.cfg.MaxBatch)
	batch := slices.Clone(t.pending[:n])
	clear(t.pending[:n])
	t.pending = t.pending[n:]
	if len(t.pending) == 0 {
		t.pending = nil
	}
	msgs := make([]messages.Message, n)
	for i, p := range batch {
		msgs[i] = p.msg
	}
	t.writing = true
	store, timeout, root, self := t.m.store, t.m.cfg.StoreTimeout, t.m.system.Root, ctx.Self()
	go func() {
		wctx, cancel := context.WithTimeout(context.Background(), timeout)
		n, err := store.Append(wctx, t.name, msgs)
		cancel()
		root.Send(self, &writeDone{batch: batch, msgs: msgs, n: n, err: err})
	}()
}

// finishWrite acknowledges and delivers a finished write, in id order, then
// starts the next one.
func (t *topicActor) finishWrite(ctx actor.Context, w *writeDone) {
	t.writing = false
	now := time.Now()
	for i := 0; i < w.n; i++ {
		t.deliver(&w.msgs[i], w.batch[i].received, now)
		t.answer(w.batch[i], publishResult{msg: w.msgs[i]})
	}
	if w.n > 0 {
		t.obs.Stored(w.n)
	}
	if w.n < len(w.batch) {
		err := fmt.Errorf("store %q: %w", t.name, w.err)
		t.log.Warn("store write failed", "stored", w.n, "refused", len(w.batch)-w.n, "err", w.err)
		for _, p := range w.batch[w.n:] {
			t.answer(p, publishResult{err: err})
		}
	}
	t.maybeWrite(ctx)
}

// deliver puts a stored message in the ring and every subscriber's outbox.
// The frame is encoded once and shared. Messages at or before lastDelivered
// were delivered already (a catch-up after a restart) and are skipped.
func (t *topicActor) deliver(m *messages.Message, received int64, now time.Time) {
	if !t.lastDelivered.Less(m.ID) {
		return
	}
	t.lastDelivered = m.ID
	frame := m.AppendFrame(make([]byte, 0, 128+len(m.Payload)))
	t.ring.add(m, frame, now)
	for _, s := range t.subs {
		s.outbox.Push(Delivery{Frame: frame, ID: m.ID, Sub: s, Received: received})
	}
}

// subscribe adds a subscriber. Everything delivered from now on goes to its
// outbox; the reply tells the connection what to replay before that: frames
// from the ring when it covers the point, otherwise "read the store". The
// connection drops duplicates by id, so the two join without gap or repeat.
func (t *topicActor) subscribe(ctx actor.Context, req *subscribeRequest) {
	reply := &subscribeReply{sub: req.sub}
	t.ring.evict(time.Now()) // a quiet topic's ring may hold messages past the retention
	switch {
	case req.pos.Live:
		reply.upTo = t.lastDelivered
	case t.ring.covers(req.pos.After) && !t.catchingUp:
		reply.replay = t.ring.since(req.pos.After, time.Now(), req.sub)
		reply.upTo = t.lastDelivered
	default:
		reply.fromStore = true
	}
	if !slices.Contains(t.subs, req.sub) {
		t.subs = append(t.subs, req.sub)
	}
	ctx.Send(req.sub.conn, reply)
}

// startCatchUp re-reads the store after lastDelivered (after a restart) and
// delivers what it finds before any newer write.
func (t *topicActor) startCatchUp(ctx actor.Context) {
	if t.catchingUp || t.lastDelivered.IsZero() {
		return
	}
	t.catchingUp = true
	t.readAfter(ctx, t.lastDelivered)
}

func (t *topicActor) readAfter(ctx actor.Context, after messages.ID) {
	store, timeout, root, self := t.m.store, t.m.cfg.StoreTimeout, t.m.system.Root, ctx.Self()
	const pageSize = 1000
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), timeout)
		page, err := store.Range(rctx, t.name, after, pageSize)
		msgs := page.Messages
		for err == nil && !page.Next.IsZero() && len(msgs) < pageSize { // the scan stopped early
			page, err = store.Range(rctx, t.name, page.Next, pageSize-len(msgs))
			msgs = append(msgs, page.Messages...)
		}
		cancel()
		root.Send(self, &catchUpDone{msgs: msgs, err: err, full: len(msgs) == pageSize})
	}()
}

func (t *topicActor) continueCatchUp(ctx actor.Context, c *catchUpDone) {
	now := time.Now()
	for i := range c.msgs {
		t.deliver(&c.msgs[i], monoNow(), now)
	}
	if c.err == nil && c.full {
		t.readAfter(ctx, t.lastDelivered)
		return
	}
	if c.err != nil {
		t.log.Warn("catch-up read failed; delivery resumes with new messages", "err", c.err)
	}
	t.catchingUp = false
	held := t.held
	t.held = nil
	for _, w := range held {
		t.finishWrite(ctx, w)
	}
	t.maybeWrite(ctx)
}

// armIdle schedules the next idle check.
func (t *topicActor) armIdle(ctx actor.Context) {
	root, self := t.m.system.Root, ctx.Self()
	t.idleTimer = time.AfterFunc(t.m.cfg.TopicIdleTimeout/2, func() { root.Send(self, &idleCheck{}) })
}

// checkIdle stops the actor when it has had no subscribers and no traffic for
// TopicIdleTimeout and nothing is queued for it.
func (t *topicActor) checkIdle(ctx actor.Context) {
	idle := len(t.subs) == 0 && len(t.pending) == 0 && !t.writing && !t.catchingUp &&
		time.Since(t.lastActive) >= t.m.cfg.TopicIdleTimeout
	if idle && t.entry.tryClose() {
		t.log.Debug("topic actor idle, stopping")
		t.stopping = true
		t.m.forget(t.name, t.entry)
		ctx.Stop(ctx.Self())
		return
	}
	t.armIdle(ctx)
}

// stopped runs when the actor stops: after idling, at shutdown, or because
// its restart budget ran out. In the last case its subscribers hear about it
// and the next publish starts a fresh actor.
func (t *topicActor) stopped() {
	if t.idleTimer != nil {
		t.idleTimer.Stop()
	}
	if t.stopping {
		return
	}
	if t.m.closed.Load() { // relay shutdown: connections are closing too
		return
	}
	t.entry.inflight.Store(-1)
	t.m.forget(t.name, t.entry)
	err := fmt.Errorf("topic %q stopped: %w", t.name, messages.ErrUnavailable)
	for _, p := range t.pending {
		t.answer(p, publishResult{err: err})
	}
	t.pending = nil
	for _, s := range t.subs {
		t.m.system.Root.Send(s.conn, &topicFailed{sub: s})
	}
	t.subs = nil
}
