package gateway

import (
	"bufio"
	"crypto/rand"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
)

// ctxKey types the gateway's request context keys.
type ctxKey int

// requestID returns the request's id, set on its response by withRequestID.
func requestID(w http.ResponseWriter) string {
	if v := w.Header()["X-Request-Id"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// requestIDPrefix makes this process's request ids differ from another's.
var (
	requestIDPrefix = func() uint64 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32
	}()
	requestIDSeq atomic.Uint64
)

// newRequestID returns 16 hex digits: a random per-process prefix and a
// counter. Ids are unique (per process, for 2^32 requests), not secret: a
// counter costs a fraction of a crypto/rand read per request.
func newRequestID() string {
	var b [16]byte
	v := requestIDPrefix | requestIDSeq.Add(1)&0xffffffff
	const digits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// routeOf returns the route pattern of r ("/api/v1/topics/{topic}/messages"):
// chi's, or a hot route's path (router.ServeHTTP); never the raw path, so
// it is safe as a metric label.
func routeOf(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	if r.Pattern != "" {
		return r.Pattern
	}
	return "unmatched"
}

// frame is the outermost middleware; it does, with one allocation per
// request (an exchange), what would otherwise be two middlewares with
// four: it echoes a client's X-Request-ID (if sane) or makes one and sets
// it on the response, where requestID finds it (not in the request's
// context, which would copy the request); and it reports every request to
// the observer and, at debug level, to the log. The request's deadlines
// are the http.Server's (see HTTPServer).
func (s *Server) frame(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		x := &exchange{ResponseWriter: w}
		var id string
		// The map, not Header.Get: Get canonicalizes its key, and for
		// "X-Request-ID" that allocates on every request; net/http stores
		// the request's keys canonical already.
		if v := r.Header["X-Request-Id"]; len(v) > 0 {
			id = v[0]
		}
		if !echoableRequestID(id) {
			id = newRequestID()
		}
		x.id[0] = id
		w.Header()["X-Request-Id"] = x.id[:] // the canonical form of X-Request-ID
		next.ServeHTTP(x, r)
		route := routeOf(r)
		d := time.Since(start)
		status := x.statusOr200()
		s.cfg.Observer.HTTPRequest(route, status, d)
		if s.log.Enabled(r.Context(), slog.LevelDebug) { // skip building the attributes per request
			s.log.Debug("http request", "request_id", id, "method", r.Method,
				"route", route, "status", status, "duration", d)
		}
	})
}

// exchange is frame's state for one request: the writer handed down the
// chain, which records the status. Handlers reach the real writer through
// Unwrap (http.ResponseController) or the Flush and Hijack it passes on.
type exchange struct {
	http.ResponseWriter
	status int       // first status written; 0 before
	id     [1]string // the X-Request-Id header's value slice
}

func (x *exchange) WriteHeader(code int) {
	if x.status == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		x.status = code
	}
	x.ResponseWriter.WriteHeader(code)
}

func (x *exchange) Write(b []byte) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	return x.ResponseWriter.Write(b)
}

// Flush implements http.Flusher (SSE).
func (x *exchange) Flush() {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	_ = http.NewResponseController(x.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker (WebSocket upgrades).
func (x *exchange) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(x.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the real writer.
func (x *exchange) Unwrap() http.ResponseWriter { return x.ResponseWriter }

// statusOr200 is the status the client got: 200 when the handler wrote
// nothing.
func (x *exchange) statusOr200() int {
	if x.status == 0 {
		return http.StatusOK
	}
	return x.status
}

// echoableRequestID reports whether a client's X-Request-ID is echoed
// rather than replaced: not empty and at most 128 bytes (net/http has
// refused control characters in it already; the listener's canned 503,
// which bypasses net/http, checks them itself).
func echoableRequestID(id string) bool { return id != "" && len(id) <= 128 }
