package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/loadgen"
)

// TestBenchTransports runs `relay bench --transport poll|sse` (small and
// bounded) against a relay: every subscriber gets every message once.
func TestBenchTransports(t *testing.T) {
	for _, transport := range []string{"poll", "sse"} {
		t.Run(transport, func(t *testing.T) {
			r := startConsumerRelay(t, relaytest.Options{})
			var out, errb bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			code := loadgen.Main(ctx, []string{
				"--addr", strings.TrimPrefix(r.URL, "http://"), "--transport", transport,
				"--subscribers", "50", "--topics", "2", "--publishers", "2", "--messages", "200",
				"--rate", "400", "--duration", "20s", "--grace", "10s", "--format", "json", "--quiet",
			}, &out, &errb)
			if code != 0 {
				t.Fatalf("bench exit %d: %s", code, errb.String())
			}
			var rep struct {
				Clean     bool   `json:"clean"`
				Expected  uint64 `json:"expected"`
				Delivered uint64 `json:"delivered"`
				Lost      uint64 `json:"lost"`
			}
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("report %s: %v", out.String(), err)
			}
			// On a loaded machine the run may end (--duration) before all 200
			// are published: every published message must still reach every
			// subscriber of its topic (25 each).
			if !rep.Clean || rep.Expected == 0 || rep.Expected%25 != 0 || rep.Delivered != rep.Expected || rep.Lost != 0 {
				t.Fatalf("%s run not clean: %s", transport, out.String())
			}
		})
	}
}
