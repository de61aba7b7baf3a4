package persistence

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// Store keeps each topic's messages in id order.
//
// Concurrency: every method is safe for concurrent use. The relay calls Append
// for one topic from one goroutine at a time (the topic actor's writer), but
// a Store must not depend on that for correctness.
type Store interface {
	// Append stores batch, in order, at the end of topic. It assigns each
	// stored message its ID (strictly increasing within the topic, of the form
	// <unix_ms>-<seq>, monotonic even if the wall clock steps back) and
	// returns n: batch[:n] are stored and have their IDs set; batch[n:] are
	// not stored, and err says why. A message is never half-written.
	// Timestamp, Payload, Metadata and ExpiresAt are kept as given.
	// Errors wrap messages.ErrUnavailable when the store cannot take writes.
	//
	// Idempotency: a message whose IdempotencyKey was already appended to
	// topic within Limits.IdempotencyWindow (also earlier in the same batch,
	// or by another process sharing the store) is not stored again; Append
	// sets its ID and Timestamp to the first one's and Duplicate, or
	// Conflict when its RequestHash differs. It counts as handled in n.
	// The check and the append are one atomic step: concurrent repeats
	// store one message.
	Append(ctx context.Context, topic string, batch []messages.Message) (n int, err error)

	// Range returns up to limit messages of topic with ids after `after`
	// (exclusive), in ascending id order, skipping expired ones and ones older
	// than the retention. Page.Truncated is set when messages after `after`
	// were trimmed away before they could be read, and when a non-zero
	// `after` predates the stream's current incarnation (older than its
	// first id, or the topic has no stream now: the history it referred to
	// is gone). Page.Epoch is the incarnation ("" when there is no stream).
	//
	// A call looks at no more than scanBudget(limit) entries (expired ones
	// included); when it stops early the page is short and Page.Next is
	// where to continue. An empty page with a zero Next is the end.
	Range(ctx context.Context, topic string, after messages.ID, limit int) (Page, error)

	// RevRange returns up to limit messages of topic with ids before
	// `before` (exclusive; the zero ID means "from the newest"), in
	// descending id order, skipping expired and out-of-retention ones, in
	// Page.Messages. It bounds its scan as Range does: a short page with a
	// non-zero Page.Next continues with before = Next. Truncated is not set.
	RevRange(ctx context.Context, topic string, before messages.ID, limit int) (Page, error)

	// Tips returns, for each of topics, the newest id ever assigned in its
	// stream (even if trimmed since) and its epoch, in one round trip; a
	// topic without a stream maps to the zero Tip. The scale-out position
	// check compares it with what was delivered.
	Tips(ctx context.Context, topics []string) (map[string]Tip, error)

	// NewFeed returns a Feed that calls h with the notices of other
	// appends to the topics it is subscribed to (see Feed; a store that
	// lives in one process returns one that never calls h). The caller
	// closes it before the store.
	NewFeed(h FeedHandler) (Feed, error)

	// Ping reports whether the store can serve requests now; the error
	// is the reason for /ready.
	Ping(ctx context.Context) error

	// Close releases the store's resources. Calls after Close fail.
	Close() error
}

// Page is one page of Range.
type Page struct {
	Messages []messages.Message
	// Truncated: the point asked for is older than the oldest retained
	// message, so some messages after it are gone.
	Truncated bool
	// Epoch identifies the incarnation of the topic's stream (random, made
	// with the stream; a memory store makes new ones at start). A resume id
	// that predates the current incarnation sets Truncated.
	Epoch string
	// Next, when not zero, is where the next Range call should continue:
	// the scan stopped early (it skips at most a bounded number of expired
	// entries per call), so a short page does not mean the end.
	Next messages.ID
}

// Tip is where a topic's stream ends: the newest id it assigned and its
// epoch (both zero when there is no stream).
type Tip struct {
	Last  messages.ID
	Epoch string
}

// MinScan is the least number of entries one Range or RevRange call looks at
// before it may return a short page with Page.Next set.
const MinScan = 1000

// scanBudget is how many entries one Range/RevRange call of limit looks at
// at most: 4 x limit, at least MinScan.
func scanBudget(limit int) int { return max(4*limit, MinScan) }

