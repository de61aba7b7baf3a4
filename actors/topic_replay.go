package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// maxReplayPageMsgs caps the messages of one replay page (and of one
// catch-up read); Config.ReplayPageBytes caps its bytes.
const maxReplayPageMsgs = 1000

// firstPageMsgs is the message limit of a topic's first store replay page,
// before it knows its messages' size.
const firstPageMsgs = 16

// Messages the topic actor sends itself while replaying.
type (
	// probeDone: whether a resume point is truncated, read from the store.
	probeDone struct {
		req       *subscribeRequest
		truncated bool
		err       error
	}
	// storePage: a replay page read from the store. tip was lastDelivered
	// when the read started; end: the store held nothing newer then.
	storePage struct {
		req    *replayRequest
		frames []delivery
		next   messages.ID
		end    bool
		tip    messages.ID
		avg    int
		err    error
	}
)

// ringServes reports whether the hot ring holds every message after `after`:
// the ring is trusted (the store is not shared, or the actor follows the
// shared stream: every id it delivered since the ring's base came in stream
// order, gaps read from the stream; the ring is reset whenever that chain
// breaks), and the point is at or after the ring's "complete since" base.
func (t *topicActor) ringServes(after messages.ID) bool {
	return (t.cfg.ringReplays || t.watch == watchOn) && t.ring.covers(after)
}

// subscribe answers a subscribeRequest. A live position joins the
// subscriber set at once. A replay from a point the ring covers starts
// replaying at once; any other point is first probed in the store (on a
// goroutine) for truncation, which the "subscribed" frame reports.
func (t *topicActor) subscribe(ctx actor.Context, req *subscribeRequest) {
	sub := req.sub
	if _, ok := t.replaying[sub]; ok {
		return // a retry after a restart: the first is being answered
	}
	if sub.gone() {
		// Its connection dropped it or is stopping: a request re-sent after
		// a restart can come behind its own unsubscribe, and would leave a
		// subscriber nobody reads (and the topic never idle).
		return
	}
	t.ring.evict(time.Now()) // a quiet topic's ring may hold messages past the retention
	reply := &subscribeReply{sub: sub, topic: ctx.Self()}
	switch {
	case req.pos.Live:
		t.addLive(sub)
		reply.live = true
	case t.ringServes(req.pos.After):
		t.replaying[sub] = struct{}{}
	default:
		t.replaying[sub] = struct{}{}
		store, timeout, post, self := t.store, t.cfg.storeTimeout, t.post, ctx.Self()
		go func() {
			rctx, cancel := context.WithTimeout(context.Background(), timeout)
			page, err := store.Range(rctx, t.name, req.pos.After, 1)
			cancel()
			post.Send(self, &probeDone{req: req, truncated: page.Truncated, err: err})
		}()
		return
	}
	ctx.Send(sub.conn, reply)
}

func (t *topicActor) onProbe(ctx actor.Context, p *probeDone) {
	sub := p.req.sub
	if _, ok := t.replaying[sub]; !ok {
		return // left meanwhile
	}
	reply := &subscribeReply{sub: sub, topic: ctx.Self(), truncated: p.truncated && p.req.pos.Explicit}
	if p.err != nil {
		t.log.Warn("replay read failed; live delivery continues", "err", p.err)
		delete(t.replaying, sub)
		t.addLive(sub)
		reply.live, reply.err = true, p.err
	}
	ctx.Send(sub.conn, reply)
}

func (t *topicActor) addLive(sub *subscription) {
	for _, s := range t.subs {
		if s == sub {
			return
		}
	}
	t.subs = append(t.subs, sub)
}

// goLive ends sub's replay with page: from now on sub is live.
func (t *topicActor) goLive(ctx actor.Context, page *replayPage) {
	delete(t.replaying, page.sub)
	t.addLive(page.sub)
	page.live = true
	ctx.Send(page.sub.conn, page)
}

