// Package app wires the relay together: store, actor system, topic manager,
// gateway and HTTP server, and shuts them down in the right order. Both
// cmd/relay and the end-to-end tests start the relay through it, so tests run
// exactly the production wiring.
package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/metrics"
	"github.com/pulsar-relay/relay/persistence"
	"github.com/pulsar-relay/relay/policy"
)

// Options are the parts of a relay. Store is required; the app closes it on
// Shutdown.
type Options struct {
	Store   persistence.Store
	Actors  actors.Config
	Gateway gateway.Config
	Logger  *slog.Logger
	// Metrics, when set, observes the actors, the gateway and the store,
	// and is served on GET /metrics; nil turns metrics off.
	Metrics *metrics.Registry
	// PoliciesFile is reloaded by Relay.ReloadPolicies (SIGHUP) into
	// Gateway.Policies; the caller loads it at start. Gateway.Policies'
	// current set is what the topic actors start with.
	PoliciesFile string
}

// Relay is a running relay.
type Relay struct {
	opts    Options
	system  *actor.ActorSystem
	Manager *actors.TopicManager
	Gateway *gateway.Server
	srv     *http.Server
	ln      net.Listener
	served  chan error
}

// Start serves the relay on ln until Shutdown.
func Start(opts Options, ln net.Listener) *Relay {
	log := opts.Logger
	r := &Relay{opts: opts, ln: ln, served: make(chan error, 1)}
	store := opts.Store
	if _, ok := store.(*persistence.ValkeyStore); ok {
		// Other relay instances may append to the same streams, so a topic
		// actor's hot ring may miss messages: replays read the store.
		opts.Actors.SharedStore = true
	}
	if opts.Metrics != nil {
		store = metrics.InstrumentStore(store, opts.Metrics)
		opts.Actors.Observer = opts.Metrics
		opts.Gateway.Observer = opts.Metrics
		opts.Gateway.Metrics = opts.Metrics.Handler()
	}
	if opts.Gateway.Policies == nil {
		opts.Gateway.Policies = &policy.Holder{}
	}
	if opts.Actors.Policies == nil {
		opts.Actors.Policies = opts.Gateway.Policies.Current().Set
	}
	r.opts.Gateway.Policies = opts.Gateway.Policies
	r.system = actors.NewActorSystem(log)
	r.Manager = actors.NewTopicManager(r.system, store, opts.Actors, log)
	r.Gateway = gateway.New(opts.Gateway, r.Manager, store, log)
	// Deadlines are set per request by the gateway (WebSockets, long-polls
	// and SSE lift them); the listener caps connections that are not
	// WebSockets.
	r.srv = r.Gateway.HTTPServer(slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	go func() { r.served <- r.srv.Serve(r.Gateway.Listener(ln)) }()
	return r
}

// ReloadPolicies reloads Options.PoliciesFile and applies it to the running
// topic actors; on error (the file is bad or gone) the policies in force
// stay and the error names the file, line and field.
func (r *Relay) ReloadPolicies() error {
	if r.opts.PoliciesFile == "" {
		return errors.New("no policy file configured")
	}
	return r.Gateway.ApplyPolicies(func(h *policy.Holder) (policy.Loaded, error) {
		return h.ReloadFile(r.opts.PoliciesFile, time.Now())
	})
}

// Addr is the address the relay listens on.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// Done receives the HTTP server's error if it stops by itself.
func (r *Relay) Done() <-chan error { return r.served }

// Shutdown stops the relay gracefully, within ctx: /ready turns 503 and
// upgrades are refused, the listener closes and in-flight requests finish,
// WebSockets close with 1001, topic actors stop, the store closes.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.Gateway.Drain()
	err := r.srv.Shutdown(ctx)
	r.Gateway.Close(ctx)
	r.Manager.Shutdown(ctx)
	r.system.Shutdown()
	if cerr := r.opts.Store.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = errors.Join(err, cerr)
	}
	return err
}
