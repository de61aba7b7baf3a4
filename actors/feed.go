package actors

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// DefaultPositionCheckInterval is Config.PositionCheckInterval's default
// (RELAY_POSITION_CHECK_INTERVAL).
const DefaultPositionCheckInterval = 5 * time.Second

// feedUnwatchLinger is how long a topic actor keeps watching its channel
// after its last local subscriber left: long-poll clients leave and come
// back between polls, and a watched topic answers their next poll from its
// ring without a new subscribe round trip.
const feedUnwatchLinger = 2 * time.Second

// feedRetryDelay is how long a topic actor waits before it reads its
// stream's tip again when the first read (starting to watch) failed.
const feedRetryDelay = 250 * time.Millisecond

// maxLocalBatchMsgs caps the messages a topic actor remembers of its own
// writes until their notices come back (for their delivery latency, and to
// deliver a batch too large to be inlined in its notice without a read).
const maxLocalBatchMsgs = 4096

// Reasons of FeedObserver.GapRepaired (relay_gap_repairs_total{reason}).
const (
	RepairLink     = "link"     // the pub/sub link was lost and is back
	RepairGap      = "gap"      // a notice did not continue what was delivered
	RepairPosition = "position" // the periodic tip check found the stream ahead
	RepairEpoch    = "epoch"    // the stream has a new incarnation
)

// FeedObserver is implemented by an Observer that also counts the live
// feed across relay instances; the actors use it when their Observer has it.
type FeedObserver interface {
	// GapRepaired counts a topic actor reading its stream to deliver what
	// the feed did not bring, by reason (Repair*).
	GapRepaired(reason string)
	// FeedLink reports the pub/sub link's state (the relay's whole feed:
	// up when every link is up).
	FeedLink(up bool)
	// NoticeDropped counts a notice not handed to its topic actor because
	// the actor's queue was full (the actor repairs from the stream).
	NoticeDropped()
	// FeedTopics moves the gauge of topics whose channel the relay
	// listens to by delta (bounded by the live topic actors).
	FeedTopics(delta int)
}

func feedObserver(o Observer) FeedObserver {
	if f, ok := o.(FeedObserver); ok {
		return f
	}
	return nopObserver{}
}

func (nopObserver) GapRepaired(string) {}
func (nopObserver) FeedLink(bool)      {}
func (nopObserver) NoticeDropped()     {}
func (nopObserver) FeedTopics(int)     {}

// Messages between the feed hub and topic actors, and those a topic actor
// sends itself while following its stream.
type (
	// watchReady: the hub holds an interest in the topic's channel (its
	// subscribe may have failed: the link is down; OnLink(true) follows).
	watchReady struct{ gen uint64 }
	// syncDone: the stream's tip, read after the channel was subscribed.
	syncDone struct {
		gen uint64
		tip persistence.Tip
		err error
	}
	syncRetry struct{ gen uint64 }
	// feedNotice: an append announced on the topic's channel.
	feedNotice struct{ n persistence.Notice }
	// tipCheck: the stream's tip from a batched position check. immediate:
	// repair at once if behind (a link came up); otherwise only if still
	// behind after a grace period (the notice may be on its way).
	tipCheck struct {
		tip       persistence.Tip
		immediate bool
	}
	tipRecheck struct{ gen uint64 }
	// linkRestored: the pub/sub link was down and is back.
	linkRestored struct{}
	// repairDone: a stream read after lastDelivered.
	repairDone struct {
		gen   uint64
		page  persistence.Page
		limit int
		upTo  messages.ID // heard when the read started
		err   error
	}
	unwatchCheck struct{ gen uint64 }
	// repairResume: the subscribers may have room for the next repair page.
	repairResume struct{ gen uint64 }
)

// A repair after a link outage may have far more to deliver than a
// subscriber's queue holds (RELAY_CONNECTION_QUEUE_SIZE frames): read back
// to back, its pages would overflow subscribers that keep up with the live
// rate with ease (4008 under the disconnect policy). It reads the next
// page only once every subscriber has room for one, waiting repairWaitDelay
// at a time, repairMaxWaits times at most in a row (a subscriber that
// drains no page in that time is a slow consumer, and its policy applies).
const (
	repairWaitDelay = 10 * time.Millisecond
	repairMaxWaits  = 500
)

