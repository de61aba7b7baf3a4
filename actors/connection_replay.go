package actors

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
)

// A connection pulls each replaying subscription's replay one page at a
// time (protocol.go). Before it asks for a page it reserves the page's
// bytes (Config.ReplayPageBytes) from its own budget
// (Config.ConnectionReplayBytes: at least one page in flight) and from the
// process's (Config.ReplayBytes); it returns them once the page is written
// (handed to the socket, not merely received).
// So a replay is read as fast as the socket takes it and no faster, and a
// subscribe naming many topics holds a few pages, not one per topic.
// Replays never pass through the outbox: they do not count against the
// live queue's slow-consumer limit.

// enqueueReplay puts s at the back of the replay queue (round robin over
// the connection's replaying topics).
func (c *connActor) enqueueReplay(s *subscription) {
	if !s.queued {
		s.queued = true
		c.replayQueue = append(c.replayQueue, s)
	}
}

// pumpReplays requests pages for queued subscriptions while the budgets
// allow.
func (c *connActor) pumpReplays(ctx actor.Context) {
	page := c.cfg.replayPageBytes
	for len(c.replayQueue) > 0 && !c.failed && !c.outbox.isStopping() {
		s := c.replayQueue[0]
		if !s.active || !s.replaying {
			c.popReplay()
			continue
		}
		if c.replayInFlight > 0 && c.replayInFlight+page > c.cfg.replayBytes {
			return // a page in flight will pump again
		}
		if !c.budget.tryAcquire(page) {
			c.robs.ReplayWaited()
			if c.replayInFlight == 0 && !c.replayRetry {
				c.replayRetry = true
				post, self := c.post, ctx.Self()
				time.AfterFunc(replayRetryDelay, func() { post.Send(self, theReplayKick) })
			}
			return
		}
		c.popReplay()
		s.reserved = page
		c.replayInFlight += page
		c.post.Send(s.topicPID, &replayRequest{sub: s, after: s.replayAfter, maxBytes: page})
	}
}

func (c *connActor) popReplay() {
	c.replayQueue[0].queued = false
	c.replayQueue[0] = nil
	c.replayQueue = c.replayQueue[1:]
	if len(c.replayQueue) == 0 {
		c.replayQueue = nil
	}
}

// releaseReplay returns the bytes reserved for s's page in flight.
func (c *connActor) releaseReplay(s *subscription) {
	if s.reserved > 0 {
		c.budget.release(s.reserved)
		c.replayInFlight -= s.reserved
		s.reserved = 0
	}
}

// onReplayPage writes a replay page. The last page (live) is followed by
// the live frames of s that the outbox handed over early.
func (c *connActor) onReplayPage(ctx actor.Context, p *replayPage) {
	s := p.sub
	defer c.pumpReplays(ctx)
	// The page's bytes stay reserved until its frames are written: a write
	// to a peer that does not read blocks this actor with the page in hand.
	defer c.releaseReplay(s)
	if !s.active || !s.replaying {
		return // dropped meanwhile
	}
	if p.err != nil {
		c.write(ctx, messages.NewErrorFrame(messages.CodeSubscriptionError,
			fmt.Sprintf("replay of %q failed; live delivery continues", s.topic)))
	}
	n := 0
	for _, d := range p.frames {
		if c.writeDelivery(ctx, d) {
			n++
		}
		if c.failed {
			return
		}
	}
	if s.replayAfter.Less(p.next) {
		s.replayAfter = p.next
	}
	if !p.live {
		c.obs.Delivered(c.transport, n)
		c.enqueueReplay(s)
		return
	}
	s.replaying = false
	kept := c.early[:0]
	for _, d := range c.early {
		if d.sub != s {
			kept = append(kept, d)
		} else if c.writeDelivery(ctx, d) {
			n++
		}
	}
	clear(c.early[len(kept):])
	c.early = kept
	c.obs.Delivered(c.transport, n)
}
