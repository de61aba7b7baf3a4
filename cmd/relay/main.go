// Command relay is the real-time message relay: `relay serve` (the default)
// runs the server; `relay bench` runs the load generator.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/lmittmann/tint"

	"github.com/pulsar-relay/relay/internal/app"
	"github.com/pulsar-relay/relay/internal/sysmon"
	"github.com/pulsar-relay/relay/metrics"
	"github.com/pulsar-relay/relay/persistence"
	"github.com/pulsar-relay/relay/policy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if cmd, _ := command(os.Args[1:]); cmd == "serve" {
		// The server keeps Go's sysmon thread out of its deep sleep (a
		// tenth to a sixth less CPU per message on the measured machine;
		// see internal/sysmon). Only the server: the CLI commands are short,
		// and the load generator runs at Go's defaults, as it does against
		// any other server.
		sysmon.KeepAwake()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command splits the command name off args: "serve" when args start with
// a flag or are empty.
func command(args []string) (string, []string) {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		return args[0], args[1:]
	}
	return "serve", args
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd, args := command(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "serve":
		return serveCmd(ctx, args, stderr)
	case "bench":
		return benchCmd(ctx, args, stdout, stderr)
	case "publish":
		return publishCmd(ctx, args, stdIO(stdout, stderr))
	case "subscribe":
		return subscribeCmd(ctx, args, stdIO(stdout, stderr))
	case "topics":
		return topicsCmd(ctx, args, stdIO(stdout, stderr))
	case "policies":
		return policiesCmd(ctx, args, stdIO(stdout, stderr))
	case "config":
		return configCmd(args, stdIO(stdout, stderr))
	case "version":
		fmt.Fprintln(stdout, version)
		return 0
	}
	fmt.Fprintf(stderr, "relay: unknown command %q (want serve, publish, subscribe, topics, policies, config, bench or version)\n", cmd)
	return 2
}

func serveCmd(ctx context.Context, args []string, stderr io.Writer) int {
	var dotenv io.Reader
	if f, err := os.Open(".env"); err == nil {
		defer f.Close()
		dotenv = f
	}
	cfg, err := parseConfig(args, osEnviron, dotenv, stderr)
	if err != nil {
		if errors.Is(err, flagHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	logger := newLogger(cfg, stderr)
	if err := serve(ctx, cfg, logger); err != nil {
		logger.Error("relay stopped", "err", err)
		return 1
	}
	return 0
}

// newLogger builds the one logger of the process: tint text on a terminal
// (plain text elsewhere), or JSON when RELAY_LOG_FORMAT=json.
func newLogger(cfg *config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	}
	f, isFile := w.(*os.File)
	return slog.New(tint.NewTextHandler(w, &tint.Options{Level: level, TimeFormat: time.DateTime, NoColor: !isFile || !isTerminal(f)}))
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// serve runs the relay until ctx ends, then shuts down gracefully (see
// app.Relay.Shutdown).
func serve(ctx context.Context, cfg *config, logger *slog.Logger) error {
	applyMemoryLimit(cfg, logger)
	if v := os.Getenv("GODEBUG"); v != "" {
		logger.Info("go runtime", "GODEBUG", v) // sysmon.KeepAwake's setting, or the operator's
	}
	logDescriptors(cfg, logger)
	store, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		store.Close()
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	authSvc, err := newAuth(ctx, cfg, store, logger)
	if err != nil {
		ln.Close()
		store.Close()
		return fmt.Errorf("auth: %w", err)
	}
	defer authSvc.Close()
	policies := &policy.Holder{}
	if cfg.PoliciesFile != "" {
		l, err := policies.ReloadFile(cfg.PoliciesFile, time.Now())
		if err != nil {
			ln.Close()
			store.Close()
			return fmt.Errorf("RELAY_POLICIES_FILE: %w", err)
		}
		logger.Info("policies loaded", "file", cfg.PoliciesFile, "rules", l.Set.Len())
	}
	actorCfg := cfg.Actors
	actorCfg.StoreLimits = cfg.Store
	gwCfg := cfg.Gateway
	gwCfg.Version = version
	gwCfg.MaxTTL = cfg.Store.Retention // a ttl past the retention is refused (0: messages.DefaultMaxTTL)
	gwCfg.Auth = authSvc
	gwCfg.Policies = policies
	relay := app.Start(app.Options{Store: store, Actors: actorCfg, Gateway: gwCfg, Logger: logger,
		Metrics: metrics.New(cfg.MetricsMaxTopics), PoliciesFile: cfg.PoliciesFile}, ln)
	logger.Info("relay serving", "addr", relay.Addr().String(), "store", storeName(cfg), "version", version, "auth", authSvc.Enabled())
	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, logger)
		if err != nil {
			logger.Warn("pprof not served", "err", err)
		} else {
			defer stopPprof()
		}
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case err := <-relay.Done():
			return fmt.Errorf("http server: %w", err)
		case <-hup:
			reloadPolicies(relay, cfg, logger)
		case <-ctx.Done():
			break wait
		}
	}
	logger.Info("relay shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := relay.Shutdown(sctx); err != nil {
		logger.Warn("shutdown incomplete", "err", err)
	}
	logger.Info("relay stopped")
	return nil
}

