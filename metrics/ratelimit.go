package metrics

// RateLimited counts one request or WebSocket frame refused by a rate or
// concurrency limit (relay_rate_limited_total{route}); route is a fixed
// route path. Implements gateway.RateObserver.
func (r *Registry) RateLimited(route string) { r.rateLimited.WithLabelValues(route).Inc() }