// watchState is where a topic actor is in following its channel.
type watchState uint8

const (
	watchOff      watchState = iota // no local interest: not following
	watchStarting                   // asked the hub to subscribe
	watchSyncing                    // subscribed; reading the stream's tip
	watchOn                         // following: lastDelivered is the stream's
)

// localBatch is one of a topic actor's own writes, kept until its notice
// comes back.
type localBatch struct {
	last     messages.ID
	msgs     []messages.Message
	received []int64
}

// feedHub is the relay's end of the live feed (persistence.Feed): it holds
// one reference-counted interest per watched topic, hands notices and link
// changes to topic actors, and runs the periodic position check (one
// batched Store.Tips call for every watched topic).
//
// Concurrency: safe for concurrent use; its FeedHandler methods are called
// one at a time by the feed and only post messages.
type feedHub struct {
	store    persistence.Store
	reg      *registry
	post     poster
	log      *slog.Logger
	obs      FeedObserver
	interval time.Duration
	timeout  time.Duration
	limit    int64 // notices queued per topic actor until its policy sets its mailbox bound

	feed persistence.Feed // set once by start, under mu (see getFeed)

	mu     sync.Mutex
	topics map[string]*hubTopic
	outage bool // OnLink(false) since the last OnLink(true)
	closed bool

	kick chan struct{} // an immediate position check
	// linked: a link went up or down; checkLoop sets the link gauge from
	// Feed.Up, which OnLink must not call (see OnLink).
	linked chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup
}

// hubTopic is the hub's interest in one topic.
type hubTopic struct {
	want    int  // topic actor incarnations that watch it
	have    bool // the feed holds our interest
	busy    bool // a goroutine is reconciling have with want
	waiters []hubWaiter
}

type hubWaiter struct {
	pid *actor.PID
	gen uint64
}

var _ persistence.FeedHandler = (*feedHub)(nil)

func newFeedHub(store persistence.Store, reg *registry, post poster, cfg *Config, log *slog.Logger) *feedHub {
	h := &feedHub{
		store: store, reg: reg, post: post, log: log, obs: feedObserver(cfg.Observer),
		interval: cfg.PositionCheckInterval, timeout: cfg.StoreTimeout, limit: int64(cfg.TopicMailboxSize),
		topics: make(map[string]*hubTopic), kick: make(chan struct{}, 1), linked: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	if h.interval <= 0 {
		h.interval = DefaultPositionCheckInterval
	}
	return h
}

// errLocalFeed: the store's feed never announces anything (one process).
var errLocalFeed = errors.New("the store's feed is local")

// start opens the feed and the position check loop. It fails with
// errLocalFeed for a store that lives in this process.
func (h *feedHub) start() error {
	f, err := h.store.NewFeed(h)
	if err != nil {
		return err
	}
	if persistence.IsLocalFeed(f) {
		_ = f.Close()
		return errLocalFeed
	}
	h.mu.Lock()
	h.feed = f
	h.mu.Unlock()
	h.obs.FeedLink(f.Up())
	h.wg.Add(1)
	go h.checkLoop()
	return nil
}

// close closes the feed and stops the position check; later watch and
// unwatch calls do nothing.
func (h *feedHub) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	close(h.stop)
	h.wg.Wait()
	if f := h.getFeed(); f != nil {
		_ = f.Close()
	}
}

// getFeed returns the feed (nil before start has it: the feed may call
// OnLink before NewFeed returns).
func (h *feedHub) getFeed() persistence.Feed {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.feed
}

// inOutage reports whether the link went down and has not come back: the
// notices of appends meanwhile are lost, and linkRestored is still to come.
func (h *feedHub) inOutage() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.outage
}

// linkUp reports the pub/sub link for /ready.
func (h *feedHub) linkUp() bool {
	f := h.getFeed()
	return f != nil && f.Up()
}

