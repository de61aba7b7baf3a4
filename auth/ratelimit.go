package auth

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/pulsar-relay/relay/messages"
)

// Decision is one rate-limit answer, with what the X-RateLimit-* headers
// report: Limit is the burst, Remaining the requests left now, Reset the time
// until the bucket is full again, RetryAfter the wait before the next request
// can pass (0 when allowed).
type Decision struct {
	Allowed    bool
	Limit      int
	Remaining  int
	Reset      time.Duration
	RetryAfter time.Duration
}

// Err returns nil when allowed, else an error wrapping messages.ErrRateLimited.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return fmt.Errorf("%w: retry in %s", messages.ErrRateLimited, d.RetryAfter.Round(time.Millisecond))
}

// Limiter is a token bucket per identity (golang.org/x/time/rate). It tracks
// at most max identities: when full, identities whose bucket is full again
// (idle) are forgotten, then, if need be, arbitrary ones.
//
// Concurrency: safe for concurrent use.
type Limiter struct {
	r     rate.Limit
	burst int
	max   int

	mu   sync.Mutex
	m    map[string]*rate.Limiter
	last time.Time // latest now seen: callers race, and x/time/rate counts a step back as new time
}

// NewLimiter returns a limiter of perSecond with burst; nil when perSecond
// <= 0 (a nil *Limiter allows everything).
func NewLimiter(perSecond float64, burst, maxIdentities int) *Limiter {
	if perSecond <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	if maxIdentities <= 0 {
		maxIdentities = 100_000
	}
	return &Limiter{r: rate.Limit(perSecond), burst: burst, max: maxIdentities, m: map[string]*rate.Limiter{}}
}

// Allow takes one token for id at now.
func (l *Limiter) Allow(id string, now time.Time) Decision {
	return l.AllowWith(id, 0, 0, now)
}

// AllowWith is Allow with a per-identity rate and burst that replace the
// limiter's when perSecond > 0 (per-user overrides).
func (l *Limiter) AllowWith(id string, perSecond float64, burst int, now time.Time) Decision {
	if l == nil {
		return Decision{Allowed: true}
	}
	r, b := l.r, l.burst
	if perSecond > 0 {
		r, b = rate.Limit(perSecond), burst
		if b <= 0 {
			b = max(1, int(math.Ceil(perSecond)))
		}
	}
	l.mu.Lock()
	if now.Before(l.last) {
		now = l.last
	}
	l.last = now
	lim := l.m[id]
	if lim == nil || lim.Limit() != r || lim.Burst() != b {
		if lim == nil && len(l.m) >= l.max {
			l.evict(now)
		}
		lim = rate.NewLimiter(r, b)
		l.m[id] = lim
	}
	res := lim.ReserveN(now, 1)
	d := Decision{Limit: b}
	if delay := res.DelayFrom(now); !res.OK() || delay > 0 {
		res.CancelAt(now)
		d.RetryAfter = max(delay, time.Duration(float64(time.Second)/float64(r)))
	} else {
		d.Allowed = true
	}
	tokens := lim.TokensAt(now)
	l.mu.Unlock()
	d.Remaining = max(0, int(tokens))
	d.Reset = time.Duration((float64(b) - tokens) / float64(r) * float64(time.Second))
	return d
}

// evict forgets idle identities (full buckets), then arbitrary ones until a
// tenth of the room is free. Called with l.mu held.
func (l *Limiter) evict(now time.Time) {
	for id, lim := range l.m {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(l.m, id)
		}
	}
	for id := range l.m {
		if len(l.m) < l.max-l.max/10 {
			break
		}
		delete(l.m, id)
	}
}

// Len is the number of identities tracked (for a gauge).
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// Quota bounds a count per identity: the topics it subscribes at once over
// all its connections. Safe for concurrent use. Only identities holding
// some are tracked, so its map is bounded by the relay's connections. A nil
// *Quota allows everything.
type Quota struct {
	max int
	mu  sync.Mutex
	m   map[string]int
}

// Take adds n to id's count and reports true, or, when that would pass
// the maximum, changes nothing and reports false.
func (q *Quota) Take(id string, n int) bool {
	if q == nil || n <= 0 {
		return true
	}
	_, ok := q.take(id, n)
	return ok
}

// take is Take, also returning what id held before.
func (q *Quota) take(id string, n int) (held int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	held = q.m[id]
	if held+n > q.max {
		return held, false
	}
	q.m[id] = held + n
	return held, true
}

// Give takes n off id's count (what Take added and is no longer held).
func (q *Quota) Give(id string, n int) {
	if q == nil || n <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if held := q.m[id] - n; held > 0 {
		q.m[id] = held
	} else {
		delete(q.m, id)
	}
}

// Len is the number of identities holding some (for a gauge).
func (q *Quota) Len() int {
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.m)
}

// Concurrency counts concurrent streams (WebSocket, SSE, poll) per identity:
// a Quota of one per stream. Only identities with a stream open are
// tracked, so its map is bounded by the relay's connection limits.
type Concurrency struct{ q Quota }

func newConcurrency(max int) *Concurrency {
	return &Concurrency{q: Quota{max: max, m: map[string]int{}}}
}

// Acquire takes a slot for id; release gives it back (call it once). The
// error wraps messages.ErrRateLimited when id has max streams open. A nil
// *Concurrency allows everything.
func (c *Concurrency) Acquire(id string) (release func(), d Decision) {
	if c == nil {
		return func() {}, Decision{Allowed: true}
	}
	max := c.q.max
	n, ok := c.q.take(id, 1)
	if !ok {
		return nil, Decision{Limit: max, RetryAfter: time.Second, Reset: time.Second}
	}
	var once sync.Once
	return func() { once.Do(func() { c.q.Give(id, 1) }) }, Decision{Allowed: true, Limit: max, Remaining: max - n - 1}
}

// Limits are the relay's per-identity limits; a nil field is off.
type Limits struct {
	Publish     *Limiter
	WSFrames    *Limiter
	Connections *Concurrency
	// Subscriptions bounds the topics an identity subscribes at once.
	Subscriptions *Quota
	// LoginUser and LoginAddr limit login attempts per username and per
	// remote address.
	LoginUser *Limiter
	LoginAddr *Limiter
}

func newLimits(c RateConfig) *Limits {
	l := &Limits{
		Publish:  NewLimiter(c.Publish, c.PublishBurst, c.MaxIdentities),
		WSFrames: NewLimiter(c.WSFrames, 0, c.MaxIdentities),
	}
	if c.Connections > 0 {
		l.Connections = newConcurrency(c.Connections)
	}
	if c.Subscriptions > 0 {
		l.Subscriptions = &Quota{max: c.Subscriptions, m: map[string]int{}}
	}
	if c.LoginPerMinute > 0 {
		per := float64(c.LoginPerMinute) / 60
		l.LoginUser = NewLimiter(per, c.LoginPerMinute, c.MaxIdentities)
		l.LoginAddr = NewLimiter(per, c.LoginPerMinute, c.MaxIdentities)
	}
	return l
}

// Len is the number of identities with a stream open.
func (c *Concurrency) Len() int {
	if c == nil {
		return 0
	}
	return c.q.Len()
}
