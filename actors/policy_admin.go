package actors

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsar-relay/relay/policy"
)

// The admin views (GET /api/v1/admin/topics and /connections): answered by
// the actors themselves, each topic actor with a message and a reply
// channel, so nothing outside an actor reads its state.

// topicInfoRequest asks a topic actor for its admin view; the reply channel
// is buffered for every actor asked, so an actor never blocks on it.
type topicInfoRequest struct {
	reply chan<- policy.TopicView
}

// transportNames maps Connect's transport to the admin view's.
var transportNames = map[string]string{"ws": "websocket", "sse": "sse", "poll": "poll"}

func (t *topicActor) answerInfo(r *topicInfoRequest) {
	now := time.Now()
	subs := map[string]int{"websocket": 0, "sse": 0, "poll": 0}
	count := func(s *subscription) {
		name := transportNames[s.transport]
		if name == "" {
			name = s.transport
		}
		subs[name]++
	}
	for _, s := range t.subs {
		count(s)
	}
	for s := range t.replaying {
		count(s)
	}
	v := policy.TopicView{
		Topic: t.name, Subscribers: subs,
		PublishesPerSec:  t.stats.published.perSec(now, t.stats.since),
		DeliveriesPerSec: t.stats.delivered.perSec(now, t.stats.since),
		Restarts:         t.stats.restarts,
		Policy:           t.pol.Merge(policy.Policy{}), // a copy
	}
	if !t.lastDelivered.IsZero() {
		v.LastID = t.lastDelivered.String()
	}
	r.reply <- v
}

// TopicsView asks every live topic actor for its view and returns the
// answers that arrived before ctx ended (an actor busy past it is left
// out), sorted by topic.
func (m *TopicManager) TopicsView(ctx context.Context) policy.TopicsView {
	var topics []string
	m.reg.each(func(topic string, _ *topicEntry) { topics = append(topics, topic) })
	reply := make(chan policy.TopicView, len(topics))
	asked := 0
	for _, topic := range topics {
		if m.reg.routeExisting(topic, &topicInfoRequest{reply: reply}) {
			asked++
		}
	}
	out := policy.TopicsView{Topics: make([]policy.TopicView, 0, asked)}
	for ; asked > 0; asked-- {
		select {
		case v := <-reply:
			out.Topics = append(out.Topics, v)
		case <-ctx.Done():
			asked = 1 // stop
		}
	}
	sort.Slice(out.Topics, func(i, j int) bool { return out.Topics[i].Topic < out.Topics[j].Topic })
	return out
}

// topicStats are a topic actor's counts for the admin view.
type topicStats struct {
	published, delivered rate60
	restarts             int
	since                time.Time
}

func newTopicStats() topicStats { return topicStats{since: time.Now()} }

// rate60 counts events per wall-clock second over the last minute.
type rate60 struct {
	sec [60]int64
	n   [60]int64
}

func (r *rate60) add(now time.Time, n int) {
	s := now.Unix()
	i := s % 60
	if r.sec[i] != s {
		r.sec[i], r.n[i] = s, 0
	}
	r.n[i] += int64(n)
}

// perSec averages the last minute, or the time since since if shorter.
func (r *rate60) perSec(now, since time.Time) float64 {
	s := now.Unix()
	var sum int64
	for i := range r.sec {
		if age := s - r.sec[i]; age >= 0 && age < 60 {
			sum += r.n[i]
		}
	}
	window := min(60, max(1, now.Sub(since).Seconds()))
	return float64(sum) / window
}

// ConnectionsView is GET /api/v1/admin/connections: the connections of
// this instance by transport, and the ones with the most queued.
type ConnectionsView struct {
	Total       int               `json:"total"`
	ByTransport map[string]int    `json:"by_transport"` // "websocket", "sse", "poll"
	Slowest     []ConnectionQueue `json:"slowest"`      // most queued frames first, at most 10
}

// ConnectionQueue is one connection's outgoing queue.
type ConnectionQueue struct {
	ID          string `json:"id"` // the session id of its "subscribed" frames
	Transport   string `json:"transport"`
	Queued      int    `json:"queued"`
	QueuedBytes int    `json:"queued_bytes"`
}

// connIndex is the set of live connection actors (bounded by the gateway's
// connection limits).
type connIndex struct {
	m sync.Map // *connActor -> *atomic.Pointer[outbox] (set once the outbox exists)
	n atomic.Int64
}

// add indexes c before it is spawned; c removes itself when it stops. The
// caller stores c's outbox in the returned pointer once it has one.
func (x *connIndex) add(c *connActor) *atomic.Pointer[outbox] {
	p := new(atomic.Pointer[outbox])
	x.m.Store(c, p)
	x.n.Add(1)
	c.onStop = func() {
		if _, ok := x.m.LoadAndDelete(c); ok {
			x.n.Add(-1)
		}
	}
	return p
}

// ConnectionsView reads every live connection's queue depth.
func (m *TopicManager) ConnectionsView() ConnectionsView {
	v := ConnectionsView{ByTransport: map[string]int{"websocket": 0, "sse": 0, "poll": 0}}
	all := []ConnectionQueue{}
	m.connIdx.m.Range(func(k, ob any) bool {
		c := k.(*connActor)
		name := transportNames[c.transport]
		if name == "" {
			name = c.transport
		}
		v.Total++
		v.ByTransport[name]++
		if o := ob.(*atomic.Pointer[outbox]).Load(); o != nil {
			q, b := o.depth()
			all = append(all, ConnectionQueue{ID: c.id, Transport: name, Queued: q, QueuedBytes: b})
		}
		return true
	})
	sort.Slice(all, func(i, j int) bool {
		if all[i].Queued != all[j].Queued {
			return all[i].Queued > all[j].Queued
		}
		return all[i].QueuedBytes > all[j].QueuedBytes
	})
	v.Slowest = all[:min(len(all), 10)]
	return v
}