// watch adds an interest of one topic actor incarnation in topic; the
// actor hears watchReady{gen} once the feed holds it.
func (h *feedHub) watch(topic string, pid *actor.PID, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	ht := h.topics[topic]
	if ht == nil {
		ht = &hubTopic{}
		h.topics[topic] = ht
	}
	ht.want++
	ht.waiters = append(ht.waiters, hubWaiter{pid, gen})
	h.reconcileLocked(topic, ht)
}

// unwatch removes one interest added by watch.
func (h *feedHub) unwatch(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ht := h.topics[topic]
	if h.closed || ht == nil || ht.want == 0 {
		return
	}
	ht.want--
	h.reconcileLocked(topic, ht)
}

// reconcileLocked answers waiters if the feed holds the interest, or starts
// a goroutine that subscribes or unsubscribes (one per topic at a time, so
// the feed sees each topic's calls in order).
func (h *feedHub) reconcileLocked(topic string, ht *hubTopic) {
	if ht.busy {
		return
	}
	if (ht.want > 0) == ht.have {
		h.answerLocked(ht)
		if ht.want == 0 {
			delete(h.topics, topic)
		}
		return
	}
	ht.busy = true
	h.wg.Add(1)
	go h.reconcile(topic, ht)
}

func (h *feedHub) answerLocked(ht *hubTopic) {
	if !ht.have {
		return
	}
	for _, w := range ht.waiters {
		h.post.Send(w.pid, &watchReady{gen: w.gen})
	}
	ht.waiters = nil
}

func (h *feedHub) reconcile(topic string, ht *hubTopic) {
	defer h.wg.Done()
	for {
		h.mu.Lock()
		want := ht.want > 0
		if h.closed {
			// Nothing more to (un)subscribe: reconcileLocked would start
			// another goroutine for a want that differs from have, and
			// close would wait for those forever.
			ht.busy = false
			h.mu.Unlock()
			return
		}
		if want == ht.have {
			ht.busy = false
			h.reconcileLocked(topic, ht)
			h.mu.Unlock()
			return
		}
		feed := h.feed
		h.mu.Unlock()
		var err error
		if want {
			// The interest is kept even on an error (link down): the feed
			// subscribes again and calls OnLink(true), and the actor then
			// catches up from the stream.
			err = feed.Subscribe(topic)
		} else {
			err = feed.Unsubscribe(topic)
		}
		if err != nil {
			h.log.Debug("feed: (un)subscribe failed; the link will recover it", "topic", topic, "subscribe", want, "err", err)
		}
		h.mu.Lock()
		ht.have = want
		h.mu.Unlock()
		if want {
			h.obs.FeedTopics(1)
		} else {
			h.obs.FeedTopics(-1)
		}
	}
}

// send hands msg to topic's live actor within its queue bound, and reports
// whether it did.
func (h *feedHub) send(topic string, msg any) bool {
	v, ok := h.reg.entries.Load(topic)
	if !ok {
		return false
	}
	e := v.(*topicEntry)
	lim := e.mailbox.Load() // the topic's policy's mailbox_size (policy.go)
	if lim <= 0 {
		lim = h.limit // not set yet
	}
	if e.acquire(lim) != nil {
		return false
	}
	h.post.Send(e.pid, msg)
	return true
}

// watched returns the topics the hub holds an interest in.
func (h *feedHub) watched() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.topics))
	for t, ht := range h.topics {
		if ht.have && ht.want > 0 {
			out = append(out, t)
		}
	}
	return out
}

// OnNotice implements persistence.FeedHandler.
func (h *feedHub) OnNotice(n persistence.Notice) {
	if !h.send(n.Topic, &feedNotice{n: n}) {
		if _, ok := h.reg.entries.Load(n.Topic); ok {
			h.obs.NoticeDropped()
		}
	}
}

