// Package loadgen is the relay's load generator: `relay bench` calls Main.
//
// One run opens N WebSocket subscribers over T topics (subscriber i listens to
// topic i mod T), publishes M messages from P concurrent HTTP publishers
// (message j goes to topic j mod T, optionally paced to a total rate), waits a
// bounded grace period for deliveries, and reports publishes/s, deliveries/s,
// lost, duplicated and out-of-order deliveries, publish-to-receive latency
// percentiles, connect time, and, given the server's pid, its CPU seconds per
// delivery and its resident memory. A hold phase keeps the connections idle to
// measure memory per connection.
//
// Back-pressure: publishes answered 503 or 429 are "refused", counted apart
// from failures with their own answer-time percentiles (a run with refusals
// is clean only with --allow-refusals). --slow-subscribers N adds relay
// subscribers to topic 0 that never read, with a 64 KB socket receive buffer,
// to drive the relay's slow-consumer policy; they are in no figure, and the
// report says how each ended (open, or closed and with which close code).
//
// Relay subscribers may use another transport (--transport): poll runs one
// POST /api/v1/poll loop per subscriber (since = the last id it received,
// starting at the topic's newest message), sse reads one GET /api/v1/sse
// stream per subscriber.
//
// Two drivers speak the servers' own wire protocols: the relay's (POST
// /api/v1/messages, WebSocket /ws) and Centrifugo v6's JSON protocol (POST
// /api/publish with an API key, WebSocket /connection/websocket), so one
// command measures both on the same workload.
//
// Each payload is {"seq":S,"sent_ns":T,"pub":K}: S counts the messages that
// publisher K sent to that topic (from 0), T is the send time in nanoseconds
// since the run started on this process's monotonic clock (the receiver is the
// same process, so no clock sync is needed and the number stays small enough to
// survive a float64 round trip). A publisher sends its next message only after
// the previous one was answered, so per topic and publisher the server must
// deliver in seq order; anything else counts as out of order.
//
// Safety: every target must be 127.0.0.1 or localhost, and the dialer refuses
// any non-loopback address after resolution. Every loop is bounded in count
// and in time.
//
// The package imports nothing from this repository: it measures the relay
// only through its wire contract, exactly as it measures Centrifugo.
package loadgen
