// Package persistence stores messages per topic: the Store interface, the
// in-process MemoryStore (the default) and the ValkeyStore, and one
// conformance suite (RunConformance) that every Store passes.
//
// It imports messages and nothing else from this repository; it never imports
// actors, gateway or net/http.
package persistence