// OnLink implements persistence.FeedHandler. A link that comes back after
// an outage makes every watched topic catch up from the stream; a link that
// comes up for the first time (a new cluster slot) triggers an immediate
// position check, since its topics may have missed notices while it
// connected.
//
// It never calls the Feed (FeedHandler's contract): the feed calls it with
// its handler lock held, and Feed.Up takes the feed's lock, which a
// Subscribe holds while it waits for a link's reader, which waits for the
// handler lock: the three waited on each other for good. Whether every
// link is up (other cluster links may be down) is read by checkLoop.
func (h *feedHub) OnLink(up bool, err error) {
	if !up {
		h.obs.FeedLink(false)
	}
	select {
	case h.linked <- struct{}{}:
	default:
	}
	h.mu.Lock()
	outage := h.outage
	if !up {
		h.outage = true
	} else {
		h.outage = false
	}
	h.mu.Unlock()
	if !up {
		return // the feed logged it; the repair follows when it is back
	}
	if outage {
		topics := h.watched()
		h.log.Warn("feed: pub/sub link back; watched topics catch up from their streams", "topics", len(topics))
		for _, t := range topics {
			h.send(t, &linkRestored{})
		}
		return
	}
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// checkLoop runs the position check every interval, and at once when
// kicked; it sets the link gauge when a link changed, and with every check.
func (h *feedHub) checkLoop() {
	defer h.wg.Done()
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	for {
		immediate := false
		select {
		case <-h.stop:
			return
		case <-h.linked:
			h.linkGauge()
			continue
		case <-tick.C:
		case <-h.kick:
			immediate = true
		}
		h.linkGauge()
		h.check(immediate)
	}
}

// linkGauge sets the link gauge: up while every link of the feed is.
func (h *feedHub) linkGauge() {
	if f := h.getFeed(); f != nil {
		h.obs.FeedLink(f.Up())
	}
}

// maxTipsBatch caps the topics of one Tips call.
const maxTipsBatch = 5000

// check reads the tips of every watched topic (batched) and hands each to
// its actor.
func (h *feedHub) check(immediate bool) {
	topics := h.watched()
	for len(topics) > 0 {
		n := min(len(topics), maxTipsBatch)
		batch := topics[:n]
		topics = topics[n:]
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		tips, err := h.store.Tips(ctx, batch)
		cancel()
		if err != nil {
			h.log.Debug("feed: position check failed", "topics", len(batch), "err", err)
			return
		}
		for _, t := range batch {
			h.send(t, &tipCheck{tip: tips[t], immediate: immediate})
		}
	}
}

// Topic actor side: following the stream through the hub.

// localInterest reports whether the actor has local subscribers (live,
// replaying, or waiting for the watch to start).
func (t *topicActor) localInterest() bool {
	return len(t.subs) > 0 || len(t.replaying) > 0 || len(t.stash) > 0
}

// feedSubscribe handles a subscribeRequest when the store is shared: the
// actor must follow its stream before it can tell a subscriber where live
// delivery starts, so requests wait (stashed) until the watch is on.
func (t *topicActor) feedSubscribe(ctx actor.Context, req *subscribeRequest) {
	if t.watch == watchOn {
		t.subscribe(ctx, req)
		return
	}
	for _, r := range t.stash {
		if r.sub == req.sub {
			return // a retry after a restart
		}
	}
	t.stash = append(t.stash, req)
	if t.watch == watchOff {
		t.watchGen++
		t.watch = watchStarting
		t.feed.watch(t.name, ctx.Self(), t.watchGen)
	}
}

// onWatchReady reads the stream's tip now that notices are heard.
func (t *topicActor) onWatchReady(ctx actor.Context, gen uint64) {
	if gen != t.watchGen || t.watch != watchStarting {
		return
	}
	t.watch = watchSyncing
	t.readTip(ctx)
}

func (t *topicActor) readTip(ctx actor.Context) {
	store, timeout, post, self, gen, topic := t.store, t.cfg.storeTimeout, t.post, ctx.Self(), t.watchGen, t.name
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), timeout)
		tips, err := store.Tips(rctx, []string{topic})
		cancel()
		post.Send(self, &syncDone{gen: gen, tip: tips[topic], err: err})
	}()
}

