package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/loadgen"
)

// TestAuthBenchTakesToken: `relay bench --token` publishes and subscribes
// against a relay with auth on, over every transport and with slow
// subscribers too; without the token it cannot.
func TestAuthBenchTakesToken(t *testing.T) {
	secret := []byte("bench-cli-secret")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret}})
	addr := strings.TrimPrefix(r.URL, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	token := authUserToken(t, secret, "bench", time.Hour, "read", "write")
	for _, extra := range [][]string{
		{"--transport", "ws", "--slow-subscribers", "1"},
		{"--transport", "poll"},
		{"--transport", "sse"},
	} {
		args := append([]string{"--addr", addr, "--subscribers", "2", "--publishers", "1", "--messages", "20",
			"--quiet", "--grace", "2s", "--connect-timeout", "10s", "--duration", "20s"}, extra...)
		var out, errb bytes.Buffer
		if code := loadgen.Main(ctx, append(args, "--token", token), &out, &errb); code != 0 {
			t.Fatalf("bench %v with a token: exit %d\n%s\n%s", extra, code, out.String(), errb.String())
		}
		out.Reset()
		errb.Reset()
		if code := loadgen.Main(ctx, args, &out, &errb); code == 0 {
			t.Fatalf("bench %v without a token succeeded against a relay with auth on:\n%s", extra, out.String())
		}
	}
}
