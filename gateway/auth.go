package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/messages"
)

// Authentication (when Config.Auth is enabled): every request but the
// public routes carries `Authorization: Bearer <jwt or API key>`; /ws and
// /api/v1/sse may instead carry `?token=<token>` or (WebSocket) the
// subprotocol pair `bearer, bearer.<token>`. The token is removed from the
// request URL before any handler or log sees it.

const principalKey ctxKey = 100 + iota

// publicPaths are served without a credential.
var publicPaths = map[string]bool{
	"/health": true, "/ready": true, "/metrics": true, "/openapi.json": true, "/docs": true,
	"/auth/login": true, "/auth/token/refresh": true, "/auth/logout": true,
	"/": true, "/ui": true, // the operator's page (ui.go): it holds no data
}

// streamPaths hold a request open (counted by RELAY_RATE_CONNECTIONS).
var streamPaths = map[string]bool{"/ws": true, "/api/v1/sse": true, "/api/v1/poll": true, "/messages/poll": true}

// principalOf returns the authenticated caller of r, or nil (auth off, or
// a public route).
func principalOf(ctx context.Context) *auth.Principal {
	p, _ := ctx.Value(principalKey).(*auth.Principal)
	return p
}

// authOn reports whether authentication is enabled.
func (s *Server) authOn() bool { return s.cfg.Auth.Enabled() }

