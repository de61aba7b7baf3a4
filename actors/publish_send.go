package actors

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// PublishWithin is Publish bounded by timeout as well as by ctx, without a
// context per call: the gateway's publish path used context.WithTimeout for
// this, a timer, a context and a registration with the request's context on
// every publish. Waiting longer than timeout returns an error wrapping
// messages.ErrUnavailable and context.DeadlineExceeded, as Publish would
// with an expired ctx; otherwise it means what Publish's result means. Like
// Publish, it may run the idle topic actor on the caller's goroutine.
func (m *TopicManager) PublishWithin(ctx context.Context, msg messages.Message, timeout time.Duration) (messages.Message, error) {
	p := &publish{msg: msg, received: monoNow(), reply: make(chan *publish, 1)}
	if err := m.reg.routeHere(msg.Topic, topicMailbox, p); err != nil {
		return messages.Message{}, fmt.Errorf("publish: %w", err)
	}
	select { // answered before any timer is needed (a fast store)
	case <-p.reply:
		return p.result()
	default:
	}
	t := getTimer(timeout)
	defer putTimer(t)
	var gaveUp error
	select {
	case <-p.reply:
		return p.result()
	case <-ctx.Done():
		gaveUp = ctx.Err()
	case <-t.C:
		gaveUp = context.DeadlineExceeded
	}
	if m.abandon(p) {
		return messages.Message{}, fmt.Errorf("publish to %q: %w: %w", msg.Topic, messages.ErrUnavailable, gaveUp)
	}
	// Already in a write: its outcome is the answer, so that a refusal
	// means not stored. The write has its own deadline (StoreTimeout).
	t.Reset(m.writeGrace())
	select {
	case <-p.reply:
		return p.result()
	case <-ctx.Done():
	case <-t.C:
	}
	return messages.Message{}, fmt.Errorf("publish to %q: %w: %w (its write's outcome is unknown)", msg.Topic, messages.ErrUnavailable, gaveUp)
}

// A publish's state says who decided its fate first: the topic actor,
// taking it into a write (its answer is then the write's outcome), or the
// publisher, giving up waiting (it is then never written: a publisher told
// 503 has stored nothing, unless the write itself was under way).
const (
	pubQueued int32 = iota
	pubTaken
	pubAbandoned
)

// abandon marks p given up by its publisher. False: the topic actor took
// it into a write first, and the publisher should wait for that write's
// answer (writeGrace).
func (m *TopicManager) abandon(p *publish) bool {
	return p.state.CompareAndSwap(pubQueued, pubAbandoned)
}

// writeGrace bounds how long a publisher that gave up waits for the write
// its publish is already in: the write's own deadline and a margin.
func (m *TopicManager) writeGrace() time.Duration {
	return m.cfg.StoreTimeout + time.Second
}

// timers are stopped timers reused by PublishWithin. Since Go 1.23 a
// stopped or reset timer never delivers a stale tick, so reuse is safe.
var timers sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, ok := timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func putTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}
