// Package metrics counts what the relay does, for Prometheus: a Registry
// implements actors.Observer and gateway.Observer, InstrumentStore measures
// a persistence.Store, and Registry.Handler serves GET /metrics.
//
// Every metric lives in the Registry's own prometheus.Registry (with the Go
// and process collectors), never in the global default registry, and never
// in protoactor's OpenTelemetry metrics, which slow messaging down many
// times over.
//
// Cardinality is bounded: the topic label takes at most MaxTopics distinct
// values (first come, first served; RELAY_METRICS_MAX_TOPICS), every other
// topic counts under topic="_other"; routes are chi patterns, transports,
// kinds, reasons and storage ops are small fixed sets.
//
// Hot path: Registry.Topic resolves a topic's counter and histogram once
// (when a topic actor or a subscription starts) and returns a handle, so a
// delivery does no label lookup and no allocation. The delivery latency
// histogram is sharded (see latencyHistogram): subscriptions of one topic,
// running on different cores, observe into different shards, so an
// observation is two uncontended atomic adds.
//
// It imports actors and persistence for their interfaces; it never imports
// gateway (it satisfies gateway.Observer structurally) or the actor system's
// internals.
package metrics
