package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// RateLimited counts one request or WebSocket frame refused by a rate or
// concurrency limit (relay_rate_limited_total{route}); route is a fixed
// route path. Implements gateway.RateObserver.
func (r *Registry) RateLimited(route string) { r.rateLimited.WithLabelValues(route).Inc() }

// authSizes is relay_auth_entries{kind}: the entries of auth's bounded maps
// (token and topic caches, rate-limiter identities), read at scrape time.
type authSizes struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	fn   func() map[string]int
}

func newAuthSizes() *authSizes {
	return &authSizes{desc: prometheus.NewDesc("relay_auth_entries",
		"Entries in auth's bounded maps (token and topic caches, rate-limiter identities), by kind.", []string{"kind"}, nil)}
}

func (a *authSizes) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

func (a *authSizes) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	fn := a.fn
	a.mu.Unlock()
	if fn == nil {
		return
	}
	for kind, n := range fn() {
		ch <- prometheus.MustNewConstMetric(a.desc, prometheus.GaugeValue, float64(n), kind)
	}
}

// ObserveAuth makes relay_auth_entries report sizes() at each scrape
// (implements gateway.AuthObserver); a later call replaces an earlier one.
func (r *Registry) ObserveAuth(sizes func() map[string]int) {
	r.authSizes.mu.Lock()
	r.authSizes.fn = sizes
	r.authSizes.mu.Unlock()
}
