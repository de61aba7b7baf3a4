package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/persistence"
)

// config is every setting of `relay serve`, parsed in one place.
type config struct {
	HTTPAddr       string
	ValkeyAddrs    []string
	ValkeyUsername string
	ValkeyPassword string
	ValkeyDB       int
	// ValkeyCluster (RELAY_VALKEY_CLUSTER=1) requires a Valkey Cluster:
	// start-up fails if the server is a standalone one.
	ValkeyCluster      bool
	ValkeyWaitReplicas int
	Store              persistence.Limits
	Actors             actors.Config
	Gateway            gateway.Config
	LogLevel           string
	LogFormat          string
	MetricsMaxTopics   int
	ShutdownTimeout    time.Duration
	PprofAddr          string
	// MemoryLimit is the Go runtime's soft memory limit in bytes
	// (RELAY_MEMORY_LIMIT); 0 leaves it alone (GOMEMLIMIT, if set, applies).
	MemoryLimit int64
	// MemoryStoreBytes bounds what the memory store's messages take
	// (RELAY_MEMORY_STORE_BYTES); past it the largest topics lose their
	// oldest messages.
	MemoryStoreBytes int64
	Auth             auth.Config
	// PoliciesFile is the per-topic policy file (RELAY_POLICIES_FILE),
	// loaded at start and on SIGHUP; "" for none.
	PoliciesFile string
}

// setting is one RELAY_* variable: its flag is the lower-case name with
// dashes (RELAY_HTTP_ADDR -> --http-addr).
type setting struct {
	env, def, help string
	set            func(string) error
}

func (s setting) flagName() string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.env, "RELAY_")), "_", "-")
}