// reloadPolicies reloads RELAY_POLICIES_FILE (SIGHUP): a bad file is
// logged with its lines and fields, and the policies in force stay.
func reloadPolicies(relay *app.Relay, cfg *config, logger *slog.Logger) {
	if cfg.PoliciesFile == "" {
		logger.Warn("SIGHUP: no RELAY_POLICIES_FILE to reload")
		return
	}
	if err := relay.ReloadPolicies(); err != nil {
		logger.Error("SIGHUP: policies refused; the ones in force stay", "file", cfg.PoliciesFile, "err", err)
		return
	}
	logger.Info("SIGHUP: policies reloaded", "file", cfg.PoliciesFile)
}

// applyMemoryLimit sets the Go runtime's soft memory limit from
// RELAY_MEMORY_LIMIT; without it GOMEMLIMIT (read by the runtime itself)
// applies. Near the limit the GC runs more often and returns memory to the
// OS sooner, so RSS falls back after a burst.
func applyMemoryLimit(cfg *config, logger *slog.Logger) {
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
		logger.Info("memory limit", "bytes", cfg.MemoryLimit, "source", "RELAY_MEMORY_LIMIT")
		return
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok && v != "off" {
		logger.Info("memory limit", "bytes", debug.SetMemoryLimit(-1), "source", "GOMEMLIMIT")
	}
}

func storeName(cfg *config) string {
	if len(cfg.ValkeyAddrs) > 0 {
		return "valkey"
	}
	return "memory"
}

// openStore returns the memory store, or the Valkey store when
// RELAY_VALKEY_ADDR is set.
func openStore(ctx context.Context, cfg *config, logger *slog.Logger) (persistence.Store, error) {
	if len(cfg.ValkeyAddrs) == 0 {
		return persistence.NewMemoryStore(cfg.Store, persistence.WithByteBudget(cfg.MemoryStoreBytes)), nil
	}
	store, err := persistence.NewValkeyStore(ctx, persistence.ValkeyConfig{
		Addrs:        cfg.ValkeyAddrs,
		Username:     cfg.ValkeyUsername,
		Password:     cfg.ValkeyPassword,
		DB:           cfg.ValkeyDB,
		WaitReplicas: cfg.ValkeyWaitReplicas,
		Limits:       cfg.Store,
		Timeout:      cfg.Actors.StoreTimeout,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("valkey store: %w", err)
	}
	if cluster, known := store.IsCluster(); cfg.ValkeyCluster && known && !cluster {
		store.Close()
		return nil, fmt.Errorf("valkey store: RELAY_VALKEY_CLUSTER=1 but %v is not a cluster node", cfg.ValkeyAddrs)
	}
	return store, nil
}
