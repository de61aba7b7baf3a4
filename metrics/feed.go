package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulsar-relay/relay/actors"
)

// feedMetrics count the live feed across relay instances
// (actors.FeedObserver).
type feedMetrics struct {
	repairs        *prometheus.CounterVec
	repairsBy      map[string]prometheus.Counter
	linkUp         prometheus.Gauge
	noticesDropped prometheus.Counter
	topics         prometheus.Gauge
}

// knownRepairReasons are the reason label values of
// relay_gap_repairs_total.
var knownRepairReasons = []string{actors.RepairLink, actors.RepairGap, actors.RepairPosition, actors.RepairEpoch}

func newFeedMetrics(f factory) *feedMetrics {
	m := &feedMetrics{
		repairs: f.counterVec("relay_gap_repairs_total",
			"Topic catch-ups from the stream because the live feed did not bring every message, by reason (link: the pub/sub link was lost and is back; gap: a notice did not continue what was delivered; position: the periodic tip check found the stream ahead; epoch: the stream has a new incarnation).",
			"reason"),
		linkUp: f.gauge("relay_pubsub_link_up",
			"1 while every pub/sub link to the shared store is up (always 1 with the memory store), else 0."),
		noticesDropped: f.counter("relay_feed_notices_dropped_total",
			"Append notices not handed to a topic actor because its queue was full (the actor repairs from the stream)."),
		topics: f.gauge("relay_feed_topics",
			"Topics whose live channel this relay listens to (topics with local subscribers, and for a short while after the last one left)."),
	}
	m.repairsBy = counters(m.repairs, knownRepairReasons)
	m.linkUp.Set(1)
	return m
}

var _ actors.FeedObserver = (*Registry)(nil)

// GapRepaired implements actors.FeedObserver.
func (r *Registry) GapRepaired(reason string) { lookup(r.feed.repairsBy, r.feed.repairs, reason).Inc() }

// FeedLink implements actors.FeedObserver.
func (r *Registry) FeedLink(up bool) {
	if up {
		r.feed.linkUp.Set(1)
	} else {
		r.feed.linkUp.Set(0)
	}
}

// NoticeDropped implements actors.FeedObserver.
func (r *Registry) NoticeDropped() { r.feed.noticesDropped.Inc() }

// FeedTopics implements actors.FeedObserver.
func (r *Registry) FeedTopics(delta int) { r.feed.topics.Add(float64(delta)) }
