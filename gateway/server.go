package gateway

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
	"github.com/pulsar-relay/relay/policy"
)

// DefaultPublishTimeout is Config.PublishTimeout's default.
const DefaultPublishTimeout = 5 * time.Second

// Config tunes the gateway. The zero value of every field means its default,
// named in the field's comment.
type Config struct {
	// MaxMessageSize bounds a request body and a WebSocket frame
	// (RELAY_MAX_MESSAGE_SIZE, default 1 MiB).
	MaxMessageSize int64
	// MaxConnections bounds concurrent WebSocket connections
	// (RELAY_MAX_CONNECTIONS, default 10,000); over it the upgrade gets 503.
	MaxConnections int
	// PublishTimeout bounds a publish from arrival to answer
	// (RELAY_PUBLISH_TIMEOUT, default DefaultPublishTimeout: the store's own
	// timeout twice over, for queueing behind an earlier write).
	PublishTimeout time.Duration
	// SubscribeIdleLimit closes a connection that has not subscribed within
	// it (default 60s).
	SubscribeIdleLimit time.Duration
	// PingInterval is how often the server pings each WebSocket (default
	// 30s); PongTimeout how long it waits for the pong (default 10s).
	PingInterval time.Duration
	PongTimeout  time.Duration
	// WriteTimeout drops a peer that takes longer to accept one frame
	// (default 10s).
	WriteTimeout time.Duration
	// MaxTopicsPerSubscribe bounds the topics of one subscribe frame
	// (default 100).
	MaxTopicsPerSubscribe int
	// WSReadRate paces what one WebSocket connection may send
	// (RELAY_WS_READ_RATE, default 100): frames per second, a frame costing
	// one per started 16 KiB, with a burst of twice that (at least one
	// largest frame). Over it the relay stops reading the connection until
	// the pace allows (TCP pushes back on the client); nothing is dropped.
	// It bounds the CPU one connection's pings, subscribes or junk frames
	// can take, with or without credentials (RELAY_RATE_WS_FRAMES is the
	// per-identity limit on top, which answers with an error frame).
	WSReadRate float64
	// WSUpgradeRate paces new WebSocket connections per client IP address
	// (RELAY_WS_UPGRADE_RATE, default DefaultWSUpgradeRate), with a burst
	// of half a second's worth: an upgrade over it waits its turn (up to 5
	// s, then 429 with Retry-After). Behind a proxy every client shares its
	// address: raise it there.
	WSUpgradeRate float64
	// AllowedOrigins are the browser origins allowed on /ws
	// (RELAY_ALLOWED_ORIGINS): host patterns, or "*" for any; empty allows
	// only the relay's own origin.
	AllowedOrigins []string
	// MaxBulkSize bounds a bulk publish body (RELAY_MAX_BULK_SIZE, default
	// 4 MiB); over it the answer is 413. Each item is still bounded by
	// MaxMessageSize.
	MaxBulkSize int64
	// MaxTTL is the longest ttl a publish may ask for (default
	// messages.DefaultMaxTTL); the relay sets it to RELAY_RETENTION.
	MaxTTL time.Duration
	// HistoryMaxBytes caps the encoded messages of one history page
	// (RELAY_HISTORY_MAX_BYTES, default 4 MiB): a page that would exceed it
	// ends early with a next_cursor (it always holds at least one message).
	HistoryMaxBytes int64
	// HTTPReadTimeout is how long a request, headers and body, may take to
	// arrive (RELAY_HTTP_READ_TIMEOUT, default 30s), counted from its first
	// byte (the headers have 10s of their own).
	HTTPReadTimeout time.Duration
	// HTTPWriteTimeout is how long a non-WebSocket response may take, from
	// the end of the request headers to its last byte
	// (RELAY_HTTP_WRITE_TIMEOUT, default 30s). See Handler for the routes
	// that lift it.
	HTTPWriteTimeout time.Duration
	// MaxHTTPConnections bounds the TCP connections the listener holds that
	// are not WebSockets (RELAY_MAX_HTTP_CONNECTIONS, default 4096); over
	// it a new connection gets a canned 503 and is closed, without net/http
	// ever serving it (see Listener). WebSockets count against
	// MaxConnections instead, from their upgrade.
	MaxHTTPConnections int
	// MaxHTTPConnectionsPerClient bounds those connections per client IP
	// address (RELAY_MAX_HTTP_CONNECTIONS_PER_CLIENT, default 1024, at most
	// MaxHTTPConnections), so that one client cannot keep the others out.
	// Behind a proxy every client has the proxy's address: raise it to
	// MaxHTTPConnections there.
	MaxHTTPConnectionsPerClient int
	// MaxBodyBytesInFlight bounds the request body bytes being read or
	// handled at once, over all requests (RELAY_MAX_BODY_BYTES_IN_FLIGHT,
	// default 64 MiB); a request whose body does not fit gets 503 at once.
	// A body counts its Content-Length, or its limit when it has none.
	MaxBodyBytesInFlight int64
	// Version is reported by /health.
	Version string
	// Observer receives request counts (default: none).
	Observer Observer
	// Metrics serves /metrics when set.
	Metrics http.Handler
	// Consumers tunes long-poll and SSE (see poll.go).
	Consumers ConsumersConfig
	// Auth authenticates, authorizes and rate-limits (gateway/auth.go);
	// nil: everything is open and unlimited.
	Auth *auth.Service
	// Policies holds the per-topic policy set the admin routes show and
	// replace (gateway/admin.go); nil: a fresh, empty one.
	Policies *policy.Holder
}

