package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
	"github.com/pulsar-relay/relay/policy"
)

// topicConfig is a topic actor's slice of Config.
type topicConfig struct {
	ringRetention time.Duration
	ringMax       int
	ringReplays   bool // the ring may serve replays (the store is not shared)
	maxBatch      int
	inline        bool // the store appends without I/O: write on the actor's goroutine
	storeTimeout  time.Duration
	idleTimeout   time.Duration
}

func topicConfigOf(c *Config, inline bool) topicConfig {
	return topicConfig{
		ringRetention: c.HotTierRetention, ringMax: c.HotTierMaxMessages, ringReplays: !c.SharedStore,
		maxBatch: c.MaxBatch, inline: inline, storeTimeout: c.StoreTimeout, idleTimeout: c.TopicIdleTimeout,
	}
}

// topicDeps are a topic actor's collaborators.
type topicDeps struct {
	store  persistence.Store
	cfg    topicConfig
	home   topicHome // the registry that spawned it
	post   poster    // hands goroutine and timer results back to the actor
	obs    Observer
	log    *slog.Logger
	faults *Faults
	hot    *hotBudget // every topic's ring's bytes (Config.HotTierBytes)
	feed   *feedHub   // nil when the store is not shared (feed.go)
	// spread runs the shares of a wide quiet fan-out (see spreadFanOut)
	// off the actor's goroutine; shares is how many: the number of Ps.
	spread actor.Dispatcher
	shares int
}

// Messages a topic actor sends itself or receives from publishers (what it
// exchanges with connection actors is in protocol.go).
type (
	// publish asks the topic actor to store msg. The actor answers once:
	// it sets msg to the stored message (or err), then sends the publish
	// itself on reply (buffered, so an abandoned publisher never blocks the
	// actor); the publisher reads msg and err only after receiving it.
	publish struct {
		msg      messages.Message
		err      error
		received int64 // monoNow at arrival, for delivery latency
		reply    chan *publish
		idx      int // position in a PublishAll batch
		answered bool
		state    atomic.Int32 // pubQueued, then pubTaken (by the actor) or pubAbandoned (by the publisher)
	}
	// writeDone carries a finished group-commit write back into the actor.
	writeDone struct {
		batch   []*publish
		msgs    []messages.Message
		n       int
		err     error
		counted bool // countStored ran: a retry after a panic counts nothing again
	}
	// catchUpDone carries a store read made after a restart.
	catchUpDone struct {
		msgs []messages.Message
		next messages.ID // continue after this; zero at the end
		err  error
	}
	idleCheck struct{}
)

// topicActor owns one topic: its subscribers, its write queue and its hot
// ring. The same value survives supervisor restarts (the producer returns
// it), so subscribers and the place in the stream are kept; a restart clears
// the ring and re-reads from the store whatever was stored but maybe not
// delivered.
type topicActor struct {
	topicDeps
	name  string
	entry *topicEntry
	tobs  TopicObserver

	subs          []*subscription            // live: every delivery is pushed to them
	spreading     atomic.Int32               // shares of spread fan-outs still running (spreadFanOut)
	replaying     map[*subscription]struct{} // pulling their replay (topic_replay.go)
	pending       []*publish                 // waiting for the next write
	writing       bool                       // a write is in flight
	lastDelivered messages.ID
	lastReceived  int64       // monoNow when the last delivered message arrived (see inlineGap)
	run           deliveryRun // the wake-ups owed by the deliveries not yet flushed
	ring          hotRing
	avgFrame      int // bytes, from the last store replay page; sizes the next
	catchingUp    bool
	held          []*writeDone // writes finished during a catch-up
	lastActive    int64        // monoNow of the last publish or subscribe (see checkIdle)
	published     bool         // ever sent a publish (a never-published topic stops with its last subscriber)
	stopping      bool
	started       bool
	ended         bool // stopped: a late restart of this incarnation starts nothing (see Receive)
	idleTimer     *time.Timer

	// Following a shared store's stream (feed.go); unused when feed is nil.
	fobs          FeedObserver
	watch         watchState
	watchGen      uint64              // bumped when a watch starts or ends
	stash         []*subscribeRequest // waiting for the watch to be on
	epoch         string              // the stream's incarnation being followed
	heard         messages.ID         // newest id known to be in the stream
	repairing     bool                // a catch-up read is in flight, or waits (continueRepair)
	writesFailing bool                // the last write failed, and that was logged
	repairPage    queueRoom           // what the last repair page took
	repairWaits   int                 // continueRepair's waits in a row
	relink        bool                // the link came back while syncing
	suspect       messages.ID         // a tip check found the stream here, ahead
	unwatchArmed  bool
	syncTries     int          // failed tip reads of this watch
	early         earlyLive    // live subscribers answered while syncing: where their delivery starts
	local         []localBatch // own writes whose notices have not come back
	inlineWrite   writeDone    // reused by writeInline
	// From the topic's policy (policy.go).
	pol         policy.Policy
	qlim        *queueLimits
	storeLimits persistence.Limits
	storeCtx    context.Context // carries storeLimits to every Append (set with them in applyPolicy)
	baseRingMax int
	stats       topicStats // for the admin view (policy_admin.go)
}

