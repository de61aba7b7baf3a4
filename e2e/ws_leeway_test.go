package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/auth"
)

// leewayToken is a token of sub that expired ago (so only RELAY_JWT_LEEWAY
// lets it verify).
func leewayToken(t *testing.T, secret []byte, sub string, ago time.Duration) string {
	t.Helper()
	return authUserToken(t, secret, sub, -ago, "read")
}

// leewayAlive checks for over two sweeps (the sweeper runs every second)
// that c answers pings: it was not closed for an expired token.
func leewayAlive(ctx context.Context, t *testing.T, c *websocket.Conn, what string) {
	t.Helper()
	for until := time.Now().Add(2600 * time.Millisecond); time.Now().Before(until); {
		authWSSend(ctx, t, c, map[string]any{"type": "ping"})
		f, err := authWSRead(ctx, c)
		if err != nil || f["type"] != "pong" {
			t.Fatalf("%s: %v %v, want a pong (open)", what, f, err)
		}
		time.Sleep(100 * time.Millisecond) // paces the pings over the sweeps
	}
}

// TestAuthWSLeewayReauthRefused: with RELAY_JWT_LEEWAY 60s, an auth frame
// whose token is past its exp (inside the leeway) would end the
// connection's life sooner than its current 1-hour token: it gets an
// UNAUTHORIZED error frame, the connection keeps its old token and stays
// open over more than two sweeps. A later token still replaces it.
func TestAuthWSLeewayReauthRefused(t *testing.T) {
	secret := []byte("leeway-secret-leeway-secret-leew")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret, Leeway: 60 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := r.dial(ctx, authUserToken(t, secret, "leeway-user", time.Hour, "read"), "header")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	authWSSend(ctx, t, c, map[string]any{"type": "subscribe", "topics": []string{"leeway.t"}})
	if f, err := authWSRead(ctx, c); err != nil || f["type"] != "subscribed" {
		t.Fatalf("subscribe: %v %v", f, err)
	}
	// The same token is accepted over HTTP: it is within the leeway.
	stale := leewayToken(t, secret, "leeway-user", 5*time.Second)
	if res := r.do("GET", "/api/v1/topics/leeway.t/messages", stale, nil); res.Status == http.StatusUnauthorized {
		t.Fatalf("HTTP with a token inside the leeway: %d %s", res.Status, res.Body)
	}
	authWSSend(ctx, t, c, map[string]any{"type": "auth", "token": stale})
	if f, err := authWSRead(ctx, c); err != nil || f["type"] != "error" || f["code"] != "UNAUTHORIZED" {
		t.Fatalf("auth frame with a token past exp: %v %v, want an UNAUTHORIZED error frame", f, err)
	}
	leewayAlive(ctx, t, c, "after a refused auth frame")
	// A later token replaces the old one (no answer on success).
	authWSSend(ctx, t, c, map[string]any{"type": "auth", "token": authUserToken(t, secret, "leeway-user", 2*time.Hour, "read")})
	authWSSend(ctx, t, c, map[string]any{"type": "ping"})
	if f, err := authWSRead(ctx, c); err != nil || f["type"] != "pong" {
		t.Fatalf("after a later token: %v %v, want a pong", f, err)
	}
}

// TestAuthWSLeewayUpgrade: with RELAY_JWT_LEEWAY 60s, a WebSocket upgraded
// with a token past its exp but inside the leeway (HTTP routes accept it)
// is not closed by the next sweeps: it lives until exp plus the leeway.
func TestAuthWSLeewayUpgrade(t *testing.T) {
	secret := []byte("leeway-secret-leeway-secret-leew")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret, Leeway: 60 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := r.dial(ctx, leewayToken(t, secret, "leeway-user", 5*time.Second), "query")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	authWSSend(ctx, t, c, map[string]any{"type": "subscribe", "topics": []string{"leeway.u"}})
	if f, err := authWSRead(ctx, c); err != nil || f["type"] != "subscribed" {
		t.Fatalf("subscribe: %v %v", f, err)
	}
	leewayAlive(ctx, t, c, "upgraded with a token inside the leeway")
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure {
			t.Fatalf("close: %v", err)
		}
	}
}
