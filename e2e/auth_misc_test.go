package e2e

import (
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// TestAuthLoginRateLimit: login attempts are limited per username (and per
// address), with 429 and Retry-After, whether the password is right or not.
func TestAuthLoginRateLimit(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: []byte("s"), AdminUsername: "admin", AdminPassword: "admin-password",
		Rates: auth.RateConfig{LoginPerMinute: 3}}})
	for i := range 3 {
		res := r.do("POST", "/auth/login", "", url.Values{"username": {"admin"}, "password": {"guess"}})
		if res.Status != 401 {
			t.Fatalf("attempt %d: %d %s", i, res.Status, res.Body)
		}
	}
	res := r.do("POST", "/auth/login", "", url.Values{"username": {"admin"}, "password": {"admin-password"}})
	if res.Status != 429 || res.Code() != "RATE_LIMIT_EXCEEDED" || res.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth attempt: %d %s %v", res.Status, res.Body, res.Header)
	}
	// At 3 a minute the next attempt is about 20 s away: Retry-After says
	// so (not a blanket 1 s) and agrees with X-RateLimit-Reset.
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 10 || ra > 60 {
		t.Fatalf("Retry-After %q at 3 logins a minute, want the wait (about 20 s)", res.Header.Get("Retry-After"))
	}
}

// TestAuthCORS: the REST API answers preflights for allowed origins (own
// origin and RELAY_ALLOWED_ORIGINS patterns) and refuses others.
func TestAuthCORS(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: []byte("s")}, Gateway: gateway.Config{AllowedOrigins: []string{"*.example.com"}}})
	pre := r.do("OPTIONS", "/api/v1/messages", "", nil, "Origin", "https://app.example.com",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type")
	if pre.Status != 204 || pre.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("allowed preflight: %d %v", pre.Status, pre.Header)
	}
	bad := r.do("OPTIONS", "/api/v1/messages", "", nil, "Origin", "https://evil.test", "Access-Control-Request-Method", "POST")
	if bad.Status != 403 || bad.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("refused preflight: %d %v", bad.Status, bad.Header)
	}
	own := r.do("GET", "/health", "", nil, "Origin", r.URL)
	if own.Header.Get("Access-Control-Allow-Origin") != r.URL || !strings.Contains(own.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("own origin: %v", own.Header)
	}
}

// TestAuthTokensNeverLogged: with debug logging, no token (query, header,
// subprotocol, refused or accepted) reaches a log line.
func TestAuthTokensNeverLogged(t *testing.T) {
	secret := []byte("log-secret")
	var logs relaytest.SyncBuffer
	r := startAuthRelayWithLogger(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret}}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	good := authUserToken(t, secret, "logged", time.Hour, "read", "write")
	expired := authUserToken(t, secret, "logged", -time.Hour, "read")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tok := range []string{good, expired} {
		r.publish(tok, "log.t", map[string]any{"a": 1})
		r.do("GET", "/api/v1/sse?topics=log.t&token="+url.QueryEscape(tok), "", nil)
		for _, via := range []string{"query", "subprotocol", "header"} {
			if c, _, err := r.dial(ctx, tok, via); err == nil {
				c.CloseNow()
			}
		}
	}
	r.do("GET", "/nope?token="+good, "", nil)
	authEventually(t, 5*time.Second, "debug log lines", func() bool { return strings.Contains(logs.String(), "http request") })
	sig := good[strings.LastIndex(good, ".")+1:]
	if strings.Contains(logs.String(), sig) || strings.Contains(logs.String(), expired[strings.LastIndex(expired, ".")+1:]) {
		t.Fatalf("a token reached the log:\n%s", logs.String())
	}
}