// onSyncDone starts following from the tip: every append after it is
// heard, so live delivery starts there; the stashed subscribes are
// answered.
func (t *topicActor) onSyncDone(ctx actor.Context, s *syncDone) {
	if s.gen != t.watchGen || t.watch != watchSyncing {
		return
	}
	if s.err != nil {
		if t.syncTries == 0 {
			t.log.Warn("reading the stream's tip failed; replaying subscribers wait while it is retried", "err", s.err)
		}
		// A live subscriber need not wait: it is answered now, and live
		// delivery to it starts where the stream was then (t.early), not
		// at the tip read later: appends go on while the tip cannot be
		// read (the store is back before the retry, or only that read
		// fails), and the later tip includes them. Replays wait for the tip.
		admitted := false
		t.stash = slices.DeleteFunc(t.stash, func(req *subscribeRequest) bool {
			if req.pos.Live {
				t.subscribe(ctx, req)
				admitted = true
				return true
			}
			return false
		})
		if admitted && !t.early.on {
			t.early = earlyLive{on: true, at: time.Now()}
			if !t.heard.IsZero() {
				// Every append after this one's comes after the answer.
				t.early.known, t.early.from = true, t.heard
			}
		}
		delay := min(feedRetryDelay<<min(t.syncTries, 5), 5*time.Second)
		t.syncTries++
		post, self, gen := t.post, ctx.Self(), t.watchGen
		time.AfterFunc(delay, func() { post.Send(self, &syncRetry{gen: gen}) })
		return
	}
	t.syncTries = 0
	t.watch = watchOn
	t.ring.reset() // it holds nothing known to be contiguous with the tip
	t.local = nil
	t.epoch = s.tip.Epoch
	t.lastDelivered = s.tip.Last
	if t.early.on && !t.early.known && t.feed.inOutage() {
		// The tip is back before the link: appends since the early answer
		// are in the tip but their notices were lost, and the repair when
		// the link is back reads after lastDelivered. Start it where the
		// early subscribers were answered instead.
		t.early.lost = true
	}
	switch {
	case !t.early.on || len(t.subs) == 0:
		t.early = earlyLive{}
	case t.early.known || t.early.lost:
		// Live subscribers answered before the tip was known get what
		// was appended since, by the repair below.
		t.lastDelivered = t.early.start(s.tip.Last)
		t.early = earlyLive{}
	default:
		// Nothing heard since they were answered, and nothing lost: the
		// appends since, if any, are in the tip, their notices late
		// (onNotice goes back for them).
		t.early = earlyLive{at: t.early.at, late: true, tip: s.tip.Last}
	}
	if t.heard.Less(s.tip.Last) {
		t.heard = s.tip.Last
	}
	stash := t.stash
	t.stash = nil
	for _, req := range stash {
		t.subscribe(ctx, req)
	}
	if t.relink {
		t.relink = false
		t.repair(ctx, RepairLink)
	} else if t.lastDelivered.Less(t.heard) {
		t.repair(ctx, "") // notices heard while the tip was read
	}
	t.maybeUnwatch(ctx)
}

// earlyStartMargin is how far before the time live subscribers were
// answered live delivery to them starts when their stream's position then
// is unknown and notices may have been lost (earlyLive.start): ids carry
// the store's clock in milliseconds, which may lag this process's.
const earlyStartMargin = time.Second

// earlyLive is, for live subscribers a topic actor answered while its
// stream's tip could not be read (onSyncDone), where live delivery to them
// starts once the tip is known: no later than where the stream was when
// the first of them was answered, so that every append after their
// "subscribed" frame reaches them, once and in id order.
type earlyLive struct {
	on    bool
	at    time.Time   // when the first was answered
	known bool        // from is at or before where the stream was then
	from  messages.ID // (exclusive)
	lost  bool        // notices may have been lost since: a later one's Prev does not tell
	// After the tip was read with nothing heard or lost since they were
	// answered: appends between their answer and that read are in tip,
	// and their notices may still be on their way. The first notice
	// decides (onNotice).
	late bool
	tip  messages.ID
}

// start returns where live delivery starts, the tip being tip: from when
// known, otherwise (notices lost, or no Prev) the id of earlyStartMargin
// before they were answered (ids are "<unix_ms>-<seq>"); never after tip.
func (e *earlyLive) start(tip messages.ID) messages.ID {
	from := e.from
	if !e.known {
		ms := e.at.Add(-earlyStartMargin).UnixMilli()
		from = messages.ID{Ms: uint64(max(ms, 0))}
	}
	if tip.Less(from) {
		return tip
	}
	return from
}

