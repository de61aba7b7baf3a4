package gateway

import (
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
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

// withRequestID echoes a client's X-Request-ID (if sane) or makes one, and
// sets it on the response, where requestID finds it: not in the request's
// context, which would copy the request (r.WithContext) on every publish.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > 128 {
			id = newRequestID()
		}
		w.Header()["X-Request-Id"] = []string{id} // the canonical form of X-Request-ID
		next.ServeHTTP(w, r)
	})
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

// routeOf returns the chi route pattern of r ("/api/v1/topics/{topic}/messages"),
// never the raw path, so it is safe as a metric label.
func routeOf(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

// accessLog logs every request at debug level, with its request id, and
// reports it to the observer.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := routeOf(r)
		d := time.Since(start)
		s.cfg.Observer.HTTPRequest(route, ww.Status(), d)
		if s.log.Enabled(r.Context(), slog.LevelDebug) { // skip building the attributes per request
			s.log.Debug("http request", "request_id", requestID(ww), "method", r.Method,
				"route", route, "status", ww.Status(), "duration", d)
		}
	})
}

// deadlines bounds a request in time (see Handler): the response must be
// written within HTTPWriteTimeout, and a body must arrive within
// HTTPReadTimeout. The read deadline is lifted when the body has been read
// to its end: net/http then reads the connection in the background to see a
// client go away, and an expired deadline there would cancel the request's
// context.
func (s *Server) deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		_ = rc.SetWriteDeadline(now.Add(s.cfg.HTTPWriteTimeout))
		if r.Body != nil && r.Body != http.NoBody {
			_ = rc.SetReadDeadline(now.Add(s.cfg.HTTPReadTimeout))
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the connection's read deadline at the body's end.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
