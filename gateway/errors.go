package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

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
	case errors.Is(err, messages.ErrUnauthorized):
		return http.StatusUnauthorized, "UNAUTHORIZED"
	case errors.Is(err, messages.ErrForbidden):
		return http.StatusForbidden, "FORBIDDEN"
	case errors.Is(err, messages.ErrNotFound):
		return http.StatusNotFound, "NOT_FOUND"
	case errors.Is(err, messages.ErrMethodNotAllowed):
		return http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED"
	case errors.Is(err, messages.ErrConflict):
		return http.StatusConflict, "CONFLICT"
	case errors.Is(err, messages.ErrUpgradeRequired):
		// The SPEC has no code of its own for 426: the request is not a
		// WebSocket handshake.
		return http.StatusUpgradeRequired, "INVALID_REQUEST"
	case errors.Is(err, messages.ErrIdempotencyKeyReused):
		return http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED"
	case errors.Is(err, messages.ErrRateLimited):
		return http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED"
	case errors.Is(err, messages.ErrOverloaded), errors.Is(err, messages.ErrUnavailable),
		errors.Is(err, messages.ErrTooManyTopics):
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
		s.log.Error("request failed", "request_id", requestID(w), "route", routeOf(r), "status", status, "err", err)
	case status >= 500:
		// A 503 is a refusal (full topic, store down, shutdown): under a
		// flood there is one per request, so it stays at debug; the store's
		// own failures are logged once per write, and metrics count refusals.
		s.log.Debug("request refused", "request_id", requestID(w), "route", routeOf(r), "status", status, "err", err)
	}
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1") // unless the refusal's own wait is known (rateHeaders, the upgrade pacer)
	}
	writeJSON(w, status, messages.ErrorBody{Error: code, Message: msg, RequestID: requestID(w)})
}

// acceptWebSocket is websocket.Accept with the relay's refusals: when the
// request is not a WebSocket handshake (426, 400, 405) or its Origin is not
// allowed (403), the client gets the SPEC error body instead of
// coder/websocket's text. On success the connection stops counting against
// MaxHTTPConnections, and the deadlines the request had are lifted from the
// hijacked socket (the WebSocket's own timeouts take over). w must be able to
// hijack.
func (s *Server) acceptWebSocket(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	rec := &acceptRecorder{ResponseWriter: w}
	c, err := websocket.Accept(rec, r, s.acceptOptions())
	if err == nil {
		return c, nil
	}
	if rec.status == 0 || rec.status == http.StatusSwitchingProtocols { // failed after the hijack: nothing to answer
		return nil, err
	}
	var sentinel error
	switch rec.status {
	case http.StatusForbidden:
		sentinel = fmt.Errorf("%w: origin %s is not allowed on /ws", messages.ErrForbidden, messages.QuotePrefix(r.Header.Get("Origin")))
	case http.StatusUpgradeRequired:
		sentinel = fmt.Errorf("%w: /ws takes a WebSocket handshake (Connection: Upgrade, Upgrade: websocket)", messages.ErrUpgradeRequired)
	case http.StatusMethodNotAllowed:
		sentinel = fmt.Errorf("%w: a WebSocket handshake is a GET", messages.ErrMethodNotAllowed)
	case http.StatusBadRequest:
		sentinel = fmt.Errorf("%w: not a valid WebSocket handshake", messages.ErrInvalid)
	default:
		sentinel = fmt.Errorf("websocket accept (%d): %w", rec.status, err)
	}
	if rec.status == http.StatusMethodNotAllowed {
		rec.ResponseWriter.Header().Set("Allow", http.MethodGet)
	}
	s.writeError(rec.ResponseWriter, r, sentinel)
	return nil, err
}

// acceptRecorder holds back the error answer websocket.Accept writes, so
// acceptWebSocket can write the SPEC body instead; a 101 goes through.
type acceptRecorder struct {
	http.ResponseWriter
	status int
}

func (a *acceptRecorder) WriteHeader(code int) {
	a.status = code
	if code == http.StatusSwitchingProtocols {
		a.ResponseWriter.WriteHeader(code)
	}
}

func (a *acceptRecorder) Write(b []byte) (int, error) {
	if a.status == http.StatusSwitchingProtocols {
		return a.ResponseWriter.Write(b)
	}
	return len(b), nil // the refusal's text body, replaced
}

// Hijack hands the socket over, marking it a WebSocket for the connection
// limits and clearing the request's deadlines.
func (a *acceptRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := a.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot hijack")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	markUpgraded(conn)
	return conn, brw, nil
}

// setJSONType marks an answer's body as JSON. It sets the header's map
// entry to one shared value slice: net/http only reads a header's values
// (WriteHeader copies them), and Header.Set would check the key's case and
// make a one-element slice on every answer.
func setJSONType(h http.Header) { h["Content-Type"] = jsonContentType }

var jsonContentType = []string{"application/json"}

func writeJSON(w http.ResponseWriter, status int, v any) {
	setJSONType(w.Header())
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