// onReplayRequest answers with the next page after r.after: from the ring
// when it serves that point, otherwise from the store on a goroutine (only
// the ring knows that nothing lies between a point and lastDelivered: a
// fresh actor has delivered nothing, and another instance may have
// appended). The page that reaches lastDelivered makes the subscription
// live.
func (t *topicActor) onReplayRequest(ctx actor.Context, r *replayRequest) {
	if _, ok := t.replaying[r.sub]; !ok {
		return // left, or live already
	}
	if t.ringServes(r.after) {
		if !r.after.Less(t.lastDelivered) {
			t.goLive(ctx, &replayPage{sub: r.sub, next: r.after})
			return
		}
		frames, next, end := t.ring.page(r.after, r.maxBytes, time.Now(), r.sub)
		page := &replayPage{sub: r.sub, frames: frames, next: next}
		if end {
			t.goLive(ctx, page)
		} else {
			ctx.Send(r.sub.conn, page)
		}
		return
	}
	limit := firstPageMsgs
	if t.avgFrame > 0 {
		limit = min(max(r.maxBytes/t.avgFrame, 1), maxReplayPageMsgs)
	}
	store, timeout, post, self, tip := t.store, t.cfg.storeTimeout, t.post, ctx.Self(), t.lastDelivered
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), timeout)
		p := readReplayPage(rctx, store, t.name, r, limit)
		cancel()
		p.tip = tip
		post.Send(self, p)
	}()
}

// readReplayPage reads up to limit messages after r.after and encodes
// them as frames within r.maxBytes (at least one). For a subscription
// that is gone meanwhile (its connection dropped it or is stopping) it
// stops where it is: the page goes nowhere (the connection skips it, the
// topic actor has forgotten or will forget the subscription).
func readReplayPage(ctx context.Context, store persistence.Store, topic string, r *replayRequest, limit int) *storePage {
	p := &storePage{req: r, next: r.after}
	if r.sub.gone() {
		return p
	}
	page, err := store.Range(ctx, topic, r.after, limit)
	if err != nil {
		p.err = err
		return p
	}
	size := 0
	for i := range page.Messages {
		if r.sub.gone() {
			return p
		}
		m := &page.Messages[i]
		frame := m.Frame()
		if len(p.frames) > 0 && size+len(frame) > r.maxBytes {
			p.avg = size / len(p.frames)
			return p // trimmed: more follows
		}
		p.frames = append(p.frames, delivery{frame: frame, id: m.ID, sub: r.sub})
		size += len(frame)
		p.next = m.ID
	}
	if len(p.frames) > 0 {
		p.avg = size / len(p.frames)
	}
	switch {
	case len(page.Messages) >= limit:
	case !page.Next.IsZero():
		// The store stopped early over expired entries: continue from Next.
		if p.next.Less(page.Next) {
			p.next = page.Next
		}
	default:
		p.end = true
	}
	return p
}

// onStorePage forwards a store page. A page that found the end of the
// stream covers everything delivered before its read began (tip); if
// nothing was delivered since, the subscription goes live with it.
func (t *topicActor) onStorePage(ctx actor.Context, p *storePage) {
	sub := p.req.sub
	if _, ok := t.replaying[sub]; !ok {
		return
	}
	if p.avg > 0 {
		t.avgFrame = p.avg
	}
	if p.err != nil {
		t.log.Warn("replay read failed; live delivery continues", "err", p.err)
		t.goLive(ctx, &replayPage{sub: sub, next: p.req.after, err: p.err})
		return
	}
	next := p.next
	if p.end && next.Less(p.tip) {
		next = p.tip // the rest up to tip expired
	}
	page := &replayPage{sub: sub, frames: p.frames, next: next}
	if p.end && !next.Less(t.lastDelivered) {
		t.goLive(ctx, page)
		return
	}
	ctx.Send(sub.conn, page)
}
