// Package persistence stores messages per topic: the Store interface
// (store.go), the in-process MemoryStore (memory.go, its sweeper in
// memory_sweep.go) and the ValkeyStore (valkey.go), idempotent appends
// (idempotency.go), the live feed that announces appends across relay
// instances (feed.go, feed_valkey.go), and one conformance suite
// (runConformance) that every Store passes, on a Valkey server and on a
// Valkey Cluster.
//
// It imports messages and nothing else from this repository; it never imports
// actors, gateway or net/http.
package persistence
