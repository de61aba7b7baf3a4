// Package gateway is the relay's net/http side: chi routes for publish,
// history, health and readiness, the WebSocket endpoint, request ids, and the
// one function (statusOf) that maps errors to HTTP statuses.
//
// It talks to actors through actors.TopicManager and actors.Connection and
// implements actors.Sink for WebSocket; it never reaches into an actor.
package gateway
