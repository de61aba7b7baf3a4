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
	// ErrUnknownType marks a WebSocket frame with an unknown "type".
	ErrUnknownType = errors.New("unknown message type")
)
