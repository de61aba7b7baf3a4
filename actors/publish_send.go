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
	select {
	case <-p.reply:
		return p.result()
	case <-ctx.Done():
		return messages.Message{}, fmt.Errorf("publish to %q: %w: %w", msg.Topic, messages.ErrUnavailable, ctx.Err())
	case <-t.C:
		return messages.Message{}, fmt.Errorf("publish to %q: %w: %w", msg.Topic, messages.ErrUnavailable, context.DeadlineExceeded)
	}
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