func newTopicActor(d topicDeps, name string, e *topicEntry) *topicActor {
	d.log = d.log.With("topic", name)
	return &topicActor{
		topicDeps: d, name: name, entry: e,
		tobs:        d.obs.Topic(name),
		fobs:        feedObserver(d.obs),
		replaying:   make(map[*subscription]struct{}),
		ring:        newHotRing(d.cfg.ringRetention, d.cfg.ringMax, d.hot),
		baseRingMax: d.cfg.ringMax, stats: newTopicStats(),
	}
}

// Receive implements actor.Actor. It never blocks on I/O: store writes and
// reads run on their own goroutine and come back as messages.
func (t *topicActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		if t.ended {
			// A Restart the supervisor sent after its backoff that reached
			// the actor after it was stopped (at shutdown): protoactor
			// incarnates it again, unregistered. It stays inert.
			return
		}
		t.lastActive = monoNow()
		t.armIdle(ctx)
		if t.started { // a supervisor restart: the same value, a new incarnation
			t.stats.restarts++
			// Frames the failed incarnation queued but had not woken their
			// connection actors for (a panic between deliver and its flush)
			// leave now, not with the next batch or a catch-up's.
			t.flushDeliveries()
			t.ring.reset()
			if t.feed == nil {
				t.startCatchUp(ctx)
			} else if t.watch == watchOn {
				t.repairing = false
				t.repair(ctx, "")
			}
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
	t.faults.maybePanicTopic(t.name)

	switch msg := ctx.Message().(type) {
	case *publish:
		t.lastActive = msg.received // read on arrival already: no clock read per publish
		t.published = true
		t.pending = append(t.pending, msg)
		t.maybeWrite(ctx)
	case *writeDone:
		if t.catchingUp {
			t.held = append(t.held, msg)
			return
		}
		t.finishWrite(ctx, msg)
	case *catchUpDone:
		t.continueCatchUp(ctx, msg)
	case *subscribeRequest:
		t.lastActive = monoNow()
		if t.feed != nil {
			t.feedSubscribe(ctx, msg)
		} else {
			t.subscribe(ctx, msg)
		}
		t.entry.release() // last: a panic above leaves it counted for the retry
	case *probeDone:
		t.onProbe(ctx, msg)
	case *replayRequest:
		t.onReplayRequest(ctx, msg)
	case *storePage:
		t.onStorePage(ctx, msg)
	case *unsubscribeRequest:
		t.subs = slices.DeleteFunc(t.subs, func(s *subscription) bool { return s == msg.sub })
		delete(t.replaying, msg.sub)
		t.stash = slices.DeleteFunc(t.stash, func(r *subscribeRequest) bool { return r.sub == msg.sub })
		t.entry.release()
		t.maybeUnwatch(ctx)
		t.stopIfUnused(ctx)
	case *idleCheck:
		t.checkIdle(ctx)
	case *watchReady:
		t.onWatchReady(ctx, msg.gen)
	case *syncDone:
		t.onSyncDone(ctx, msg)
	case *syncRetry:
		if msg.gen == t.watchGen && t.watch == watchSyncing {
			t.readTip(ctx)
		}
	case *feedNotice:
		t.onNotice(ctx, &msg.n)
		t.entry.release()
	case *tipCheck:
		t.onTipCheck(ctx, msg)
		t.entry.release()
	case *tipRecheck:
		t.onTipRecheck(ctx, msg)
	case *linkRestored:
		t.onLinkRestored(ctx)
		t.entry.release()
	case *repairDone:
		t.onRepairDone(ctx, msg)
	case *repairResume:
		t.onRepairResume(ctx, msg)
	case *unwatchCheck:
		t.onUnwatchCheck(msg)
	case *policyChanged:
		t.applyPolicy(msg.set.Resolve(t.name, msg.base))
		t.entry.release()
	case *topicInfoRequest:
		t.answerInfo(msg)
		t.entry.release()
	}
}

// recoverFrom runs while a panic in Receive unwinds, before the supervisor
// restarts the actor, so that no publisher waits for an answer that will not
// come: a publish not yet queued is refused (503), and any other message is
// sent back to self to be handled after the restart (handling them is
// idempotent: delivery skips ids already delivered, answers happen once).
func (t *topicActor) recoverFrom(ctx actor.Context) {
	r := recover()
	if r == nil {
		return
	}
	if t.cfg.inline && t.writing { // a panic inside an inline write: its publishes may be stored or not
		for _, p := range t.inlineWrite.batch {
			t.answer(p, nil, fmt.Errorf("topic %q failed: %w", t.name, messages.ErrUnavailable))
		}
		clear(t.inlineWrite.batch)
		t.inlineWrite.batch = t.inlineWrite.batch[:0]
		t.writing = false
	}
	switch msg := ctx.Message().(type) {
	case *publish:
		if !msg.answered && !slices.Contains(t.pending, msg) {
			t.answer(msg, nil, fmt.Errorf("topic %q failed: %w", t.name, messages.ErrUnavailable))
		}
	case *writeDone, *catchUpDone, *subscribeRequest, *probeDone, *replayRequest, *storePage, *unsubscribeRequest,
		*watchReady, *syncDone, *syncRetry, *feedNotice, *tipCheck, *tipRecheck, *linkRestored, *repairDone, *repairResume, *unwatchCheck,
		*policyChanged, *topicInfoRequest:
		ctx.Send(ctx.Self(), msg)
	}
	panic(r)
}

// answer replies to a publisher once, with the stored message m or err,
// and frees its queue place.
func (t *topicActor) answer(p *publish, m *messages.Message, err error) {
	if p.answered {
		return
	}
	p.answered = true
	if err == nil {
		p.msg = *m
	}
	p.err = err
	p.reply <- p
	t.entry.release()
}

// result is what the publisher returns once p came back on its reply
// channel: the stored message, or the zero message and the error.
func (p *publish) result() (messages.Message, error) {
	if p.err != nil {
		return messages.Message{}, p.err
	}
	return p.msg, nil
}

// maybeWrite starts the next group-commit write if none is in flight. With
// an Inline store (memory) the write happens here, on the actor's
// goroutine, and is finished at once: no writer goroutine, no context, no
// message back (about a tenth of a publish's CPU); while it runs, the
// publishes arriving meanwhile queue in the mailbox and form the next batch.
func (t *topicActor) maybeWrite(ctx actor.Context) {
	if t.cfg.inline {
		for !t.writing && !t.catchingUp && len(t.pending) > 0 {
			t.writeInline(ctx)
		}
		return
	}
	if t.writing || t.catchingUp || len(t.pending) == 0 {
		return
	}
	batch, msgs := t.takeBatch(nil, nil) // fresh slices: the store holds them until done
	if len(batch) == 0 {
		return // every pending publish was abandoned (takeBatch looked at them all)
	}
	t.writing = true
	post, self, mb := t.post, ctx.Self(), t.entry.mb
	deadline := time.Now().Add(t.cfg.storeTimeout)
	persistence.AppendAsync(t.store, t.storeCtx, t.name, msgs, deadline, func(n int, err error) {
		w := &writeDone{batch: batch, msgs: msgs, n: n, err: err}
		if mb != nil {
			// Into the mailbox itself (what Send does for a live actor):
			// if the actor stopped for good meanwhile, the mailbox hands
			// it to stopped's orphan handler, which answers the batch,
			// where Send would lose it to the dead letters.
			mb.PostUserMessage(w)
			return
		}
		post.Send(self, w)
	})
}

// writeInline appends the next batch of pending publishes to an Inline
// store on the actor's goroutine and finishes the write. The batch and
// message slices are the actor's own, reused: finishWrite copies what it
// keeps (answers, ring entries, frames).
func (t *topicActor) writeInline(ctx actor.Context) {
	w := &t.inlineWrite
	w.batch, w.msgs = t.takeBatch(w.batch, w.msgs)
	w.counted = false
	if len(w.batch) == 0 {
		return // every pending publish was abandoned
	}
	t.writing = true
	w.n, w.err = t.store.Append(t.storeCtx, t.name, w.msgs)
	t.finishWrite(ctx, w)
	clear(w.batch)
	clear(w.msgs)
}

// takeBatch moves the next batch of pending publishes (at most maxBatch)
// into batch[:0] and their messages into msgs[:0], and returns both. A
// publish whose publisher gave up waiting (pubAbandoned) is answered and
// left out: it was refused (503), so it must never be stored. The batch
// may be empty when every pending publish was abandoned.
func (t *topicActor) takeBatch(batch []*publish, msgs []messages.Message) ([]*publish, []messages.Message) {
	batch = slices.Grow(batch[:0], min(len(t.pending), t.cfg.maxBatch))
	n := 0 // pending publishes looked at
	for ; n < len(t.pending) && len(batch) < t.cfg.maxBatch; n++ {
		p := t.pending[n]
		if !p.state.CompareAndSwap(pubQueued, pubTaken) {
			t.answer(p, nil, fmt.Errorf("publish to %q: %w: the publisher gave up waiting", t.name, messages.ErrUnavailable))
			continue
		}
		batch = append(batch, p)
	}
	clear(t.pending[:n])
	switch {
	case n < len(t.pending):
		t.pending = t.pending[n:]
	case cap(t.pending) <= 64: // the usual case: keep the small queue, no allocation per publish
		t.pending = t.pending[:0]
	default:
		t.pending = nil // let a burst's large queue go
	}
	msgs = slices.Grow(msgs[:0], len(batch))
	for _, p := range batch {
		msgs = append(msgs, p.msg)
	}
	return batch, msgs
}

// finishWrite acknowledges and delivers a finished write, in id order, then
// starts the next one. A message the store reports as a Duplicate of an
// earlier idempotent publish is answered with the first one and not
// delivered again; a Conflict is answered with ErrIdempotencyKeyReused.
func (t *topicActor) finishWrite(ctx actor.Context, w *writeDone) {
	t.writing = false
	now := time.Now()
	if t.feed != nil {
		// A shared stream: other instances append too, so what this write
		// stored is delivered when its notice comes back, in stream order
		// after whatever came before it (feed.go).
		t.noteLocal(w)
	}
	if t.writesFailing && w.n == len(w.batch) { // before the answers, as the count
		t.writesFailing = false
		t.log.Info("store writes succeed again")
	}
	if stored := w.countStored(t.tobs); stored > 0 {
		t.stats.published.add(now, stored)
	}
	for i := 0; i < w.n; i++ {
		m := &w.msgs[i]
		switch {
		case m.Conflict:
			t.answer(w.batch[i], nil, t.conflictErr())
		case m.Duplicate:
			t.answer(w.batch[i], m, nil)
		default:
			if t.feed == nil {
				t.deliver(m, w.batch[i].received, now)
			}
			t.answer(w.batch[i], m, nil)
		}
	}
	t.flushDeliveries()
	if w.n < len(w.batch) {
		err := t.refusedErr(w.err)
		// Once per failing spell: while the store is down every publish
		// fails at once, and a line each would flood the log (each is
		// answered 503 and counted in relay_storage_operations_total).
		if !t.writesFailing {
			t.writesFailing = true
			t.log.Warn("store write failed; publishes to this topic answer 503 until a write succeeds", "stored", w.n, "refused", len(w.batch)-w.n, "err", w.err)
		}
		for _, p := range w.batch[w.n:] {
			t.answer(p, nil, err)
		}
	}
	if !t.cfg.inline { // an inline write is finished inside maybeWrite's loop
		t.maybeWrite(ctx)
	}
}

// countStored counts what w newly stored (not a Duplicate's first, not a
// Conflict) with obs and returns it, once: a write handled again after a
// panic (recoverFrom sends it back) returns 0. Both answering paths call
// it before they answer any publisher, so a metrics scrape after a 201
// includes its message.
func (w *writeDone) countStored(obs TopicObserver) int {
	if w.counted {
		return 0
	}
	w.counted = true
	n := 0
	for i := 0; i < w.n; i++ {
		if m := &w.msgs[i]; !m.Conflict && !m.Duplicate {
			n++
		}
	}
	if n > 0 {
		obs.Stored(n)
	}
	return n
}

// conflictErr answers a publish whose idempotency key was used with
// another request.
func (t *topicActor) conflictErr() error {
	return fmt.Errorf("publish to %q: %w", t.name, messages.ErrIdempotencyKeyReused)
}

// refusedErr answers the publishes of a write the store refused with err.
func (t *topicActor) refusedErr(err error) error {
	if errors.Is(err, messages.ErrUnavailable) {
		return fmt.Errorf("store %q: %w", t.name, err)
	}
	return fmt.Errorf("store %q: %w: %w", t.name, messages.ErrUnavailable, err)
}

// answerWrite answers a finished write's publishers as finishWrite would,
// without delivering anything: for an actor that stopped for good (its
// subscribers are told to subscribe again, and get what was stored from the
// store then). It reads only w and immutable fields: stopped's orphan
// handler calls it on whatever goroutine posted w.
func (t *topicActor) answerWrite(w *writeDone) {
	w.countStored(t.tobs)
	for i := 0; i < w.n; i++ {
		if m := &w.msgs[i]; m.Conflict {
			t.answer(w.batch[i], nil, t.conflictErr())
		} else {
			t.answer(w.batch[i], m, nil) // stored, or a Duplicate's first
		}
	}
	if w.n < len(w.batch) {
		err := t.refusedErr(w.err)
		for _, p := range w.batch[w.n:] {
			t.answer(p, nil, err)
		}
	}
}

// A quiet topic actor with at most inlineFanOut subscribers writes to them
// on its own goroutine (see NoBlockSink): a message or two per second
// to a few connections costs less there than a wake-up of another
// goroutine per connection. A quiet topic with more subscribers hands
// its writes to one share or a few on the dispatcher (spreadFanOut). A busy
// topic's (messages less than inlineGap apart) are left to the
// dispatcher, one connection actor run each, whose frames then queue while
// a run is on its way and leave together in one write(2), where writing
// each at once would cost a write(2) per frame (half the throughput with 8
// subscribers and 32 publishers). bench/NOTES.md has the figures.
const (
	inlineFanOut = 8
	inlineGap    = int64(time.Millisecond)
)

// deliveryRun is what the deliveries of one batch (a write's messages, a
// notice's, a read page's) owe their subscribers' connection actors: the
// outboxes that got their first frame since their last drain, woken once
// by flushDeliveries after the batch, so that a subscriber's frames of one
// batch leave in one write(2). Whether the batch is quiet (see inlineGap)
// is decided by its first message.
type deliveryRun struct {
	active bool
	quiet  bool
	owed   []*outbox
}

// deliver puts a stored message in the ring and every live subscriber's
// outbox. The frame is encoded once and shared. Messages at or before
// lastDelivered were delivered already (a catch-up after a restart) and are
// skipped. The wake-ups it owes wait for flushDeliveries, which every
// caller runs after its batch: a quiet batch's few subscribers this
// goroutine writes to itself (see inlineFanOut), a quiet batch's many it
// spreads, and a busy one's it leaves to the dispatcher.
func (t *topicActor) deliver(m *messages.Message, received int64, now time.Time) {
	if !t.lastDelivered.Less(m.ID) {
		return
	}
	t.lastDelivered = m.ID
	var frame []byte // with nobody listening, nothing is encoded
	if len(t.subs) > 0 {
		frame = m.Frame()
	}
	t.ring.add(m, now)
	if !t.run.active {
		t.run.active = true
		t.run.quiet = received-t.lastReceived >= inlineGap
		if cap(t.run.owed) < len(t.subs) { // a spread run's went with its shares
			t.run.owed = make([]*outbox, 0, len(t.subs))
		}
	}
	t.lastReceived = received
	d := delivery{frame: frame, id: m.ID, received: received, lim: t.qlim}
	for _, s := range t.subs {
		d.sub = s
		if _, wake := s.outbox.queue(d); wake {
			t.run.owed = append(t.run.owed, s.outbox)
		}
	}
	t.stats.delivered.add(now, len(t.subs))
}

// flushDeliveries wakes the connection actors the deliveries since the
// last flush owe a wake-up (see deliveryRun).
func (t *topicActor) flushDeliveries() {
	r := &t.run
	if !r.active {
		return
	}
	t.faults.maybePanicFlush(t.name)
	owed := r.owed
	switch {
	case r.quiet && len(t.subs) > inlineFanOut:
		t.spreadFanOut(owed)
		owed = nil // the shares hold it
	case r.quiet:
		for _, o := range owed {
			o.runWake()
		}
	default:
		for _, o := range owed {
			o.wake()
		}
	}
	clear(owed)
	*r = deliveryRun{owed: owed[:0]}
}

// spreadFanOut wakes the connection actors owed a wake-up by a wide quiet
// fan-out in runs on the dispatcher (shares), each running its share's
// connection actors one after another, each inside a no-block stretch of
// its socket (outbox.runWake): one goroutine hand-off per share instead of
// one per subscriber, and no scheduler work between a share's writes. A
// stretch's writes never block, so a slow subscriber holds up neither its
// share nor this actor (what its socket does not take is flushed by its
// own connection actor). Fan-out to 1,000 subscribers at 100 msgs/s:
// about 6% less CPU per delivery than a run per subscriber, and a lower
// p50 (bench/NOTES.md).
//
// The fan-out is one share while no earlier share of this topic is still
// running, and t.shares (one per P) while one is: one core's writes cost
// less than two cores' (a share touches each connection's outbox and
// socket after this actor queued into them on its own core), and a topic
// whose fan-outs overlap needs the other cores to keep up. Alternating
// runs, fan-out to 1,000 at 100 msgs/s: about 5% less CPU per delivery
// than always t.shares, with the same highest clean rate (450 msgs/s).
// Frame order does not depend on it: this actor queued every frame before
// any share runs.
func (t *topicActor) spreadFanOut(owed []*outbox) {
	k := 1
	if t.spreading.Load() > 0 {
		k = max(t.shares, 1)
	}
	per := (len(owed) + k - 1) / k
	for len(owed) > 0 {
		share := owed[:min(per, len(owed))]
		owed = owed[len(share):]
		t.spreading.Add(1)
		t.spread.Schedule(func() {
			for _, o := range share {
				o.runWake()
			}
			t.spreading.Add(-1)
		})
	}
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
	store, timeout, post, self := t.store, t.cfg.storeTimeout, t.post, ctx.Self()
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), timeout)
		page, err := store.Range(rctx, t.name, after, maxReplayPageMsgs)
		cancel()
		c := &catchUpDone{msgs: page.Messages, err: err}
		switch {
		case len(page.Messages) == maxReplayPageMsgs:
			c.next = page.Messages[len(page.Messages)-1].ID
		case !page.Next.IsZero():
			c.next = page.Next
		}
		post.Send(self, c)
	}()
}