func (c *config) settings() []setting {
	str := func(p *string) func(string) error { return func(v string) error { *p = v; return nil } }
	return []setting{
		{"RELAY_HTTP_ADDR", ":8080", "HTTP listen address", str(&c.HTTPAddr)},
		{"RELAY_VALKEY_ADDR", "", "Valkey host:port (comma-separated for a cluster); empty: in-process memory store", func(v string) error {
			c.ValkeyAddrs = splitList(v)
			return nil
		}},
		{"RELAY_VALKEY_USERNAME", "", "Valkey ACL user", str(&c.ValkeyUsername)},
		{"RELAY_VALKEY_PASSWORD", "", "Valkey password", str(&c.ValkeyPassword)},
		{"RELAY_VALKEY_DB", "0", "Valkey database number", intIn(&c.ValkeyDB, 0, 1<<16)},
		{"RELAY_VALKEY_CLUSTER", "0", "1: require a Valkey Cluster (the cluster client is also chosen by itself for a cluster node's address or several seeds)", func(v string) error {
			switch v {
			case "0", "false":
				c.ValkeyCluster = false
			case "1", "true":
				c.ValkeyCluster = true
			default:
				return errors.New("want 0 or 1")
			}
			return nil
		}},
		{"RELAY_VALKEY_WAIT_REPLICAS", "0", "answer a publish 201 only after WAIT saw this many replicas take it (survives a master failover; costs a replication round trip per batch)", intIn(&c.ValkeyWaitReplicas, 0, 16)},
		{"RELAY_POSITION_CHECK_INTERVAL", dur(actors.DefaultPositionCheckInterval), "how often each watched topic's stream tip is compared with what was delivered (one batched call); a topic behind catches up", duration(&c.Actors.PositionCheckInterval)},
		{"RELAY_HOT_TIER_RETENTION", dur(actors.DefaultHotTierRetention), "recent messages kept in memory per topic", duration(&c.Actors.HotTierRetention)},
		{"RELAY_HOT_TIER_BYTES", itoa(actors.DefaultHotTierBytes), "bytes all topics' hot rings may hold together (`256MiB` or bytes); past it a ring that takes a message gives up its oldest down to its share (the budget over the rings holding anything); replays from before what a ring holds read the store", byteSize(&c.Actors.HotTierBytes, 1<<20)},
		{"RELAY_RETENTION", "24h", "how long the store keeps a topic's messages", duration(&c.Store.Retention)},
		{"RELAY_MAX_MESSAGES_PER_TOPIC", "1000000", "messages kept per topic", intIn(&c.Store.MaxMessages, 1, 1<<40)},
		{"RELAY_MEMORY_STORE_BYTES", "1073741824", "bytes the memory store's messages may take in all (payload, metadata and 256 per message, and 768 per topic holding any); past it the topics holding the most lose their oldest messages, as by retention (a resume before them is truncated). Not used with Valkey", byteSize(&c.MemoryStoreBytes, 1<<20)},
		{"RELAY_MAX_CONNECTIONS", "10000", "WebSocket connections, SSE streams and long-poll waiters per instance, together", intIn(&c.Gateway.MaxConnections, 1, 1<<30)},
		{"RELAY_MAX_MESSAGE_SIZE", "1048576", "largest request body or WebSocket frame, bytes", func(v string) error {
			var n int
			if err := intIn(&n, 64, 1<<30)(v); err != nil {
				return err
			}
			c.Gateway.MaxMessageSize = int64(n)
			return nil
		}},
		{"RELAY_MAX_BULK_SIZE", "4194304", "largest bulk publish body, bytes (413 over it)", byteSize(&c.Gateway.MaxBulkSize, 1024)},
		{"RELAY_MAX_HTTP_CONNECTIONS", "4096", "open connections that are not WebSockets; over it a new one gets a canned 503", intIn(&c.Gateway.MaxHTTPConnections, 1, 1<<30)},
		{"RELAY_MAX_HTTP_CONNECTIONS_PER_CLIENT", "1024", "of those, from one client IP address (behind a proxy: set it to RELAY_MAX_HTTP_CONNECTIONS)", intIn(&c.Gateway.MaxHTTPConnectionsPerClient, 1, 1<<30)},
		{"RELAY_MAX_BODY_BYTES_IN_FLIGHT", "67108864", "request body bytes being read or handled at once, over all requests (503 over it)", byteSize(&c.Gateway.MaxBodyBytesInFlight, 1024)},
		{"RELAY_HTTP_READ_TIMEOUT", "30s", "longest a request (headers and body) may take to arrive", duration(&c.Gateway.HTTPReadTimeout)},
		{"RELAY_HTTP_WRITE_TIMEOUT", "30s", "longest a non-WebSocket response may take (long-poll and SSE extend it)", duration(&c.Gateway.HTTPWriteTimeout)},
		{"RELAY_HISTORY_MAX_BYTES", "4194304", "encoded messages per history page, bytes; a fuller page ends early with next_cursor", byteSize(&c.Gateway.HistoryMaxBytes, 1024)},
		{"RELAY_MEMORY_LIMIT", "", "Go soft memory limit (e.g. 512MiB, 2GiB or bytes); empty: GOMEMLIMIT if set, else none", func(v string) error {
			if v == "" {
				c.MemoryLimit = 0
				return nil
			}
			return byteSize(&c.MemoryLimit, 16<<20)(v)
		}},
		{"RELAY_TOPIC_MAILBOX_SIZE", itoa(actors.DefaultTopicMailboxSize), "publishes queued per topic before 503", intIn(&c.Actors.TopicMailboxSize, 1, 1<<30)},
		{"RELAY_CONNECTION_QUEUE_SIZE", itoa(actors.DefaultConnectionQueueSize), "live and control frames queued per connection before the slow-consumer policy", intIn(&c.Actors.ConnectionQueueSize, 1, 1<<30)},
		{"RELAY_CONNECTION_QUEUE_BYTES", itoa(actors.DefaultConnectionQueueBytes), "bytes queued per connection before the slow-consumer policy", intIn(&c.Actors.ConnectionQueueBytes, 1024, 1<<40)},
		{"RELAY_WRITE_DELAY", "0s", "longest a connection collects frames before writing them (fewer, larger socket writes at high rates); 0: write at the end of each drain, no added latency; at most 1s", func(v string) error {
			if err := durationOrZero(&c.Actors.WriteDelay)(v); err != nil {
				return err
			}
			if c.Actors.WriteDelay > time.Second {
				return errors.New("at most 1s")
			}
			return nil
		}},
		{"RELAY_SLOW_CONSUMER_POLICY", string(actors.DefaultSlowConsumerPolicy), "disconnect (close 4008) or drop-oldest", func(v string) error {
			p, err := actors.ParseSlowConsumerPolicy(v)
			c.Actors.SlowConsumerPolicy = p
			return err
		}},
		{"RELAY_SUPERVISOR_MAX_RESTARTS", itoa(actors.DefaultSupervisorMaxRestarts), "topic actor restarts allowed within the window", intIn(&c.Actors.Supervisor.MaxRestarts, 1, 1<<20)},
		{"RELAY_SUPERVISOR_WINDOW", dur(actors.DefaultSupervisorWindow), "restart counting window", duration(&c.Actors.Supervisor.Window)},
		{"RELAY_SUPERVISOR_BACKOFF", dur(actors.DefaultSupervisorBackoff), "pause before each restart", duration(&c.Actors.Supervisor.Backoff)},
		{"RELAY_STORE_TIMEOUT", dur(actors.DefaultStoreTimeout), "longest one store call may take (a group-commit write, a replay or history read); a write over it answers its publishes 503", duration(&c.Actors.StoreTimeout)},
		{"RELAY_PUBLISH_TIMEOUT", gateway.DefaultPublishTimeout.String(), "longest a publish request waits for its acknowledgement, queueing behind earlier writes included (keep it above twice RELAY_STORE_TIMEOUT); then 503", duration(&c.Gateway.PublishTimeout)},
		{"RELAY_MAX_BATCH", itoa(actors.DefaultMaxBatch), "most messages one group-commit write carries (1: one store write per message)", intIn(&c.Actors.MaxBatch, 1, 1<<16)},
		{"RELAY_TOPIC_IDLE_TIMEOUT", dur(actors.DefaultTopicIdleTimeout), "stop a topic actor without subscribers or traffic after this (one never published to stops with its last subscriber)", duration(&c.Actors.TopicIdleTimeout)},
		{"RELAY_MAX_TOPICS", itoa(actors.DefaultMaxTopics), "live topic actors per instance; over it a publish to a new topic answers 503 and a subscribe gets SUBSCRIPTION_ERROR", intIn(&c.Actors.MaxTopics, 1, 1<<30)},
		{"RELAY_REPLAY_BYTES", itoa(actors.DefaultReplayBytes), "replay pages held in memory by all connections at once, bytes; more replays wait", intIn(&c.Actors.ReplayBytes, 1<<16, 1<<40)},
		{"RELAY_CONNECTION_REPLAY_BYTES", itoa(actors.DefaultConnectionReplayBytes), "replay pages held in memory by one connection at once, bytes (at least one page)", intIn(&c.Actors.ConnectionReplayBytes, 1<<10, 1<<40)},
		{"RELAY_SUBSCRIBE_RATE", itoa(actors.DefaultSubscribeRate), "new topic subscriptions per second per connection (burst 1000); over it RATE_LIMIT_EXCEEDED", intIn(&c.Actors.SubscribeRate, 1, 1<<20)},
		{"RELAY_SUBSCRIBE_IDLE_LIMIT", "60s", "close a WebSocket that has not subscribed within this", duration(&c.Gateway.SubscribeIdleLimit)},
		{"RELAY_PING_INTERVAL", "30s", "WebSocket ping interval", duration(&c.Gateway.PingInterval)},
		{"RELAY_WS_UPGRADE_RATE", itoa(gateway.DefaultWSUpgradeRate), "new WebSocket connections per second per client IP (burst half that); over it an upgrade waits its turn, up to 5s, then 429 (behind a proxy: raise it)", floatPositive(&c.Gateway.WSUpgradeRate)},
		{"RELAY_WS_READ_RATE", itoa(gateway.DefaultWSReadRate), "frames per second one WebSocket connection may send (one per started 16 KiB; burst twice that); over it the relay stops reading that connection for a while, nothing is dropped", floatPositive(&c.Gateway.WSReadRate)},
		{"RELAY_PONG_TIMEOUT", "10s", "how long a ping waits for its pong", duration(&c.Gateway.PongTimeout)},
		{"RELAY_WRITE_TIMEOUT", "10s", "longest one frame write may take before the peer is dropped", duration(&c.Gateway.WriteTimeout)},
		{"RELAY_ALLOWED_ORIGINS", "", "browser origins allowed on /ws, SSE and the REST routes (CORS): host patterns, or *", func(v string) error {
			c.Gateway.AllowedOrigins = splitList(v)
			return nil
		}},
		{"RELAY_POLL_MAX_WAITERS_PER_CLIENT", "50", "concurrent long-poll waiters per client (the user or API key, else the IPv4 address or IPv6 /64) before 429", intIn(&c.Gateway.Consumers.PollMaxWaitersPerClient, 1, 1<<20)},
		{"RELAY_METRICS_MAX_TOPICS", "100", "distinct topic label values in metrics", intIn(&c.MetricsMaxTopics, 0, 1<<20)},
		{"RELAY_SHUTDOWN_TIMEOUT", "8s", "graceful shutdown budget", duration(&c.ShutdownTimeout)},
		{"RELAY_PPROF_ADDR", "", "serve Go's /debug/pprof on this address (e.g. 127.0.0.1:6060); empty: off", str(&c.PprofAddr)},
		{"RELAY_POLICIES_FILE", "", "per-topic policies, YAML or JSON (docs/policies.md); reloaded on SIGHUP; a bad file stops start-up", str(&c.PoliciesFile)},
		// Authentication and rate limits (auth/, gateway/auth.go). Auth is on
		// when any of the credential settings (secret, keys, JWKS, users,
		// admin, API keys) is set.
		{"RELAY_JWT_SECRET", "", "HS256 secret: verifies tokens and signs the ones the relay issues; turns auth on", func(v string) error {
			c.Auth.JWTSecret = []byte(v)
			return nil
		}},
		{"RELAY_JWT_PUBLIC_KEYS", "", "comma-separated PEM files of RS256/ES256/EdDSA public keys (kid: file base name); turns auth on", func(v string) error {
			c.Auth.PublicKeyFiles = splitList(v)
			return nil
		}},
		{"RELAY_JWKS_URL", "", "JWKS URL, refreshed and looked up by kid; turns auth on", str(&c.Auth.JWKSURL)},
		{"RELAY_JWT_ISSUER", "", "required iss of tokens (and iss of issued ones)", str(&c.Auth.Issuer)},
		{"RELAY_JWT_AUDIENCE", "", "required aud of tokens (and aud of issued ones)", str(&c.Auth.Audience)},
		{"RELAY_JWT_LEEWAY", "0s", "clock skew tolerated on exp/nbf/iat", durationOrZero(&c.Auth.Leeway)},
		{"RELAY_USERS_FILE", "", "JSON users file (username, bcrypt password_hash, permissions, topics); turns auth on", str(&c.Auth.UsersFile)},
		{"RELAY_ADMIN_USERNAME", "", "bootstrap admin, created or its password reset at start; turns auth on", str(&c.Auth.AdminUsername)},
		{"RELAY_ADMIN_PASSWORD", "", "password of the bootstrap admin", str(&c.Auth.AdminPassword)},
		{"RELAY_API_KEYS_FILE", "", "JSON API keys file (id, key_sha256, permissions, topics); turns auth on", str(&c.Auth.APIKeysFile)},
		{"RELAY_ACCESS_TOKEN_TTL", "30m", "life of an issued access token", duration(&c.Auth.AccessTokenTTL)},
		{"RELAY_REFRESH_TOKEN_TTL", "168h", "life of a login (refresh token) without use", duration(&c.Auth.RefreshTokenTTL)},
		{"RELAY_AUTH_CACHE_TTL", "1s", "reuse a verified token or topic owner this long (other instances' revocations apply within it)", duration(&c.Auth.CacheTTL)},
		{"RELAY_RATE_PUBLISH", "0", "publish requests per second per identity (0: off)", floatMin0(&c.Auth.Rates.Publish)},
		{"RELAY_RATE_PUBLISH_BURST", "0", "publish burst per identity (0: the rate)", intIn(&c.Auth.Rates.PublishBurst, 0, 1<<30)},
		{"RELAY_RATE_WS_FRAMES", "0", "client WebSocket frames per second per identity (0: off)", floatMin0(&c.Auth.Rates.WSFrames)},
		{"RELAY_RATE_CONNECTIONS", "1024", "concurrent WebSocket, SSE and poll requests per identity: the user, the API key, or the address when anonymous (0: off)", intIn(&c.Auth.Rates.Connections, 0, 1<<30)},
		{"RELAY_RATE_SUBSCRIPTIONS", "10000", "topics subscribed at once per identity, over all its WebSockets, SSE streams and long-polls (0: off); each keeps a topic actor, of which there are at most RELAY_MAX_TOPICS", intIn(&c.Auth.Rates.Subscriptions, 0, 1<<30)},
		{"RELAY_RATE_OWNED_TOPICS", "10000", "topics one user or API key may own at once (admins: any number; 0: only the relay's 100,000 in all)", intIn(&c.Auth.Rates.OwnedTopics, 0, 1<<30)},
		{"RELAY_RATE_LOGIN", "30", "login attempts per minute per username and per address (0: off)", func(v string) error {
			if err := intIn(&c.Auth.Rates.LoginPerMinute, 0, 1<<20)(v); err != nil {
				return err
			}
			if c.Auth.Rates.LoginPerMinute == 0 {
				c.Auth.Rates.LoginPerMinute = -1
			}
			return nil
		}},
		{"RELAY_LOG_LEVEL", "info", "debug, info, warn or error", oneOf(&c.LogLevel, "debug", "info", "warn", "error")},
		{"RELAY_LOG_FORMAT", "text", "text (coloured on a terminal) or json", oneOf(&c.LogFormat, "text", "json")},
	}
}