// maybeUnwatch schedules the end of the watch when no local subscriber is
// left (after feedUnwatchLinger).
func (t *topicActor) maybeUnwatch(ctx actor.Context) {
	if t.feed == nil || t.watch != watchOn || t.localInterest() || t.unwatchArmed {
		return
	}
	t.unwatchArmed = true
	post, self, gen := t.post, ctx.Self(), t.watchGen
	time.AfterFunc(feedUnwatchLinger, func() { post.Send(self, &unwatchCheck{gen: gen}) })
}

func (t *topicActor) onUnwatchCheck(u *unwatchCheck) {
	if u.gen != t.watchGen {
		return
	}
	t.unwatchArmed = false
	if t.watch != watchOn || t.localInterest() {
		return
	}
	t.unwatch()
}

// unwatch stops following the stream.
func (t *topicActor) unwatch() {
	if t.watch == watchOff {
		return
	}
	t.feed.unwatch(t.name)
	t.watch = watchOff
	t.watchGen++ // results of reads in flight are stale
	t.repairing = false
	t.relink = false
	t.ring.reset()
	t.local = nil
	t.heard = messages.ID{}
	t.suspect = messages.ID{}
	t.early = earlyLive{}
}

// onNotice delivers an announced append that continues what was
// delivered; anything else is a gap read from the stream.
func (t *topicActor) onNotice(ctx actor.Context, n *persistence.Notice) {
	if t.watch != watchOn {
		if t.watch != watchSyncing {
			return
		}
		if t.early.on && !t.early.known && !t.early.lost {
			if n.Last.IsZero() || n.Prev.IsZero() {
				// Undecodable, or a stream without a known Prev: it does
				// not tell where the stream was.
				t.early.lost = true
			} else {
				// The first append heard since live subscribers were
				// answered: none came between them and it (no notice was
				// lost: see onLinkRestored), so Prev is at or before
				// where the stream was when they were.
				t.early.known, t.early.from = true, n.Prev
			}
		}
		if t.heard.Less(n.Last) {
			t.heard = n.Last
		}
		return
	}
	late := t.early
	t.early = earlyLive{}
	if n.Epoch != "" && t.epoch != "" && n.Epoch != t.epoch {
		t.newEpoch(ctx, n.Epoch, n.Last)
		return
	}
	if n.Epoch != "" {
		t.epoch = n.Epoch
	}
	if n.Last.IsZero() { // undecodable: read the stream
		t.repair(ctx, RepairGap)
		return
	}
	if late.late && !t.repairing && t.lastDelivered == late.tip && n.Prev.Less(late.tip) && !late.tip.Less(n.Last) {
		// The first notice since the tip was read, with live subscribers
		// answered before, is of an append within that tip, heard late:
		// it and what follows it are theirs.
		late.known, late.from = !n.Prev.IsZero(), n.Prev
		t.lastDelivered = late.start(late.tip)
		t.repair(ctx, "")
		return
	}
	if !t.lastDelivered.Less(n.Last) {
		return // delivered already (a repair read got there first)
	}
	if t.heard.Less(n.Last) {
		t.heard = n.Last
	}
	if t.repairing {
		return // the read in flight (and the next) catch up to heard
	}
	if n.Prev != t.lastDelivered {
		t.repair(ctx, RepairGap)
		return
	}
	now := time.Now()
	if n.Messages != nil {
		for i := range n.Messages {
			t.deliver(&n.Messages[i], t.localReceived(n.Messages[i].ID), now)
		}
		t.flushDeliveries()
		return
	}
	if b := t.localBatchOf(n.Last); b != nil { // too large to inline, and ours
		for i := range b.msgs {
			t.deliver(&b.msgs[i], b.received[i], now)
		}
		t.flushDeliveries()
		return
	}
	t.repair(ctx, "") // not inlined: read it
}

