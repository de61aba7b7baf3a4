package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/policy"
)

// The admin routes (docs/policies.md; shapes in policy/admin.go and
// actors.ConnectionsView):
//
//	GET /api/v1/admin/policies[?topic=T]  the set in force, or T's effective policy
//	PUT /api/v1/admin/policies            replace the set (JSON or YAML body)
//	GET /api/v1/admin/topics              the live topics, answered by their actors
//	GET /api/v1/admin/connections         connections by transport, slowest queues
//
// Access: with auth on, admins only (403 otherwise, 401 without a
// credential); with auth off, only clients on a loopback address (403
// otherwise), since anyone could otherwise retune the relay.

// adminTopicsTimeout bounds how long GET /api/v1/admin/topics waits for the
// topic actors' answers; an actor busy past it is left out of the list.
const adminTopicsTimeout = 2 * time.Second

func (s *Server) adminRoutes(r chi.Router) {
	r.Get("/api/v1/admin/policies", s.admin(s.handleGetPolicies))
	r.Put("/api/v1/admin/policies", s.admin(s.handlePutPolicies))
	r.Get("/api/v1/admin/topics", s.admin(s.handleAdminTopics))
	r.Get("/api/v1/admin/connections", s.admin(s.handleAdminConnections))
}

// admin wraps an admin handler with the access check.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.adminAccess(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		h(w, r)
	}
}

// adminAccess: admins when auth is on, loopback clients when it is off.
func (s *Server) adminAccess(r *http.Request) error {
	if s.authOn() {
		return s.requireAdmin(r)
	}
	if localClient(r) {
		return nil
	}
	return fmt.Errorf("%w: the admin routes answer only loopback clients, addressing the relay by a loopback name and sent from no other site, while auth is off", messages.ErrForbidden)
}

// localClient is the rule for who may use the routes that an admin's
// credential guards, while auth is off: a client on a loopback address
// that addresses the relay by a loopback name (Host: localhost, *.localhost
// or a loopback IP) and whose request, when a browser sent it, comes from
// a page of that same origin. The loopback address alone let any web page
// that the operator opened on the relay's host drive them: a cross-site
// simple POST (no preflight) or a DNS-rebound name that makes the page
// same-origin with the relay. Neither can name a loopback host.
func localClient(r *http.Request) bool {
	ip := net.ParseIP(hostOf(r.RemoteAddr))
	if ip == nil || !ip.IsLoopback() || !loopbackName(r.Host) {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// loopbackName reports whether host (host[:port]) names a loopback
// address: localhost, a name under .localhost (RFC 6761), or a loopback IP.
func loopbackName(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// policyHolder is the gateway's policy holder (Config.Policies, or its own).
func (s *Server) policyHolder() *policy.Holder { return s.cfg.Policies }

func (s *Server) setView() policy.SetView {
	l := s.policyHolder().Current()
	v := policy.SetView{Source: l.Source, Base: s.mgr.BasePolicy(), Policies: l.Set}
	if !l.LoadedAt.IsZero() {
		v.LoadedAt = messages.FormatTime(l.LoadedAt)
	}
	return v
}

func (s *Server) handleGetPolicies(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("topic") {
		writeJSON(w, http.StatusOK, s.setView())
		return
	}
	topic := q.Get("topic")
	if err := messages.ValidateTopic(topic); err != nil {
		s.writeError(w, r, err)
		return
	}
	matched := []string{}
	for _, rule := range s.mgr.Policies().Match(topic) {
		matched = append(matched, rule.Pattern)
	}
	writeJSON(w, http.StatusOK, policy.TopicPolicyView{Topic: topic, Matched: matched, Policy: s.mgr.EffectivePolicy(topic)})
}

// handlePutPolicies replaces the policy set with the body's document, as a
// whole: a bad document is 400 naming its lines and fields, and the set in
// force stays. Running topic actors apply the new set before their next
// message; no connection is cut.
func (s *Server) handlePutPolicies(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	format := policy.FormatOf(ct)
	if format == policy.Auto {
		s.writeError(w, r, fmt.Errorf("%w: Content-Type must be application/json or application/yaml", messages.ErrUnsupportedMedia))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policy.MaxDocumentSize))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: policy document over %d bytes or unreadable: %v", messages.ErrTooLarge, policy.MaxDocumentSize, err))
		return
	}
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	l, err := s.policyHolder().Replace(body, format, "api", time.Now())
	if err != nil {
		s.log.Warn("policies refused", "source", "api", "err", err)
		s.writeError(w, r, err)
		return
	}
	n := s.mgr.SetPolicies(l.Set)
	s.log.Info("policies replaced", "source", "api", "rules", l.Set.Len(), "topics", n)
	writeJSON(w, http.StatusOK, s.setView())
}

// ApplyPolicies installs the holder's current set in the actors: call it
// after reloading the holder (SIGHUP). It is ordered against PUT.
func (s *Server) ApplyPolicies(reload func(*policy.Holder) (policy.Loaded, error)) error {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	l, err := reload(s.policyHolder())
	if err != nil {
		return err
	}
	s.mgr.SetPolicies(l.Set)
	return nil
}

func (s *Server) handleAdminTopics(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), adminTopicsTimeout)
	defer cancel()
	writeJSON(w, http.StatusOK, s.mgr.TopicsView(ctx))
}

func (s *Server) handleAdminConnections(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.mgr.ConnectionsView())
}

// Anonymous reads (policy field anonymous_read). With auth on, a request
// without any credential on a read route that checks its topics (history,
// the WebSocket) is let through without a principal; each topic it reads
// must then have anonymous_read in its effective policy, else the answer is
// 401 (an UNAUTHORIZED error frame on the WebSocket). A credential that is
// present but bad is still 401 at once. SSE and long-poll are not among
// these routes: they do not authorize their topics per request here, so
// they keep requiring a credential.

const anonymousKey ctxKey = 160

func isAnonymous(ctx context.Context) bool {
	v, _ := ctx.Value(anonymousKey).(bool)
	return v
}

// anonymousReadPath reports whether r is a read whose handler authorizes
// its topics (authorizeTopics or permitSubscribe). A WebSocket upgrade
// without a credential is let in only while some rule of the policy set
// allows anonymous reads: otherwise it is refused with 401 at once, as
// before any policy.
func (s *Server) anonymousReadPath(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	p := r.URL.Path
	if p == "/ws" {
		return s.mgr.Policies().AnonymousReads()
	}
	return strings.HasPrefix(p, "/api/v1/topics/") && strings.HasSuffix(p, "/messages")
}

// allowAnonymous answers a caller without a credential: reads of topics
// whose effective policy sets anonymous_read, nothing else.
func (s *Server) allowAnonymous(op auth.Op, topics []string) error {
	for _, t := range topics {
		if op != auth.OpRead {
			return fmt.Errorf("%w: a credential is needed", messages.ErrUnauthorized)
		}
		if p := s.mgr.EffectivePolicy(t); p.AnonymousRead == nil || !*p.AnonymousRead {
			return fmt.Errorf("%w: topic %q needs a credential to read (its policy does not allow anonymous reads)", messages.ErrUnauthorized, t)
		}
	}
	return nil
}
