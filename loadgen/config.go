package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Targets a run can drive.
const (
	TargetRelay      = "relay"
	TargetCentrifugo = "centrifugo"
)

// Upper bounds on every count, so no flag can turn a run into an unbounded one.
const (
	maxSubscribers = 100_000
	maxTopics      = 100_000
	maxPublishers  = 1_024
	maxMessages    = 10_000_000
	maxTopicsXPubs = 10_000_000 // seq counters and acknowledgement sets are topics x publishers
	maxPad         = 1 << 20
	maxPhase       = time.Hour
	maxSlowSubs    = 1_000
)

// Config is one run. The zero value of each field is not usable: parseFlags
// fills in the defaults named in each comment.
type Config struct {
	Target      string        // relay (default) or centrifugo
	Addr        string        // server host:port, host 127.0.0.1 or localhost (default 127.0.0.1:8080); with several, the first
	Addrs       []string      // every server of --addr a,b,c: subscribers and publishes are spread over them in turn
	APIKey      string        // Centrifugo's http_api.key (sent as X-API-Key)
	Token       string        // relay bearer token (JWT or API key) when the relay has auth on
	Subscribers int           // subscribers (default 100)
	Transport   string        // relay subscribers' transport: ws (default), poll or sse
	Topics      int           // topics; subscriber i listens to topic i mod Topics (default 1)
	Publishers  int           // concurrent HTTP publishers (default 4)
	Messages    int           // messages to publish in total (default 1000; 0 = connect and hold only)
	Rate        float64       // total publish rate in msgs/s; 0 = as fast as the publishers go
	Bulk        int           // messages per bulk request (relay /api/v1/messages/bulk, Centrifugo /api/batch); 0 = one request per message
	Duration    time.Duration // publishing stops at this bound even if Messages are not all sent (default 60s)
	Grace       time.Duration // after publishing, wait at most this long for the last deliveries (default 5s)
	ConnectTime time.Duration // bound on the whole connect phase (default 120s)
	DialConc    int           // connections opened concurrently (default 64)
	Hold        time.Duration // keep the connections idle this long after connecting, then sample memory (0: no hold)
	ServerPID   int           // the server's pid, for CPU and RSS from /proc (0: not measured)
	StorePID    int           // the store's (Valkey's) pid, for its CPU per publish (0: not measured)
	Pad         int           // extra payload bytes (default 0)
	Prefix      string        // topic name prefix (default bench-<pid>-<unix time>)
	Label       string        // free text copied into the report (e.g. the scenario name)
	Format      string        // stdout report: table (default) or json
	JSONPath    string        // also write the JSON report to this file
	Quiet       bool          // no progress lines on stderr
	Progress    time.Duration // progress interval (default 1s)
	ReqTimeout  time.Duration // per publish request (default 10s)
	CPUProfile  string        // write the load generator's own CPU profile here

	// Back-pressure (see slow.go and pubStats).
	SlowSubs      int           // extra relay subscribers on topic 0 that never read (default 0)
	SlowProbe     time.Duration // after the run, bound on reading each slow subscriber to learn how it ended (default 10s)
	AllowRefusals bool          // publishes refused with 503/429 do not make the run unclean
}

// parseFlags reads a run's configuration from args (without the program or
// subcommand name). Flag errors and usage go to stderr.
func parseFlags(args []string, stderr io.Writer, now time.Time, pid int) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Target, "target", TargetRelay, "server protocol: relay or centrifugo")
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "server host:port (127.0.0.1 or localhost only); several, comma-separated, spread subscribers and publishes over instances sharing one store")
	fs.StringVar(&c.APIKey, "api-key", "", "Centrifugo HTTP API key (X-API-Key)")
	fs.StringVar(&c.Token, "token", "", "relay bearer token (JWT or API key; needs read and write) when the relay has auth on")
	fs.IntVar(&c.Subscribers, "subscribers", 100, "subscribers")
	fs.StringVar(&c.Transport, "transport", TransportWS, "relay subscribers' transport: ws (WebSocket), poll (POST /api/v1/poll in a loop) or sse (GET /api/v1/sse)")
	fs.IntVar(&c.Topics, "topics", 1, "topics (subscriber i listens to topic i mod topics)")
	fs.IntVar(&c.Publishers, "publishers", 4, "concurrent HTTP publishers")
	fs.IntVar(&c.Messages, "messages", 1000, "messages to publish in total (0: connect and hold only)")
	fs.Float64Var(&c.Rate, "rate", 0, "total publish rate, msgs/s (0: unlimited)")
	fs.IntVar(&c.Bulk, "bulk", 0, "messages per bulk request, 1..100 (relay: /api/v1/messages/bulk, Centrifugo: /api/batch); 0: one request per message")
	fs.DurationVar(&c.Duration, "duration", 60*time.Second, "upper bound on the publish phase")
	fs.DurationVar(&c.Grace, "grace", 5*time.Second, "upper bound on the wait for deliveries after publishing")
	fs.DurationVar(&c.ConnectTime, "connect-timeout", 120*time.Second, "upper bound on the connect phase")
	fs.IntVar(&c.DialConc, "connect-concurrency", 64, "connections opened concurrently")
	fs.DurationVar(&c.Hold, "hold", 0, "hold the connections idle this long, then sample the server's memory (needs --server-pid for KB/conn)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "server pid: report its CPU per delivery and RSS from /proc")
	fs.IntVar(&c.StorePID, "store-pid", 0, "store (Valkey) pid: report its CPU per publish over the publish phase, next to the server's and the load generator's")
	fs.IntVar(&c.Pad, "payload-bytes", 0, "extra padding bytes in each payload")
	fs.StringVar(&c.Prefix, "topic-prefix", fmt.Sprintf("bench-%d-%d", pid, now.Unix()), "topic name prefix")
	fs.StringVar(&c.Label, "label", "", "label copied into the report")
	fs.StringVar(&c.Format, "format", "table", "stdout report format: table or json")
	fs.StringVar(&c.JSONPath, "json", "", "also write the JSON report to this file")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress on stderr")
	fs.DurationVar(&c.Progress, "progress", time.Second, "progress interval on stderr")
	fs.DurationVar(&c.ReqTimeout, "request-timeout", 10*time.Second, "timeout of one publish request")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	fs.IntVar(&c.SlowSubs, "slow-subscribers", 0, "extra subscribers to topic 0 that never read (64 KB socket receive buffer; relay target only); not in loss or latency figures, the report says how each ended")
	fs.DurationVar(&c.SlowProbe, "slow-probe", 10*time.Second, "after the run, read each slow subscriber at most this long to see whether the server closed it (and with which code)")
	fs.BoolVar(&c.AllowRefusals, "allow-refusals", false, "publishes answered 503 or 429 (counted as refused, with their own latency) do not make the run unclean")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return c, c.validate()
}

