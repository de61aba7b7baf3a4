package persistence

import (
	"context"
	"fmt"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/messages"
)

// Group commit across topics. Each topic actor has at most one append in
// flight; with many topics, their batches are small (two or three
// publishes each at 32 publishers over 10 topics) and each cost a goroutine,
// a context, a command and a wake-up of its own. AppendAsync queues the
// batch instead, and a round sends every batch queued at that moment in one
// pipeline (DoMulti: one write, one read of the replies), one script call
// per topic as Append makes, so what a round stores, and how each batch
// fails, is exactly what Append would have done.
//
// At most maxAppendRounds rounds are in flight at once: at low load every
// batch leaves at once in a round of its own (no added latency); under load
// the batches that arrive while the rounds are out leave together in the
// next. The queue holds at most one batch per topic with a write in flight,
// so it is bounded by the topic actors the registry allows (RELAY_MAX_TOPICS).
const (
	maxAppendRounds = 4
	maxRoundCalls   = 256
)

var _ AsyncAppender = (*ValkeyStore)(nil)

// AppendAsync implements AsyncAppender. done is called once, with what
// Append would have returned: from a round's goroutine, or at once on the
// caller's when the batch cannot be queued (store closed, metadata that
// cannot be encoded). The batch is bounded by the earlier of deadline (a
// zero one: the store's Timeout from now) and ctx's deadline, and the round
// that sends it by Timeout as well (commit), so a caller's deadline needs
// no second clock read here. With WaitReplicas each batch goes alone (its
// script and WAIT share one dedicated connection), and so it does on a
// cluster: valkey-go's DoMulti answers a round when its slowest master has,
// so one master that stalls would hold the appends to every other master
// behind it (and, once it held every round, the queue). Alone, a batch waits
// only for its own master; valkey-go still writes the concurrent calls to
// one master in one pipelined write (AlwaysPipelining).
func (s *ValkeyStore) AppendAsync(ctx context.Context, topic string, batch []messages.Message, deadline time.Time, done func(n int, err error)) {
	if len(batch) == 0 {
		done(0, nil)
		return
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(s.timeout)
	}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if s.cfg.WaitReplicas > 0 {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			done(0, fmt.Errorf("valkey: append %q: %w: store closed", topic, messages.ErrUnavailable))
			return
		}
		s.wg.Add(1) // under mu with closed false: Close's Wait comes after
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithDeadline(ctx, deadline)
			defer cancel()
			done(s.Append(ctx, topic, batch))
		}()
		return
	}
	a, err := s.prepareAppend(ctx, topic, batch)
	if err != nil {
		done(0, err)
		return
	}
	a.ctx, a.deadline, a.done = ctx, deadline, done
	cluster, _ := s.IsCluster()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		done(0, fmt.Errorf("valkey: append %q: %w: store closed", topic, messages.ErrUnavailable))
		return
	}
	if cluster {
		s.wg.Add(1) // under mu with closed false: Close's Wait comes after
		s.mu.Unlock()
		go s.appendAlone(a)
		return
	}
	s.queue = append(s.queue, a)
	start := s.rounds < maxAppendRounds
	if start {
		s.rounds++
		s.wg.Add(1) // under mu with closed false: Close's Wait comes after
	}
	s.mu.Unlock()
	if start {
		go s.commitRounds()
	}
}

// appendAlone sends one batch's script call by itself (a cluster's, see
// AppendAsync), bounded like a round's: by its deadline and the store's
// Timeout.
func (s *ValkeyStore) appendAlone(a *appendCall) {
	defer s.wg.Done()
	c, err := s.conn()
	if err != nil {
		a.done(0, fmt.Errorf("valkey: append %q: %w", a.topic, err))
		return
	}
	deadline := a.deadline
	if d := time.Now().Add(s.timeout); d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(a.ctx, deadline)
	defer cancel()
	s.stamp(a, deadline)
	a.done(s.finishAppend(a, appendScript.Exec(ctx, c, a.keys, a.args), nil))
}

// commitRounds sends queued batches, a round at a time, until the queue is
// empty.
func (s *ValkeyStore) commitRounds() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		calls := s.queue
		switch {
		case len(calls) == 0:
			s.rounds--
			s.mu.Unlock()
			return
		case len(calls) > maxRoundCalls:
			calls, s.queue = calls[:maxRoundCalls:maxRoundCalls], calls[maxRoundCalls:]
		default:
			s.queue = nil
		}
		s.mu.Unlock()
		s.commit(calls)
	}
}

// commit runs one round: every call's script in one pipeline, then each
// call's done with its decoded reply. A script the server does not have
// cached (NOSCRIPT: restarted, SCRIPT FLUSH) is sent again as EVAL.
func (s *ValkeyStore) commit(calls []*appendCall) {
	c, err := s.conn()
	if err != nil {
		for _, a := range calls {
			a.done(0, fmt.Errorf("valkey: append %q: %w", a.topic, err))
		}
		return
	}
	// A batch whose context is done or whose deadline passed while it
	// waited for a round is answered at once and not sent. The round is
	// bounded by the store's timeout and by the latest deadline of the
	// batches in it: one about to expire does not cut the others short.
	// All of them come from topic actors with the same RELAY_STORE_TIMEOUT,
	// so a batch is bounded by its own deadline plus at most the spread of
	// one round's enqueue times.
	live := calls[:0]
	var latest time.Time
	now := time.Now()
	for _, a := range calls {
		err := a.ctx.Err()
		if err == nil && !now.Before(a.deadline) {
			err = context.DeadlineExceeded
		}
		if err != nil {
			a.done(0, fmt.Errorf("valkey: append %q: %w: %w", a.topic, messages.ErrUnavailable, err))
			continue
		}
		if a.deadline.After(latest) {
			latest = a.deadline
		}
		live = append(live, a)
	}
	if len(live) == 0 {
		return
	}
	calls = live
	deadline := now.Add(s.timeout)
	if latest.Before(deadline) {
		deadline = latest
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmds := make(valkey.Commands, len(calls))
	for i, a := range calls {
		own := a.deadline
		if deadline.Before(own) {
			own = deadline
		}
		s.stamp(a, own)
		cmds[i] = c.B().Evalsha().Sha1(appendSHA).Numkeys(int64(len(a.keys))).Key(a.keys...).Arg(a.args...).Build()
	}
	for i, res := range c.DoMulti(ctx, cmds...) {
		a := calls[i]
		if verr, ok := valkey.IsValkeyErr(res.Error()); ok && verr.IsNoScript() {
			res = c.Do(ctx, c.B().Eval().Script(appendLua).Numkeys(int64(len(a.keys))).Key(a.keys...).Arg(a.args...).Build())
		}
		a.done(s.finishAppend(a, res, nil))
	}
}
