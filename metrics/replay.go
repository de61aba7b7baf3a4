package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/pulsar-relay/relay/actors"
)

var (
	_ actors.ReplayObserver  = (*Registry)(nil)
	_ actors.HotTierObserver = (*Registry)(nil)
)

// ReplayBytes implements actors.ReplayObserver.
func (r *Registry) ReplayBytes(delta int) { r.replayBytes.Add(float64(delta)) }

// ReplayWaited implements actors.ReplayObserver.
func (r *Registry) ReplayWaited() { r.replayWaits.Inc() }

// ObserveHotTier implements actors.HotTierObserver: relay_hot_tier_bytes
// reports bytes() at each scrape. Registered once; a second manager on the
// same registry keeps the first gauge.
func (r *Registry) ObserveHotTier(bytes func() int64) {
	_ = r.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_hot_tier_bytes",
		Help: "Bytes the topic actors' hot rings hold together: entries, payloads or frames, metadata (bounded by RELAY_HOT_TIER_BYTES).",
	}, func() float64 { return float64(bytes()) }))
}
