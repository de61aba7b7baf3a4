package messages

import "errors"

// Sentinel errors. Other packages wrap them with context
// (fmt.Errorf("...: %w", ErrInvalid)); the gateway maps them to HTTP statuses
// and WebSocket error codes in one place.
var (
	// ErrInvalid marks input that breaks the wire contract (400, INVALID_REQUEST).
	ErrInvalid = errors.New("invalid request")
	// ErrTooLarge marks a body or frame over RELAY_MAX_MESSAGE_SIZE (413).
	ErrTooLarge = errors.New("payload too large")
	// ErrUnsupportedMedia marks a publish whose Content-Type is not JSON (415).
	ErrUnsupportedMedia = errors.New("unsupported media type")
	// ErrNotFound marks a missing resource (404).
	ErrNotFound = errors.New("not found")
	// ErrUnavailable marks a store that cannot take or serve a message right
	// now, or a relay that is shutting down (503). Nothing was acknowledged.
	ErrUnavailable = errors.New("service unavailable")
	// ErrOverloaded marks a topic whose queue is full (503 with Retry-After):
	// the publish was refused before it was queued.
	ErrOverloaded = errors.New("topic overloaded")
	// ErrUnauthorized marks a request without a valid credential (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden marks a credential that may not do this (403). It never
	// says whether the topic exists.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict marks a resource that exists already (409).
	ErrConflict = errors.New("conflict")
	// ErrIdempotencyKeyReused marks an Idempotency-Key seen before with
	// another request body (422).
	ErrIdempotencyKeyReused = errors.New("idempotency key reused")
	// ErrRateLimited marks a client over its rate or concurrency limit (429).
	ErrRateLimited = errors.New("rate limit exceeded")
	// ErrMethodNotAllowed marks a route that exists with another method (405).
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrTooManyTopics marks a process or connection over its topic budget.
	ErrTooManyTopics = errors.New("too many topics")
	// ErrUnknownType marks a WebSocket frame with an unknown "type".
	ErrUnknownType = errors.New("unknown message type")
)

// ErrUpgradeRequired marks a plain HTTP request on the WebSocket endpoint
// (426).
var ErrUpgradeRequired = errors.New("upgrade required")

// ClientText is what a client may be told about err: its full text when err
// is the client's own fault (ErrInvalid, ErrSubscription, ErrUnknownType,
// ErrTooLarge), else only the sentinel's text, so that a store's address or
// a dial error stays in the log.
func ClientText(err error) string {
	for _, own := range []error{ErrInvalid, ErrSubscription, ErrUnknownType, ErrTooLarge, ErrUnsupportedMedia} {
		if errors.Is(err, own) {
			return err.Error()
		}
	}
	for _, s := range []error{ErrUnavailable, ErrOverloaded, ErrNotFound, ErrUnauthorized, ErrForbidden,
		ErrConflict, ErrRateLimited, ErrTooManyTopics, ErrMethodNotAllowed, ErrIdempotencyKeyReused} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "internal error"
}