// Observer receives the gateway's counts (the metrics package implements
// it). Methods must be cheap and safe for concurrent use.
type Observer interface {
	HTTPRequest(route string, status int, d time.Duration)
	Connections(transport string, delta int)
	Received(n int)
}

// LimitObserver receives the counts of the gateway's budgets. Config.Observer
// may implement it (metrics.Registry does); methods must be cheap and safe
// for concurrent use.
type LimitObserver interface {
	// HTTPConnections moves the count of non-WebSocket connections held.
	HTTPConnections(delta int)
	// HTTPConnectionRefused counts a connection refused over
	// MaxHTTPConnections.
	HTTPConnectionRefused()
	// BodyBytesInFlight moves the count of request body bytes reserved.
	BodyBytesInFlight(delta int64)
	// WSUpgradeClients sets how many clients' upgrade paces are held.
	WSUpgradeClients(n int)
	// LimitHit counts a request cut or refused by a budget: "body_budget"
	// (503), "decode_slots" (503: a large body waited for a decode slot
	// past the publish timeout), "login_slots" (503: a login waited for a
	// password-check slot as long), "history_bytes" (a history page ended
	// early by HistoryMaxBytes).
	LimitHit(reason string)
}

type nopObserver struct{}

func (nopObserver) HTTPRequest(string, int, time.Duration) {}
func (nopObserver) Connections(string, int)                {}
func (nopObserver) Received(int)                           {}
func (nopObserver) HTTPConnections(int)                    {}
func (nopObserver) HTTPConnectionRefused()                 {}
func (nopObserver) BodyBytesInFlight(int64)                {}
func (nopObserver) LimitHit(string)                        {}
func (nopObserver) WSUpgradeClients(int)                   {}

func (c Config) withDefaults() Config {
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 1 << 20
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 10_000
	}
	size := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	size(&c.MaxBulkSize, 4<<20)
	size(&c.HistoryMaxBytes, 4<<20)
	size(&c.MaxBodyBytesInFlight, 64<<20)
	// One body of either kind must always fit the budget.
	c.MaxBodyBytesInFlight = max(c.MaxBodyBytesInFlight, c.MaxBulkSize, c.MaxMessageSize)
	if c.MaxHTTPConnections <= 0 {
		c.MaxHTTPConnections = 4096
	}
	if c.MaxHTTPConnectionsPerClient <= 0 {
		c.MaxHTTPConnectionsPerClient = 1024
	}
	c.MaxHTTPConnectionsPerClient = min(c.MaxHTTPConnectionsPerClient, c.MaxHTTPConnections)
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	dur(&c.PublishTimeout, DefaultPublishTimeout)
	dur(&c.SubscribeIdleLimit, 60*time.Second)
	dur(&c.PingInterval, 30*time.Second)
	dur(&c.PongTimeout, 10*time.Second)
	dur(&c.WriteTimeout, 10*time.Second)
	dur(&c.HTTPReadTimeout, 30*time.Second)
	dur(&c.HTTPWriteTimeout, 30*time.Second)
	if c.MaxTopicsPerSubscribe <= 0 {
		c.MaxTopicsPerSubscribe = 100
	}
	if c.WSReadRate <= 0 {
		c.WSReadRate = DefaultWSReadRate
	}
	if c.WSUpgradeRate <= 0 {
		c.WSUpgradeRate = DefaultWSUpgradeRate
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Policies == nil {
		c.Policies = &policy.Holder{}
	}
	return c
}

