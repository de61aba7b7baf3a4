// Package e2e holds the relay's system tests: each starts whole relays (the
// production wiring in internal/app, on 127.0.0.1:0; and Valkey-compatible
// servers where needed) and drives them over real sockets. Handler-level and
// actor-level tests stay beside their packages.
package e2e