// authenticate is the middleware: it verifies the credential (401 when
// missing or invalid), applies the publish rate limit and the per-identity
// stream limit, and puts the principal in the context.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.cfg.Auth
		if a == nil {
			next.ServeHTTP(w, r)
			return
		}
		path := r.URL.Path
		ctx := r.Context()
		var p *auth.Principal
		if a.Enabled() && !publicPaths[path] {
			tok := bearerToken(r, path == "/ws" || path == "/api/v1/sse")
			var err error
			if tok == "" && s.anonymousReadPath(r) {
				// No credential on a read: the topics' policies decide
				// (anonymous_read, see admin.go); no principal.
				ctx = context.WithValue(ctx, anonymousKey, true)
			} else if p, err = a.Authenticate(ctx, tok); err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="relay"`)
				s.writeError(w, r, err)
				return
			}
			if p != nil {
				ctx = context.WithValue(ctx, principalKey, p)
			}
		}
		if lim := a.Limits().Publish; lim != nil && r.Method == http.MethodPost && (path == "/api/v1/messages" || path == "/api/v1/messages/bulk") {
			var d auth.Decision
			if p != nil {
				d = lim.AllowWith(p.Identity(), p.RatePublish, p.RatePublishBurst, time.Now())
			} else {
				d = lim.Allow(identityOf(nil, r), time.Now())
			}
			if !s.rateHeaders(w, r, path, d) {
				return
			}
		}
		if streamPaths[path] {
			id := identityOf(p, r)
			release, d := a.Limits().Connections.Acquire(id)
			if !s.rateHeaders(w, r, path, d) {
				return
			}
			g := &streamGuard{release: release, identity: id, expires: s.expiryOf(p)}
			ctx = context.WithValue(ctx, streamGuardKey, g)
			defer g.done()
		}
		if ctx != r.Context() {
			r = r.WithContext(ctx) // a copy of the request: only when something was added
		}
		next.ServeHTTP(w, r)
	})
}

// identityOf is the rate-limiting identity: the principal, or the remote
// host (clientAddrKey: its IPv4 address or IPv6 /64) when anonymous.
func identityOf(p *auth.Principal, r *http.Request) string {
	if p != nil {
		return p.Identity()
	}
	return "addr:" + clientAddrKey(hostOf(r.RemoteAddr))
}

// bearerToken reads the credential: the Authorization header, then (when
// allowQuery) ?token= and the bearer.<token> WebSocket subprotocol. It
// removes the token from r.URL so that nothing downstream logs it.
func bearerToken(r *http.Request, allowQuery bool) string {
	query := ""
	if q := r.URL.Query(); q.Has("token") {
		query = q.Get("token")
		q.Del("token")
		r.URL.RawQuery = q.Encode()
		r.RequestURI = r.URL.RequestURI()
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	if !allowQuery {
		return ""
	}
	if query != "" {
		return query
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if t, ok := strings.CutPrefix(strings.TrimSpace(p), "bearer."); ok {
				return t
			}
		}
	}
	return ""
}

// ScrubURL returns u as a string with any token query parameter replaced,
// for log lines.
func ScrubURL(u *url.URL) string {
	if u == nil || !u.Query().Has("token") {
		return u.String()
	}
	c := *u
	q := c.Query()
	q.Set("token", "REDACTED")
	c.RawQuery = q.Encode()
	return c.String()
}

// authorizeTopics asks auth whether the request's caller may do op on every
// topic; nil when auth is off. The error wraps messages.ErrForbidden (or
// messages.ErrUnavailable): answer it with s.writeError (403) before
// waiting. For poll and SSE handlers:
//
//	if err := s.authorizeTopics(r, auth.OpRead, topics); err != nil { s.writeError(w, r, err); return }
func (s *Server) authorizeTopics(r *http.Request, op auth.Op, topics []string) error {
	if !s.authOn() {
		return nil
	}
	p := principalOf(r.Context())
	if p == nil && isAnonymous(r.Context()) {
		return s.allowAnonymous(op, topics)
	}
	for _, t := range topics {
		if err := s.cfg.Auth.Allow(r.Context(), p, op, t); err != nil {
			return err
		}
	}
	return nil
}

// tokenExpiry returns when a stream request's token expires, by expiryOf
// (zero: never, auth off, or not a stream path). An SSE stream should end
// at that time. authenticate computes it into the request's streamGuard,
// which a stream request always has when auth is configured.
func tokenExpiry(r *http.Request) time.Time {
	if g, ok := r.Context().Value(streamGuardKey).(*streamGuard); ok {
		return g.expires
	}
	return time.Time{}
}

// expiryOf is the one rule for when a credential held by a connection (a
// WebSocket, an SSE stream) runs out: its token's exp plus RELAY_JWT_LEEWAY,
// the moment auth.Service.Authenticate stops accepting it, so a connection
// lives exactly as long as an HTTP request with the same token would be
// served. Zero (never) for a nil principal and for an API key.
func (s *Server) expiryOf(p *auth.Principal) time.Time {
	if p == nil || p.ExpiresAt.IsZero() {
		return time.Time{}
	}
	return p.ExpiresAt.Add(s.cfg.Auth.Leeway())
}

// streamGuard holds a stream slot (RELAY_RATE_CONNECTIONS) for the
// request; a WebSocket takes it over (taken) and releases it when the
// connection ends, any other stream when its handler returns.
type streamGuard struct {
	release  func()
	identity string
	expires  time.Time // the credential's expiry (expiryOf); zero: never
	taken    atomic.Bool
}

const streamGuardKey ctxKey = 150

func (g *streamGuard) done() {
	if !g.taken.Load() {
		g.release()
	}
}

// subscriptions is the subscriptions quota (RELAY_RATE_SUBSCRIPTIONS), nil
// when off: each identity's share of the topic actors. A WebSocket's
// connection actor takes and gives it through a connQuota as topics are
// subscribed and dropped; an SSE stream or a long-poll, whose topics are
// fixed, holds its topics' count for its life (holdSubscriptions).
func (s *Server) subscriptions() *auth.Quota {
	if s.cfg.Auth == nil {
		return nil
	}
	return s.cfg.Auth.Limits().Subscriptions
}

// connQuota is one WebSocket's view of the subscriptions quota
// (actors.SubscriptionQuota): it keeps what the connection holds, so that
// an auth frame can move all of it to the user (moveTo). Take and Give
// come from the connection actor, moveTo from the read loop; mu orders
// them.
type connQuota struct {
	q    *auth.Quota
	mu   sync.Mutex
	id   string
	held int
}

func (c *connQuota) Take(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.q.Take(c.id, n) {
		return false
	}
	c.held += n
	return true
}

func (c *connQuota) Give(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.q.Give(c.id, n)
	c.held -= n
}

// moveTo counts what the connection holds under id from now on, or, when
// id's share has no room for it, changes nothing and reports false.
func (c *connQuota) moveTo(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == c.id {
		return true
	}
	if !c.q.Take(id, c.held) {
		return false
	}
	c.q.Give(c.id, c.held)
	c.id = id
	return true
}

// holdSubscriptions takes n of r's client's subscriptions quota for an SSE
// stream or a long-poll; release gives them back. Over the quota it is
// ErrRateLimited (429) and release is a no-op.
func (s *Server) holdSubscriptions(r *http.Request, n int) (release func(), err error) {
	q := s.subscriptions()
	if q == nil {
		return func() {}, nil
	}
	id := clientIdentity(r)
	if !q.Take(id, n) {
		return func() {}, fmt.Errorf("%w: over the topics one client may subscribe at once, over all its connections (RELAY_RATE_SUBSCRIPTIONS)", messages.ErrRateLimited)
	}
	return func() { q.Give(id, n) }, nil
}

// wsAuth is a WebSocket's credential: the principal (replaced by an auth
// frame), its rate-limit identity and its stream slot (both moved to the
// user by an anonymous connection's auth frame). A nil *wsAuth (auth and
// limits off) allows everything. identity and release belong to the
// connection's read loop (and its close after the loop); p is read by the
// expiry sweep too.
type wsAuth struct {
	s        *Server
	identity string
	p        atomic.Pointer[auth.Principal]
	release  func()
	quota    *connQuota // nil: RELAY_RATE_SUBSCRIPTIONS off
}

// wsAuthFor takes over the upgrade request's credential and stream slot.
func (s *Server) wsAuthFor(r *http.Request) *wsAuth {
	if s.cfg.Auth == nil {
		return nil
	}
	wa := &wsAuth{s: s, identity: identityOf(principalOf(r.Context()), r), release: func() {}}
	if q := s.subscriptions(); q != nil {
		wa.quota = &connQuota{q: q, id: wa.identity}
	}
	wa.p.Store(principalOf(r.Context()))
	if g, ok := r.Context().Value(streamGuardKey).(*streamGuard); ok && g.taken.CompareAndSwap(false, true) {
		wa.release = g.release
	}
	return wa
}

// close gives back the stream slot.
func (wa *wsAuth) close() {
	if wa != nil {
		wa.release()
	}
}

// expired reports whether the connection's token has expired at now
// (expiryOf: exp plus the leeway).
func (wa *wsAuth) expired(now time.Time) bool {
	if wa == nil {
		return false
	}
	exp := wa.s.expiryOf(wa.p.Load())
	return !exp.IsZero() && now.After(exp)
}

// ended returns why the connection's credential no longer holds at now
// ("token expired", "login revoked"), or "". It never waits on the auth
// store: a revocation counts once this relay made it or the login watcher
// (watchLogins) found it.
func (wa *wsAuth) ended(now time.Time) string {
	if wa.expired(now) {
		return "token expired"
	}
	if wa != nil && wa.s.authOn() && wa.s.cfg.Auth.KnownRevoked(wa.p.Load()) {
		return "login revoked"
	}
	return ""
}

// principal is the connection's credential: nil when auth is off or it
// connected without one.
func (wa *wsAuth) principal() *auth.Principal {
	if wa == nil || !wa.s.authOn() {
		return nil
	}
	return wa.p.Load()
}

// loginCheckTimeout bounds one revocation check of a stream's login.
const loginCheckTimeout = 2 * time.Second

// sseLogin is an SSE stream's entry for the login watcher: ended is
// closed (once) when the stream's login is found revoked.
type sseLogin struct {
	p     *auth.Principal
	ended chan struct{}
	once  sync.Once
}

// frameAllowed applies RELAY_RATE_WS_FRAMES; false means the frame was
// answered with a RATE_LIMIT_EXCEEDED error frame and must be dropped.
func (wa *wsAuth) frameAllowed(send func([]byte)) bool {
	if wa == nil {
		return true
	}
	d := wa.s.cfg.Auth.Limits().WSFrames.Allow(wa.identity, time.Now())
	if d.Allowed {
		return true
	}
	wa.s.rateLimited("/ws")
	send(messages.NewErrorFrame(messages.CodeRateLimitExceeded,
		fmt.Sprintf("over %d frames per second; retry in %s", d.Limit, d.RetryAfter.Round(time.Millisecond))))
	return false
}

// reauth handles {"type":"auth","token"}: the new token must verify, name
// the same subject, and not end the connection sooner than its current
// token would; it then replaces the old one (and its expiry). Otherwise the
// connection gets an UNAUTHORIZED error frame and keeps its old token.
//
// Why a replacement may not expire earlier (by expiryOf, exp plus leeway)
// than the current token: the SPEC's auth frame renews a credential "before
// it expires", i.e. it exists to extend the connection's life. A token
// that runs out sooner (a client re-sending a stale cached token, one
// already past its exp and only inside the clock-skew leeway, a replay)
// would otherwise silently shorten the life of a connection whose current
// token is still good, and the sweep would close it with 1008. A client
// that wants a shorter or narrower credential can reconnect with it. A
// token with the same expiry is accepted (re-sending the current token is
// harmless), as is any later one. A replacement already past its own
// exp+leeway is refused too; Authenticate refuses it already, the check
// here keeps the rule in one place whatever its cache does.
func (wa *wsAuth) reauth(token string, send func([]byte)) {
	if wa == nil || !wa.s.authOn() {
		return
	}
	p, err := wa.s.cfg.Auth.Authenticate(context.Background(), token)
	if err == nil {
		old := wa.p.Load()
		newExp := wa.s.expiryOf(p)
		switch {
		case old != nil && old.ID != p.ID:
			err = fmt.Errorf("%w: the token names another subject", messages.ErrUnauthorized)
		case !newExp.IsZero() && !time.Now().Before(newExp):
			err = fmt.Errorf("%w: token expired", messages.ErrUnauthorized)
		case old != nil && earlier(newExp, wa.s.expiryOf(old)):
			err = fmt.Errorf("%w: the token expires before the connection's current one", messages.ErrUnauthorized)
		}
	}
	if err != nil {
		send(messages.NewErrorFrame(messages.CodeUnauthorized, err.Error()))
		return
	}
	if id := p.Identity(); id != wa.identity {
		// An anonymous connection authenticating: from now on it counts as
		// its user's, not its address's. It takes one of the user's stream
		// slots and the user's share of subscriptions for what it holds, and
		// gives back the address's; or, with the user's slots or share
		// taken, stays anonymous (as an upgrade with the token would be 429).
		release, d := wa.s.cfg.Auth.Limits().Connections.Acquire(id)
		if !d.Allowed {
			wa.s.rateLimited("/ws")
			send(messages.NewErrorFrame(messages.CodeRateLimitExceeded,
				fmt.Sprintf("%s already holds %d streams; the connection stays anonymous", id, d.Limit)))
			return
		}
		if wa.quota != nil && !wa.quota.moveTo(id) {
			release()
			wa.s.rateLimited("/ws")
			send(messages.NewErrorFrame(messages.CodeRateLimitExceeded,
				"the user's share of subscriptions (RELAY_RATE_SUBSCRIPTIONS) has no room for this connection's; it stays anonymous"))
			return
		}
		wa.release()
		wa.release, wa.identity = release, id
	}
	wa.p.Store(p)
}

// earlier reports whether expiry a comes before expiry b, a zero expiry
// meaning never.
func earlier(a, b time.Time) bool {
	switch {
	case a.IsZero():
		return false
	case b.IsZero():
		return true
	}
	return a.Before(b)
}

// permitSubscribe returns the topics the connection may read; each other
// one gets a FORBIDDEN error frame (the same whether or not it exists).
func (wa *wsAuth) permitSubscribe(topics []string, send func([]byte)) []string {
	if wa == nil || !wa.s.authOn() {
		return topics
	}
	p := wa.p.Load()
	ok := topics[:0:0]
	for _, t := range topics {
		allow := func() error { return wa.s.cfg.Auth.Allow(context.Background(), p, auth.OpRead, t) }
		if p == nil { // connected without a credential: anonymous_read decides
			allow = func() error { return wa.s.allowAnonymous(auth.OpRead, []string{t}) }
		}
		if err := allow(); err != nil {
			code := messages.CodeSubscriptionError
			switch _, c := statusOf(err); c {
			case "FORBIDDEN":
				code = messages.CodeForbidden
			case "UNAUTHORIZED":
				code = messages.CodeUnauthorized
			}
			send(messages.NewErrorFrame(code, fmt.Sprintf("topic %q: %v", t, err)))
			continue
		}
		ok = append(ok, t)
	}
	return ok
}

// requireAdmin returns nil when auth is off or the caller is an admin, else
// an error wrapping messages.ErrForbidden (answer it with s.writeError).
// For the admin routes (/api/v1/admin/...).
func (s *Server) requireAdmin(r *http.Request) error {
	if !s.authOn() || principalOf(r.Context()).IsAdmin() {
		return nil
	}
	return fmt.Errorf("%w: admin permission needed", messages.ErrForbidden)
}
