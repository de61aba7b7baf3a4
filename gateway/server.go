package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/persistence"
)

// Config tunes the gateway. The zero value of every field means its default,
// named in the field's comment.
type Config struct {
	// MaxMessageSize bounds a request body and a WebSocket frame
	// (RELAY_MAX_MESSAGE_SIZE, default 1 MiB).
	MaxMessageSize int64
	// MaxConnections bounds concurrent WebSocket connections
	// (RELAY_MAX_CONNECTIONS, default 10,000); over it the upgrade gets 503.
	MaxConnections int
	// PublishTimeout bounds a publish from arrival to answer (default 2s,
	// beyond the store's own timeout only by queueing).
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
	// AllowedOrigins are the browser origins allowed on /ws
	// (RELAY_ALLOWED_ORIGINS): host patterns, or "*" for any; empty allows
	// only the relay's own origin.
	AllowedOrigins []string
	// Version is reported by /health.
	Version string
	// Observer receives request counts (default: none).
	Observer Observer
	// Metrics serves /metrics when set.
	Metrics http.Handler
	// Auth authenticates, authorizes and rate-limits (gateway/auth.go);
	// nil: everything is open and unlimited.
	Auth *auth.Service
}

// Observer receives the gateway's counts (the metrics package implements
// it). Methods must be cheap and safe for concurrent use.
type Observer interface {
	HTTPRequest(route string, status int, d time.Duration)
	Connections(transport string, delta int)
	Received(n int)
}

type nopObserver struct{}

func (nopObserver) HTTPRequest(string, int, time.Duration) {}
func (nopObserver) Connections(string, int)                {}
func (nopObserver) Received(int)                           {}

func (c Config) withDefaults() Config {
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 1 << 20
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 10_000
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	dur(&c.PublishTimeout, 2*time.Second)
	dur(&c.SubscribeIdleLimit, 60*time.Second)
	dur(&c.PingInterval, 30*time.Second)
	dur(&c.PongTimeout, 10*time.Second)
	dur(&c.WriteTimeout, 10*time.Second)
	if c.MaxTopicsPerSubscribe <= 0 {
		c.MaxTopicsPerSubscribe = 100
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}

// Server is the HTTP and WebSocket front of the relay.
//
// Concurrency: safe for concurrent use; Close is called once, at shutdown.
type Server struct {
	cfg   Config
	mgr   *actors.TopicManager
	store persistence.Store
	log   *slog.Logger

	draining atomic.Bool
	conns    sync.Map // *wsConn -> struct{}
	nconns   atomic.Int64
	stop     chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex // orders track against Close
	closing bool
	wg      sync.WaitGroup // WebSocket goroutines, closers, pings, the sweeper
}

// New returns a gateway serving mgr's topics; it starts one background
// goroutine (pings, idle and write-timeout checks) that Close stops.
func New(cfg Config, mgr *actors.TopicManager, store persistence.Store, logger *slog.Logger) *Server {
	s := &Server{cfg: cfg.withDefaults(), mgr: mgr, store: store, log: logger, stop: make(chan struct{})}
	s.wg.Add(1)
	go s.sweep()
	return s
}

// Handler returns the relay's routes.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(withRequestID, s.accessLog, s.cors, s.authenticate)
	s.authRoutes(r)
	r.Post("/api/v1/messages", s.handlePublish)
	r.Post("/api/v1/messages/bulk", s.handleBulk)
	r.Get("/api/v1/topics/{topic}/messages", s.handleHistory)
	r.Get("/health", s.handleHealth)
	r.Get("/ready", s.handleReady)
	r.Get("/ws", s.handleWS)
	if s.cfg.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", s.cfg.Metrics)
	}
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errNotFound)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errMethod)
	})
	return r
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
func (s *Server) Drain() { s.draining.Store(true) }

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
