// Package actors is the relay's actor system on protoactor-go: the topic
// manager, one topic actor per topic, one connection actor per subscriber
// connection, their supervision, and the bounded per-connection Outbox.
//
// Ordering contract: a topic actor stores messages through the Store (group
// commit: while one write is in flight, later publishes queue and go out as
// the next batch), then acknowledges and delivers them in id order. Every
// subscriber of a topic sees that topic's messages in id order, each once.
//
// It imports messages and persistence; it never imports net/http or a
// WebSocket library: a connection reaches its socket only through Sink.
package actors