func (t *topicActor) continueCatchUp(ctx actor.Context, c *catchUpDone) {
	now := time.Now()
	for i := range c.msgs {
		t.deliver(&c.msgs[i], monoNow(), now)
	}
	t.flushDeliveries()
	if c.err == nil && !c.next.IsZero() {
		t.readAfter(ctx, c.next)
		return
	}
	if c.err != nil {
		t.log.Warn("catch-up read failed; delivery resumes with new messages", "err", c.err)
		t.ring.reset() // what it holds is no longer contiguous with what follows
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
	post, self := t.post, ctx.Self()
	t.idleTimer = time.AfterFunc(t.cfg.idleTimeout/2, func() { post.Send(self, &idleCheck{}) })
}

// busy reports whether the actor has subscribers or work.
func (t *topicActor) busy() bool {
	return len(t.subs) > 0 || len(t.replaying) > 0 || len(t.pending) > 0 || t.writing || t.catchingUp ||
		len(t.stash) > 0 || t.watch == watchStarting || t.watch == watchSyncing
}

// checkIdle stops the actor when it has had no subscribers and no traffic for
// the idle timeout and nothing is queued for it.
func (t *topicActor) checkIdle(ctx actor.Context) {
	if !t.busy() && monoSince(t.lastActive) >= t.cfg.idleTimeout && t.stopNow(ctx) {
		return
	}
	t.armIdle(ctx)
}

// stopIfUnused stops a topic actor that was never published to as soon as
// its last subscriber leaves: subscribe-and-leave churn over fresh names
// holds no actor.
func (t *topicActor) stopIfUnused(ctx actor.Context) {
	if !t.published && !t.busy() {
		t.stopNow(ctx)
	}
}

// stopNow stops the actor if nothing is in flight toward it: once the entry
// is closed no sender can reach it, and the next one spawns a successor.
func (t *topicActor) stopNow(ctx actor.Context) bool {
	if !t.entry.tryClose() {
		return false
	}
	t.log.Debug("topic actor unused, stopping")
	t.stopping = true
	t.home.forget(t.name, t.entry)
	ctx.Stop(ctx.Self())
	return true
}

// stopped runs when the actor stops: when unused, at shutdown, or because
// its restart budget ran out. In the last case everyone waiting for it
// hears: its subscribers and the connections whose subscribe it had not
// answered get topicFailed, its publishers 503 (or their write's outcome),
// and the next publish starts a fresh actor.
func (t *topicActor) stopped() {
	t.ended = true
	if t.idleTimer != nil {
		t.idleTimer.Stop()
	}
	t.ring.reset() // its bytes go back to the hot tier's budget
	if t.feed != nil {
		t.unwatch()
	}
	if t.stopping {
		return
	}
	if t.home.closing() { // relay shutdown: connections are closing too
		return
	}
	t.entry.inflight.Store(-1)
	t.home.forget(t.name, t.entry)
	told := make(map[*subscription]bool)
	fail := func(s *subscription) {
		if !told[s] { // a subscription may be live and its request re-sent too
			told[s] = true
			t.post.Send(s.conn, &topicFailed{sub: s})
		}
	}
	err := t.stoppedErr()
	for _, p := range t.pending {
		t.answer(p, nil, err)
	}
	t.pending = nil
	for _, w := range t.held {
		t.answerWrite(w)
	}
	t.held = nil
	for _, s := range t.subs {
		fail(s)
	}
	for s := range t.replaying {
		fail(s)
	}
	for _, r := range t.stash { // released when received
		fail(r.sub)
	}
	t.subs, t.stash = nil, nil
	clear(t.replaying)
	if t.entry.mb == nil {
		return
	}
	// protoactor drops what is left in the (suspended) mailbox: the
	// message that failed last (recoverFrom sent it back), and whatever
	// queued behind it. What someone waits for is answered here, and
	// what is posted from now on (a sender that got its place in the
	// queue before the entry closed, a write in flight) by settle on its
	// poster's goroutine.
	for _, msg := range t.entry.mb.takeAll(func(msg any) { t.settle(msg, t.failLate) }) {
		t.settle(msg, fail)
	}
}

// stoppedErr answers a publish the actor stopped before storing.
func (t *topicActor) stoppedErr() error {
	return fmt.Errorf("topic %q stopped: %w", t.name, messages.ErrUnavailable)
}

// settle answers a message the actor, stopped for good, will not handle:
// a publish with 503, a finished write with its outcome, a subscribe with
// topicFailed (fail), which the connection takes as the topic's answer.
// Anything else is dropped: no one waits for it (a replaying
// subscription's page request: the subscription was told). It reads no
// actor state but immutable fields (see stopped).
func (t *topicActor) settle(msg any, fail func(*subscription)) {
	switch msg := msg.(type) {
	case *publish:
		t.answer(msg, nil, t.stoppedErr())
	case *writeDone:
		t.answerWrite(msg)
	case *subscribeRequest:
		fail(msg.sub)
		t.entry.release()
	}
}

// failLate tells a subscribe posted after the actor stopped for good.
func (t *topicActor) failLate(s *subscription) { t.post.Send(s.conn, &topicFailed{sub: s}) }
