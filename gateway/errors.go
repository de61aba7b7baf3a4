package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/pulsar-relay/relay/messages"
)

// statusOf maps an error to its HTTP status and SPEC error code. It is the
// only place that does: handlers return wrapped sentinel errors.
func statusOf(err error) (int, string) {
	var maxBytes *http.MaxBytesError
	switch {
	case errors.Is(err, messages.ErrTooLarge), errors.As(err, &maxBytes):
		return http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE"
	case errors.Is(err, messages.ErrUnsupportedMedia):
		return http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"
	case errors.Is(err, messages.ErrInvalid), errors.Is(err, messages.ErrSubscription):
		return http.StatusBadRequest, "INVALID_REQUEST"
	case errors.Is(err, messages.ErrNotFound):
		return http.StatusNotFound, "NOT_FOUND"
	case errors.Is(err, messages.ErrUnauthorized):
		return http.StatusUnauthorized, "UNAUTHORIZED"
	case errors.Is(err, messages.ErrForbidden):
		return http.StatusForbidden, "FORBIDDEN"
	case errors.Is(err, messages.ErrConflict):
		return http.StatusConflict, "CONFLICT"
	case errors.Is(err, messages.ErrRateLimited):
		return http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED"
	case errors.Is(err, messages.ErrOverloaded), errors.Is(err, messages.ErrUnavailable):
		return http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE"
	}
	return http.StatusInternalServerError, "INTERNAL_ERROR"
}

// frameCodeOf maps a WebSocket frame error to its error frame code.
func frameCodeOf(err error) string {
	switch {
	case errors.Is(err, messages.ErrUnknownType):
		return messages.CodeUnknownMessageType
	case errors.Is(err, messages.ErrSubscription):
		return messages.CodeSubscriptionError
	case errors.Is(err, messages.ErrUnauthorized):
		return messages.CodeUnauthorized
	}
	return messages.CodeInvalidMessage
}

// writeError answers with the SPEC error body. 5xx details stay in the log;
// the client gets the sentinel's text.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusOf(err)
	msg := err.Error()
	switch {
	case errors.Is(err, messages.ErrOverloaded):
		msg = "topic is overloaded; retry later"
	case status >= 500: // details (addresses, causes) stay in the log
		msg = http.StatusText(status) + "; retry later"
	}
	switch {
	case status == http.StatusInternalServerError:
		s.log.Error("request failed", "request_id", requestID(r.Context()), "route", routeOf(r), "status", status, "err", err)
	case status >= 500:
		// A 503 is a refusal (full topic, store down, shutdown): under a
		// flood there is one per request, so it stays at debug; the store's
		// own failures are logged once per write, and metrics count refusals.
		s.log.Debug("request refused", "request_id", requestID(r.Context()), "route", routeOf(r), "status", status, "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, messages.ErrorBody{Error: code, Message: msg, RequestID: requestID(r.Context())})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// isJSON accepts application/json (with parameters) and an absent type.
func isJSON(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