// newEpoch handles a stream that has a new incarnation: what the ring held
// belongs to the old one.
func (t *topicActor) newEpoch(ctx actor.Context, epoch string, last messages.ID) {
	t.log.Warn("stream has a new epoch; catching up from it", "epoch", epoch, "old_epoch", t.epoch)
	t.epoch = epoch
	t.ring.reset()
	if t.heard.Less(last) {
		t.heard = last
	}
	t.repair(ctx, RepairEpoch)
}

// onTipCheck compares the stream's tip with what was delivered. Behind
// means a notice is lost or still on its way: an immediate check repairs at
// once, a periodic one after a grace period, if still behind then.
func (t *topicActor) onTipCheck(ctx actor.Context, c *tipCheck) {
	if t.watch != watchOn {
		return
	}
	tip := c.tip
	if tip.Epoch != "" && t.epoch != "" && tip.Epoch != t.epoch {
		t.newEpoch(ctx, tip.Epoch, tip.Last)
		return
	}
	if !t.lastDelivered.Less(tip.Last) {
		return
	}
	if t.heard.Less(tip.Last) {
		t.heard = tip.Last
	}
	if c.immediate {
		t.repair(ctx, "")
		return
	}
	if !t.suspect.IsZero() {
		return // a recheck is armed
	}
	t.suspect = tip.Last
	post, self, gen := t.post, ctx.Self(), t.watchGen
	grace := min(time.Second, t.feed.interval/4)
	time.AfterFunc(grace, func() { post.Send(self, &tipRecheck{gen: gen}) })
}

func (t *topicActor) onTipRecheck(ctx actor.Context, r *tipRecheck) {
	if r.gen != t.watchGen {
		return
	}
	suspect := t.suspect
	t.suspect = messages.ID{}
	if t.watch == watchOn && t.lastDelivered.Less(suspect) {
		t.repair(ctx, RepairPosition)
	}
}

func (t *topicActor) onLinkRestored(ctx actor.Context) {
	switch t.watch {
	case watchOn:
		t.repair(ctx, RepairLink)
	case watchStarting, watchSyncing:
		t.relink = true
		if t.early.on && !t.early.known {
			t.early.lost = true // notices of appends since may be lost
		}
	}
}

// repair reads the stream after lastDelivered and delivers in stream order,
// until it has delivered everything heard of. reason, when not "", counts
// the read as a gap repair (metric, and a warn log).
func (t *topicActor) repair(ctx actor.Context, reason string) {
	switch reason {
	case "":
	case RepairLink: // the hub logged the outage once for every topic
		t.fobs.GapRepaired(reason)
		t.log.Debug("pub/sub link back: catching up from the stream", "after", t.lastDelivered.String())
	default:
		t.fobs.GapRepaired(reason)
		t.log.Warn("live feed gap: catching up from the stream", "reason", reason, "after", t.lastDelivered.String(), "heard", t.heard.String())
	}
	if t.repairing {
		return
	}
	t.repairing = true
	t.readRepair(ctx)
}

func (t *topicActor) readRepair(ctx actor.Context) {
	store, timeout, post, self, gen, topic := t.store, t.cfg.storeTimeout, t.post, ctx.Self(), t.watchGen, t.name
	after, upTo := t.lastDelivered, t.heard
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), timeout)
		page, err := store.Range(rctx, topic, after, maxReplayPageMsgs)
		cancel()
		post.Send(self, &repairDone{gen: gen, page: page, limit: maxReplayPageMsgs, upTo: upTo, err: err})
	}()
}

func (t *topicActor) onRepairDone(ctx actor.Context, r *repairDone) {
	if r.gen != t.watchGen || !t.repairing {
		return
	}
	if r.err != nil {
		// The next notice, link event or position check tries again.
		t.repairing = false
		t.log.Warn("catch-up read failed; retrying with the next notice or position check", "err", r.err)
		return
	}
	p := &r.page
	if p.Truncated {
		t.log.Warn("catch-up read: messages were trimmed from the stream before they could be delivered", "after", t.lastDelivered.String())
		t.ring.reset()
	}
	if p.Epoch != "" && t.epoch != "" && p.Epoch != t.epoch {
		t.epoch = p.Epoch
		t.ring.reset()
	}
	now := time.Now()
	for i := range p.Messages {
		m := &p.Messages[i]
		t.deliver(m, t.localReceived(m.ID), now)
	}
	t.flushDeliveries()
	more := len(p.Messages) >= r.limit || !p.Next.IsZero()
	if !more && t.lastDelivered.Less(r.upTo) {
		// The stream ends before what was heard when the read began: the
		// rest expired or was trimmed.
		t.lastDelivered = r.upTo
	}
	if !p.Next.IsZero() && t.lastDelivered.Less(p.Next) && len(p.Messages) < r.limit {
		t.lastDelivered = p.Next // expired entries up to Next
	}
	if more || t.lastDelivered.Less(t.heard) {
		t.repairPage = repairPageOf(p.Messages)
		t.continueRepair(ctx)
		return
	}
	t.repairing = false
}