// itoa and dur write a Default* constant as a settings-table default.
func itoa(n int) string { return strconv.Itoa(n) }

func dur(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s" // "600s", as the SPEC writes it
	}
	return d.String()
}

// flagHelp reports that -h was asked for and usage was printed.
var flagHelp = flag.ErrHelp

// parseConfig reads settings from, lowest precedence first: defaults, a
// .env file in the working directory, the environment, and flags. A bad
// value is an error naming the setting.
func parseConfig(args []string, environ func(string) (string, bool), dotenv io.Reader, stderr io.Writer) (*config, error) {
	c := &config{}
	settings := c.settings()
	fileVals := map[string]string{}
	if dotenv != nil {
		var err error
		if fileVals, err = readDotenv(dotenv); err != nil {
			return nil, fmt.Errorf(".env: %w", err)
		}
	}
	fs := flag.NewFlagSet("relay serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flagVals := make([]*string, len(settings))
	for i, s := range settings {
		flagVals[i] = fs.String(s.flagName(), "", fmt.Sprintf("%s (%s, default %q)", s.help, s.env, s.def))
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, flagHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for i, s := range settings {
		v := s.def
		if fv, ok := fileVals[s.env]; ok {
			v = fv
		}
		if ev, ok := environ(s.env); ok {
			v = ev
		}
		if given[s.flagName()] {
			v = *flagVals[i]
		}
		if err := s.set(strings.TrimSpace(v)); err != nil {
			return nil, fmt.Errorf("invalid %s (--%s) %q: %w", s.env, s.flagName(), v, err)
		}
	}
	return c, nil
}

// readDotenv parses KEY=VALUE lines; # comments, blank lines, "export "
// prefixes and quoted values are accepted.
func readDotenv(r io.Reader) (map[string]string, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want KEY=VALUE", n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		vals[strings.TrimSpace(k)] = v
	}
	return vals, sc.Err()
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// duration accepts Go syntax ("600s", "10m") or a bare number of seconds.
func duration(p *time.Duration) func(string) error {
	return func(v string) error {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n <= 0 {
				return errors.New("must be positive")
			}
			*p = time.Duration(n) * time.Second
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New(`want a duration like "600s", "10m" or a number of seconds`)
		}
		if d <= 0 {
			return errors.New("must be positive")
		}
		*p = d
		return nil
	}
}

// byteSize accepts a number of bytes with an optional binary suffix (B,
// KiB, MiB, GiB, TiB, as GOMEMLIMIT takes), at least lo.
func byteSize(p *int64, lo int64) func(string) error {
	return func(v string) error {
		num, mult := v, int64(1)
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
			if strings.HasSuffix(v, u.suffix) {
				num, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
				break
			}
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return errors.New("want a number of bytes, optionally with KiB, MiB, GiB or TiB")
		}
		if n < lo/mult || n > (1<<50)/mult {
			return fmt.Errorf("want %d bytes to 1 PiB", lo)
		}
		if n*mult < lo {
			return fmt.Errorf("want at least %d bytes", lo)
		}
		*p = n * mult
		return nil
	}
}