// newEpoch returns a random epoch id: 16 hex digits. An epoch must differ
// from the incarnations before it, not be secret: math/rand/v2's
// generator (randomly seeded, no system call) instead of crypto/rand, since
// the Valkey store makes one for every append in case it starts an
// incarnation.
func newEpoch() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// Limits bound what a Store retains per topic. The zero value keeps
// everything forever.
type Limits struct {
	// MaxMessages caps messages per topic (RELAY_MAX_MESSAGES_PER_TOPIC,
	// default 1,000,000); 0 means no cap. Valkey trims approximately (~).
	MaxMessages int
	// Retention drops messages older than this (RELAY_RETENTION, default
	// 24h); 0 means keep forever.
	Retention time.Duration
	// IdempotencyWindow is how long an Idempotency-Key is remembered per
	// topic; 0 means messages.IdempotencyWindow (10 min, the SPEC's). Tests
	// shorten it.
	IdempotencyWindow time.Duration
}

type limitsKey struct{}

// WithLimits returns ctx carrying a topic's own retention for one Append:
// the store trims with l.MaxMessages and l.Retention instead of its own
// (0 keeps that dimension forever); IdempotencyWindow stays the store's.
// The topic actors pass their topic's policy this way.
func WithLimits(ctx context.Context, l Limits) context.Context {
	return context.WithValue(ctx, limitsKey{}, l)
}

// appendLimits are the limits an Append trims with: ctx's (WithLimits), or
// own.
func appendLimits(ctx context.Context, own Limits) Limits {
	if l, ok := ctx.Value(limitsKey{}).(Limits); ok {
		l.IdempotencyWindow = own.IdempotencyWindow
		return l
	}
	return own
}

func (l Limits) idempotencyWindow() time.Duration {
	if l.IdempotencyWindow > 0 {
		return l.IdempotencyWindow
	}
	return messages.IdempotencyWindow
}

// Inline is implemented by a store whose Append never waits on I/O or on
// another process (the memory store): only on its own short locks. A topic
// actor may then call Append on its own goroutine instead of starting a
// writer goroutine per batch and waiting for its result as a message.
type Inline interface {
	AppendsInline() bool
}

// AsyncAppender is implemented by a store that takes an append without the
// caller waiting for it (the Valkey store: it sends the batches of many
// topics together). AppendAsync stores batch as Append does and calls done
// once with what Append would have returned, usually from another
// goroutine, possibly from the caller's before AppendAsync returns. The
// batch belongs to the store until done is called.
//
// The append is bounded by deadline as Append is by a context deadline: a
// batch still queued at deadline is answered with an error wrapping
// messages.ErrUnavailable and not sent. deadline is a time rather than a
// context per batch because a topic actor makes one per write: a context
// with a deadline is four allocations and a timer armed and stopped, on
// every batch. ctx carries values (a topic's Limits) and cancellation; its
// own deadline, if earlier, applies too. A zero deadline adds none.
type AsyncAppender interface {
	AppendAsync(ctx context.Context, topic string, batch []messages.Message, deadline time.Time, done func(n int, err error))
}

// AppendAsync hands batch to s's AppendAsync when s is an AsyncAppender
// (a decorator forwards to the store it wraps), or else calls Append on a
// goroutine of its own with deadline on its context; done is called once
// with the result.
func AppendAsync(s Store, ctx context.Context, topic string, batch []messages.Message, deadline time.Time, done func(n int, err error)) {
	if a, ok := s.(AsyncAppender); ok {
		a.AppendAsync(ctx, topic, batch, deadline, done)
		return
	}
	go func() {
		if !deadline.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		done(s.Append(ctx, topic, batch))
	}()
}

// AppendsInline reports whether s, or the store a decorator wraps (its
// Unwrap() Store method), is Inline. A decorator that may block in Append
// (a fault injector that stalls) must not have Unwrap.
func AppendsInline(s Store) bool {
	for s != nil {
		if in, ok := s.(Inline); ok {
			return in.AppendsInline()
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			return false
		}
		s = u.Unwrap()
	}
	return false
}