// repairPageOf is the room a repair page like msgs takes in a subscriber's
// queue: its frames and their bytes.
func repairPageOf(msgs []messages.Message) (room queueRoom) {
	room.msgs = len(msgs)
	for i := range msgs {
		room.bytes += msgs[i].FrameLen()
	}
	return room
}

// continueRepair reads the next repair page once every subscriber has room
// for one like the last (see repairWaitDelay).
func (t *topicActor) continueRepair(ctx actor.Context) {
	if t.repairWaits < repairMaxWaits && !t.subscribersHaveRoom(t.repairPage) {
		t.repairWaits++
		post, self, gen := t.post, ctx.Self(), t.watchGen
		time.AfterFunc(repairWaitDelay, func() { post.Send(self, &repairResume{gen: gen}) })
		return
	}
	t.repairWaits = 0
	t.readRepair(ctx)
}

func (t *topicActor) onRepairResume(ctx actor.Context, r *repairResume) {
	if r.gen == t.watchGen && t.repairing {
		t.continueRepair(ctx)
	}
}

// subscribersHaveRoom reports whether every live subscriber's queue can
// take room more.
func (t *topicActor) subscribersHaveRoom(room queueRoom) bool {
	for _, s := range t.subs {
		if !s.outbox.hasRoom(room) {
			return false
		}
	}
	return true
}

// noteLocal remembers a write of this actor until its notice comes back.
func (t *topicActor) noteLocal(w *writeDone) {
	if t.watch != watchOn {
		return
	}
	b := localBatch{msgs: make([]messages.Message, 0, w.n), received: make([]int64, 0, w.n)}
	for i := 0; i < w.n; i++ {
		m := &w.msgs[i]
		if m.Duplicate || m.Conflict {
			continue
		}
		b.msgs = append(b.msgs, *m)
		b.received = append(b.received, w.batch[i].received)
		b.last = m.ID
	}
	if len(b.msgs) == 0 {
		return
	}
	t.local = append(t.local, b)
	total := 0
	for i := len(t.local) - 1; i >= 0; i-- {
		total += len(t.local[i].msgs)
		if total > maxLocalBatchMsgs {
			t.local = t.local[i+1:]
			break
		}
	}
}

// localReceived returns when the publish of id arrived here, if it was a
// local one, and forgets local batches at or before id.
func (t *topicActor) localReceived(id messages.ID) int64 {
	for len(t.local) > 0 && t.local[0].last.Less(id) {
		t.local = t.local[1:]
	}
	if len(t.local) == 0 {
		return monoNow()
	}
	b := &t.local[0]
	for i := range b.msgs {
		if b.msgs[i].ID == id {
			return b.received[i]
		}
	}
	return monoNow()
}

// localBatchOf returns the local write whose last id is last, if any.
func (t *topicActor) localBatchOf(last messages.ID) *localBatch {
	for i := range t.local {
		if t.local[i].last == last {
			b := t.local[i]
			t.local = t.local[i+1:]
			return &b
		}
	}
	return nil
}

// FeedUp reports whether the relay hears other instances' appends: true
// when the store is not shared (there is nothing to hear) or every pub/sub
// link is up. /ready reports it.
func (m *TopicManager) FeedUp() bool {
	if m.hub == nil {
		return true
	}
	return m.hub.linkUp()
}

// Shared reports whether the relay follows a shared store's feed.
func (m *TopicManager) Shared() bool { return m.hub != nil }