func intIn(p *int, lo, hi int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("want an integer")
		}
		if n < lo || n > hi {
			return fmt.Errorf("want %d..%d", lo, hi)
		}
		*p = n
		return nil
	}
}

func oneOf(p *string, allowed ...string) func(string) error {
	return func(v string) error {
		for _, a := range allowed {
			if strings.EqualFold(v, a) {
				*p = a
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(allowed, ", "))
	}
}

// osEnviron adapts os.LookupEnv.
func osEnviron(k string) (string, bool) { return os.LookupEnv(k) }

// descriptorsNeeded is the open files the relay may hold at its connection
// limits: every WebSocket, every other HTTP connection, the listener, the
// store's connections and the process's own files (a margin of 64).
func descriptorsNeeded(cfg *config) int {
	ws, httpConns := cfg.Gateway.MaxConnections, cfg.Gateway.MaxHTTPConnections
	return ws + httpConns + 64
}

// durationOrZero is duration that also accepts 0.
func durationOrZero(p *time.Duration) func(string) error {
	return func(v string) error {
		if v == "0" {
			*p = 0
			return nil
		}
		if d, err := time.ParseDuration(v); err == nil && d == 0 {
			*p = 0
			return nil
		}
		return duration(p)(v)
	}
}

// floatPositive accepts a number > 0.
func floatPositive(p *float64) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 1e9) { // written so that NaN fails too
			return errors.New("want a number > 0")
		}
		*p = f
		return nil
	}
}

// floatMin0 accepts a number >= 0.
func floatMin0(p *float64) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0 && f <= 1e9) { // written so that NaN fails too
			return errors.New("want a number >= 0")
		}
		*p = f
		return nil
	}
}