// limitObserver is the observer's LimitObserver side, or one that does
// nothing.
func (c Config) limitObserver() LimitObserver {
	if lo, ok := c.Observer.(LimitObserver); ok {
		return lo
	}
	return nopObserver{}
}

// Server is the HTTP and WebSocket front of the relay.
//
// Concurrency: safe for concurrent use; Close is called once, at shutdown.
type Server struct {
	cfg   Config
	lim   LimitObserver
	mgr   *actors.TopicManager
	store persistence.Store
	log   *slog.Logger

	draining  atomic.Bool
	inflight  atomic.Int64  // request body bytes reserved (MaxBodyBytesInFlight)
	decoding  chan struct{} // decode slots of large bodies (decodeSlot)
	checking  chan struct{} // password checks at once (handleLogin)
	upgrades  *upgradePacer // WebSocket upgrades per client (WSUpgradeRate)
	conns     sync.Map      // *wsConn -> struct{}
	sseLogins sync.Map      // *sseLogin -> struct{}: SSE streams the login watcher checks
	nconns    atomic.Int64
	stop      chan struct{}
	stopOnce  sync.Once

	mu      sync.Mutex // orders track against Close
	closing bool
	wg      sync.WaitGroup // WebSocket goroutines, closers, pings, the sweeper

	consumers *consumers // long-poll waiters and SSE streams
	policyMu  sync.Mutex // orders policy replacements (admin.go)
}

// New returns a gateway serving mgr's topics; it starts the background
// goroutines that Close stops: the sweeper (pings, idle, write-timeout and
// expiry checks) and, with auth on, the login watcher (watchLogins).
func New(cfg Config, mgr *actors.TopicManager, store persistence.Store, logger *slog.Logger) *Server {
	s := &Server{cfg: cfg.withDefaults(), mgr: mgr, store: store, log: logger, stop: make(chan struct{})}
	s.lim = s.cfg.limitObserver()
	s.decoding = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))
	s.checking = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))
	s.upgrades = newUpgradePacer(s.cfg.WSUpgradeRate)
	s.consumers = newConsumers(s.cfg.Consumers)
	s.wg.Add(1)
	go s.sweep()
	if s.authOn() {
		s.wg.Add(1)
		go s.watchLogins()
	}
	return s
}

// Handler returns the relay's routes.
//
// Deadlines (served by HTTPServer): every request gets a write deadline of
// HTTPWriteTimeout for its whole response, from the end of its headers,
// and a read deadline of HTTPReadTimeout from its first byte until the
// body's end (net/http lifts it there, so an expired read deadline never
// cancels a handler's context afterwards). A WebSocket upgrade clears both
// on the hijacked connection. A handler that holds its response open on
// purpose (long-poll, SSE) must lift or extend the write deadline itself:
//
//	rc := http.NewResponseController(w)
//	_ = rc.SetWriteDeadline(time.Time{})              // SSE: none
//	_ = rc.SetWriteDeadline(time.Now().Add(wait + s.cfg.HTTPWriteTimeout)) // long-poll
//
// A route that exists with another method answers 405 with Allow; HEAD is
// served on /health and /ready.
//
// The hot routes, the POSTs a producer or a Galaxy client makes per message
// (publish, bulk, long-poll), run the same middlewares and handlers without
// chi's routing (see router): chi copies every request to carry its route
// context (r.WithContext), about a tenth of a publish's CPU
// (bench/NOTES.md). They are registered with chi as well, which serves
// their paths' other methods (405, CORS preflights) and lists them.
func (s *Server) Handler() http.Handler {
	mw := chi.Middlewares{s.frame, s.cors, s.authenticate}
	r := &router{Mux: chi.NewRouter(), mw: mw, hot: map[string]http.Handler{}}
	r.Use(mw...)
	s.authRoutes(r)
	r.hotPost("/api/v1/messages", s.handlePublish)
	r.hotPost("/api/v1/messages/bulk", s.handleBulk)
	r.Get("/api/v1/topics/{topic}/messages", s.handleHistory)
	r.Get("/health", s.handleHealth)
	r.Head("/health", s.handleHealth)
	r.Get("/ready", s.handleReady)
	r.Head("/ready", s.handleReady)
	r.Get("/ws", s.handleWS)
	s.consumerRoutes(r)
	s.adminRoutes(r)
	s.uiRoutes(r)
	if s.cfg.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", s.cfg.Metrics)
	}
	r.NotFound(func(w http.ResponseWriter, req *http.Request) {
		s.writeError(w, req, errNotFound)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		allowed := allowedMethods(r.Mux, req.URL.Path)
		if len(allowed) == 0 { // a method chi does not know, on a path that does not exist
			s.writeError(w, req, errNotFound)
			return
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.writeError(w, req, fmt.Errorf("%w: %s on %s; allowed: %s", messages.ErrMethodNotAllowed,
			messages.QuotePrefix(req.Method), messages.QuotePrefix(req.URL.Path), strings.Join(allowed, ", ")))
	})
	return r
}

