package gateway

import (
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/messages"
)

// RateObserver is implemented by an Observer that counts rate-limit
// refusals (relay_rate_limited_total{route}); optional.
type RateObserver interface {
	RateLimited(route string)
}

// AuthObserver is implemented by an Observer that reports the sizes of
// auth's bounded maps (relay_auth_entries{kind}); optional.
type AuthObserver interface {
	ObserveAuth(sizes func() map[string]int)
}

// rateLimited counts one refusal on route (a fixed route path).
func (s *Server) rateLimited(route string) {
	if o, ok := s.cfg.Observer.(RateObserver); ok {
		o.RateLimited(route)
	}
}

// rateHeaders sets X-RateLimit-Limit/-Remaining/-Reset from d (when a limit
// applies) and, when d refuses, answers 429 RATE_LIMIT_EXCEEDED with
// Retry-After and returns false.
func (s *Server) rateHeaders(w http.ResponseWriter, r *http.Request, route string, d auth.Decision) bool {
	if d.Limit > 0 {
		h := w.Header()
		h.Set("X-RateLimit-Limit", strconv.Itoa(d.Limit))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(d.Remaining))
		h.Set("X-RateLimit-Reset", strconv.Itoa(ceilSeconds(d.Reset)))
	}
	if d.Allowed {
		return true
	}
	s.rateLimited(route)
	w.Header().Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(d.RetryAfter))))
	s.writeError(w, r, d.Err())
	return false
}

func ceilSeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// CORS for the REST API, under the RELAY_ALLOWED_ORIGINS rules of /ws: a
// request from the relay's own origin or a listed host pattern gets
// Access-Control-Allow-Origin; a preflight (OPTIONS with
// Access-Control-Request-Method) is answered 204 here, or 403 for an origin
// not allowed. Requests without Origin (servers, CLIs) are untouched.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		h := w.Header()
		h.Add("Vary", "Origin")
		if !s.originAllowed(r, origin) {
			if preflight {
				s.writeError(w, r, errOrigin)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-Request-ID")
		if !preflight {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, X-Request-ID, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

var errOrigin = wrapForbidden("origin not allowed")

func wrapForbidden(msg string) error { return &forbiddenErr{msg} }

type forbiddenErr struct{ msg string }

func (e *forbiddenErr) Error() string { return messages.ErrForbidden.Error() + ": " + e.msg }
func (e *forbiddenErr) Unwrap() error { return messages.ErrForbidden }

// originAllowed applies coder/websocket's rule: the request's own host, or
// a pattern of AllowedOrigins matched (path.Match, case-insensitive) against
// the origin's host, or "*".
func (s *Server) originAllowed(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, pat := range s.cfg.AllowedOrigins {
		if pat == "*" {
			return true
		}
		target := u.Host
		if strings.Contains(pat, "://") {
			target = origin
		}
		if ok, _ := path.Match(strings.ToLower(pat), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}
