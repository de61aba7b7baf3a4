// Package messages holds the relay's plain data: stored messages and their
// ids, REST request and response bodies, WebSocket frames, validation, and the
// sentinel errors every other package wraps.
//
// It imports nothing from this repository; everything else imports it.
package messages