// addrs is every server of the run, comma-separated, for the report.
func (c *Config) addrs() string {
	if len(c.Addrs) == 0 {
		return c.Addr
	}
	return strings.Join(c.Addrs, ",")
}

// validate checks bounds and the loopback-only rule.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Target != TargetRelay && c.Target != TargetCentrifugo {
		bad("--target must be relay or centrifugo, got %q", c.Target)
	}
	c.Addrs = nil
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Addrs = append(c.Addrs, a)
		}
	}
	if len(c.Addrs) == 0 {
		c.Addrs = []string{""}
	}
	for _, a := range c.Addrs {
		if err := checkLoopbackAddr(a); err != nil {
			errs = append(errs, err)
		}
	}
	c.Addr = c.Addrs[0]
	if len(c.Addrs) > 1 && (c.Transport != TransportWS || c.SlowSubs > 0) {
		bad("several --addr need --transport ws and no --slow-subscribers")
	}
	if c.Target == TargetCentrifugo && c.APIKey == "" && c.Messages > 0 {
		bad("--api-key is required with --target centrifugo")
	}
	inRange := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			bad("--%s must be in [%d, %d], got %d", name, lo, hi, v)
		}
	}
	inRange("subscribers", c.Subscribers, 0, maxSubscribers)
	inRange("topics", c.Topics, 1, maxTopics)
	inRange("publishers", c.Publishers, 1, maxPublishers)
	inRange("messages", c.Messages, 0, maxMessages)
	inRange("connect-concurrency", c.DialConc, 1, 10_000)
	inRange("payload-bytes", c.Pad, 0, maxPad)
	inRange("bulk", c.Bulk, 0, maxBulk)
	inRange("slow-subscribers", c.SlowSubs, 0, maxSlowSubs)
	switch c.Transport {
	case TransportWS:
	case TransportPoll, TransportSSE:
		if c.Target != TargetRelay {
			bad("--transport %s needs --target relay", c.Transport)
		}
		if c.SlowSubs > 0 {
			bad("--slow-subscribers needs --transport ws")
		}
	default:
		bad("--transport must be ws, poll or sse, got %q", c.Transport)
	}
	if c.SlowSubs > 0 && c.Target != TargetRelay {
		bad("--slow-subscribers needs --target relay")
	}
	if c.Topics*c.Publishers > maxTopicsXPubs {
		bad("--topics x --publishers must be at most %d", maxTopicsXPubs)
	}
	if c.Rate < 0 || c.Rate > 10_000_000 {
		bad("--rate must be in [0, 1e7], got %g", c.Rate)
	}
	dur := func(name string, d, lo time.Duration) {
		if d < lo || d > maxPhase {
			bad("--%s must be in [%s, %s], got %s", name, lo, maxPhase, d)
		}
	}
	dur("duration", c.Duration, time.Millisecond)
	dur("grace", c.Grace, 0)
	dur("connect-timeout", c.ConnectTime, time.Millisecond)
	dur("hold", c.Hold, 0)
	dur("progress", c.Progress, 10*time.Millisecond)
	dur("request-timeout", c.ReqTimeout, time.Millisecond)
	dur("slow-probe", c.SlowProbe, 10*time.Millisecond)
	if c.StorePID < 0 {
		bad("--store-pid must be positive")
	}
	if c.ServerPID < 0 {
		bad("--server-pid must be positive")
	}
	if err := validPrefix(c.Prefix); err != nil {
		bad("--topic-prefix: %w", err)
	}
	if c.Format != "table" && c.Format != "json" {
		bad("--format must be table or json, got %q", c.Format)
	}
	return errors.Join(errs...)
}

// checkLoopbackAddr accepts only host:port with host 127.0.0.1 or localhost.
func checkLoopbackAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host != "127.0.0.1" && host != "localhost" {
		return fmt.Errorf("--addr %q: only 127.0.0.1 or localhost may be targeted", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("--addr %q: bad port", addr)
	}
	return nil
}