// router is the relay's chi Mux with its hot routes served first: a POST
// to one of their exact paths goes straight to its handler, wrapped in the
// same middlewares, without chi's per-request route context (a copy of the
// request). Everything else, those paths' other methods included, is
// chi's. Read-only once Handler returns.
type router struct {
	*chi.Mux
	mw  chi.Middlewares
	hot map[string]http.Handler // POST handlers by exact path, with mw
}

// hotPost registers h for POST path with chi and as a hot route.
func (r *router) hotPost(path string, h http.HandlerFunc) {
	r.Post(path, h)
	r.hot[path] = r.mw.HandlerFunc(h)
}

// ServeHTTP serves a hot route itself and hands the rest to chi. A hot
// request's Pattern is set to its path (in place, as net/http's ServeMux
// does), where routeOf finds it. A path with escapes (RawPath set) is left
// to chi, which routes on the escaped form.
func (r *router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPost && req.URL.RawPath == "" {
		if h := r.hot[req.URL.Path]; h != nil {
			req.Pattern = req.URL.Path
			h.ServeHTTP(w, req)
			return
		}
	}
	r.Mux.ServeHTTP(w, req)
}

// routeMethods are the methods a 405's Allow header may list.
var routeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// allowedMethods lists the methods router serves at path, asking the router
// itself, so the answer follows whatever routes are registered.
func allowedMethods(router *chi.Mux, path string) []string {
	var allowed []string
	for _, m := range routeMethods {
		if router.Match(chi.NewRouteContext(), m, path) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// track counts a new WebSocket goroutine in s.wg, unless Close has begun.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.draining.Load() {
		return false
	}
	s.wg.Add(1)
	return true
}

// Drain marks the relay as shutting down: /ready answers 503 and new
// WebSocket upgrades are refused.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.consumers.drain()
}

// Close closes every WebSocket with 1001 (going away), stops their
// connection actors and the background goroutine, and waits for them, up to
// ctx. Call it after http.Server.Shutdown has let in-flight requests finish.
func (s *Server) Close(ctx context.Context) {
	s.Drain()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	s.conns.Range(func(k, _ any) bool {
		k.(*wsConn).Close(actors.CloseGoingAway, "server shutting down")
		return true
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("shutdown: WebSocket handlers still running", "err", ctx.Err())
	}
}

// HTTPServer returns the http.Server that serves Handler: a 10 s limit on
// request headers, HTTPReadTimeout on the whole request, HTTPWriteTimeout
// on its response (see Handler) and 120 s on idle keep-alive connections.
// Serve it on Listener(ln).
//
// The deadlines are net/http's, not set per request by a middleware: it
// sets them anyway (to zero when unset), so its own calls cost nothing
// more, and it lifts the read deadline itself at the body's end, when it
// starts reading the connection in the background to see a client go
// away. A middleware doing the same spent two more deadline changes per
// request (a timer added and removed) on the publish path.
func (s *Server) HTTPServer(errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadTimeout:       s.cfg.HTTPReadTimeout,
		WriteTimeout:      s.cfg.HTTPWriteTimeout,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
	}
}
