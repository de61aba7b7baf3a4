// Package actors is the relay's actor system on protoactor-go: one topic
// actor per topic, one connection actor per subscriber connection (WebSocket,
// long-poll and SSE are the same actor with different Sinks), their
// supervision, and the bounded per-connection outbox.
//
// Files: manager.go (TopicManager: publish, shutdown, supervision),
// registry.go (topic name -> live topic actor, spawn on a miss, the topic
// cap), connect.go (Connect, Connection, Sink), protocol.go (what topic and
// connection actors say to each other), topic.go and topic_replay.go (the
// topic actor), connection.go and connection_replay.go (the connection
// actor), outbox.go (live and control frames toward one connection),
// ring.go (the hot ring), budget.go (the process's replay budget),
// feed.go (following a shared store's streams across relay instances).
//
// Shared store (Config.SharedStore, Valkey): other instances append to the
// same streams, so a topic actor with local subscribers follows its stream
// through the store's Feed: it watches the topic's channel (reference
// counted, left a little after its last local subscriber), answers
// subscribes only once it knows the stream's tip, and delivers announced
// appends that continue its last delivered id, its own included (never
// straight from its own writes, which could overtake another instance's
// append still being announced). Anything else (a notice that does not
// continue, a link that was down, a new epoch, a tip check that finds the
// stream ahead) is read from the stream after the last delivered id and
// delivered in stream order.
//
// Collaborators are narrow: a topic actor gets the store, its slice of
// Config, the registry as a topicHome, a poster to hand results back to
// itself, the observer and a logger; a connection actor gets the registry as
// a topicRouter, a poster, the replay budget, its slice of Config, the
// observer and a logger. No actor holds the TopicManager.
//
// Ordering contract: a topic actor stores messages through the Store (group
// commit: while one write is in flight, later publishes queue and go out as
// the next batch), then acknowledges and delivers them in id order. Every
// subscriber of a topic sees that topic's messages in id order, each once;
// a replay joins live delivery without a gap or a repeat.
//
// Blocking: no Receive waits on I/O except a connection actor's writes to
// its own Sink; store writes and reads run on goroutines and come back as
// messages.
//
// It imports messages and persistence; it never imports net/http or a
// WebSocket library: a connection reaches its socket only through Sink.
package actors
