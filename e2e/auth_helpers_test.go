package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/app"
	"github.com/pulsar-relay/relay/metrics"
	"github.com/pulsar-relay/relay/persistence"
)

// authRelayOpts configure a test relay with auth.
type authRelayOpts struct {
	Auth      auth.Config
	Store     persistence.Store // default: a fresh memory store
	AuthStore auth.Store        // default: memory (on Store when it is a MemoryStore)
	Gateway   gateway.Config
	Metrics   bool
}

// authTestRelay is a relay started through internal/app on 127.0.0.1:0.
type authTestRelay struct {
	t       testing.TB
	URL     string
	WSURL   string
	App     *app.Relay
	Auth    *auth.Service
	Metrics *metrics.Registry
	Store   persistence.Store
}

func authTestLogger() *slog.Logger {
	if os.Getenv("RELAY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startAuthRelay serves a relay whose auth is configured by opts; it is shut
// down when the test ends.
func startAuthRelay(t testing.TB, opts authRelayOpts) *authTestRelay {
	t.Helper()
	return startAuthRelayWithLogger(t, opts, authTestLogger())
}

// startAuthRelayWithLogger is startAuthRelay with the relay's logger.
func startAuthRelayWithLogger(t testing.TB, opts authRelayOpts, log *slog.Logger) *authTestRelay {
	t.Helper()
	if opts.Store == nil {
		opts.Store = persistence.NewMemoryStore(persistence.Limits{})
	}
	if opts.AuthStore == nil {
		ms, _ := opts.Store.(*persistence.MemoryStore)
		opts.AuthStore = persistence.NewMemoryAuthStore(ms)
	}
	if opts.Auth.BcryptCost == 0 {
		opts.Auth.BcryptCost = 4 // bcrypt.MinCost: tests log in often
	}
	svc, err := auth.New(context.Background(), opts.Auth, opts.AuthStore, log)
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw := opts.Gateway
	gw.Auth = svc
	var reg *metrics.Registry
	if opts.Metrics {
		reg = metrics.New(10)
	}
	a := app.Start(app.Options{Store: opts.Store, Gateway: gw, Logger: log, Metrics: reg}, ln)
	r := &authTestRelay{t: t, URL: "http://" + ln.Addr().String(), WSURL: "ws://" + ln.Addr().String() + "/ws",
		App: a, Auth: svc, Metrics: reg, Store: opts.Store}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Logf("shutdown: %v", err)
		}
		svc.Close()
	})
	return r
}

// authResponse is one HTTP answer.
type authResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map (nil when it is not an object).
func (r authResponse) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// Code is the SPEC error code of an error body.
func (r authResponse) Code() string {
	s, _ := r.JSON()["error"].(string)
	return s
}

var authHTTPClient = &http.Client{Timeout: 15 * time.Second}

// do sends a request with an optional bearer token and JSON body (a
// []byte or string is sent as is).
func (r *authTestRelay) do(method, path, token string, body any, hdr ...string) authResponse {
	r.t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case url.Values:
		rd = strings.NewReader(b.Encode())
		ct = "application/x-www-form-urlencoded"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, r.URL+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := authHTTPClient.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return authResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// login does the form login pulsar-relay-client does.
func (r *authTestRelay) login(user, pw string) auth.TokenPair {
	r.t.Helper()
	res := r.do("POST", "/auth/login", "", url.Values{"username": {user}, "password": {pw}, "grant_type": {"password"}})
	if res.Status != 200 {
		r.t.Fatalf("login %s: %d %s", user, res.Status, res.Body)
	}
	var p auth.TokenPair
	if err := json.Unmarshal(res.Body, &p); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// createUser creates a user with the admin token.
func (r *authTestRelay) createUser(admin, name, pw string, perms []string, topics []string) string {
	r.t.Helper()
	res := r.do("POST", "/api/v1/admin/users", admin, map[string]any{"username": name, "password": pw, "permissions": perms, "topics": topics})
	if res.Status != 201 {
		r.t.Fatalf("create user %s: %d %s", name, res.Status, res.Body)
	}
	return res.JSON()["user_id"].(string)
}

func (r *authTestRelay) publish(token, topic string, payload map[string]any) authResponse {
	r.t.Helper()
	return r.do("POST", "/api/v1/messages", token, map[string]any{"topic": topic, "payload": payload})
}

// dial opens a WebSocket; token goes in the Authorization header unless
// via is "query" or "subprotocol".
func (r *authTestRelay) dial(ctx context.Context, token, via string) (*websocket.Conn, *http.Response, error) {
	u := r.WSURL
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	switch {
	case token == "":
	case via == "query":
		u += "?token=" + url.QueryEscape(token)
	case via == "subprotocol":
		opts.Subprotocols = []string{"bearer", "bearer." + token}
	default:
		opts.HTTPHeader.Set("Authorization", "Bearer "+token)
	}
	return websocket.Dial(ctx, u, opts)
}

// startAnonymousReadRelay starts an auth relay with secret, rates and an
// admin, whose policy lets anyone read the topics "public.*" without a
// credential (anonymous_read).
func startAnonymousReadRelay(t testing.TB, secret []byte, rates auth.RateConfig) *authTestRelay {
	t.Helper()
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret,
		AdminUsername: "admin", AdminPassword: "admin-password", Rates: rates}})
	admin := r.login("admin", "admin-password").AccessToken
	doc := []byte(`{"version":1,"topics":{"public.*":{"anonymous_read":true}}}`)
	if res := r.do("PUT", "/api/v1/admin/policies", admin, doc); res.Status != 200 {
		t.Fatalf("PUT policies: %d %s", res.Status, res.Body)
	}
	return r
}

// mustDial opens a WebSocket with token in the Authorization header (none
// when ""), closed when t ends.
func (r *authTestRelay) mustDial(ctx context.Context, t testing.TB, token string) *websocket.Conn {
	t.Helper()
	c, _, err := r.dial(ctx, token, "header")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// mustWSSubscribe subscribes c to topics and fails t unless "subscribed"
// answers.
func mustWSSubscribe(ctx context.Context, t testing.TB, c *websocket.Conn, topics ...string) {
	t.Helper()
	authWSSend(ctx, t, c, map[string]any{"type": "subscribe", "topics": topics})
	if f, err := authWSRead(ctx, c); err != nil || f["type"] != "subscribed" {
		t.Fatalf("subscribe to %v: %v %v", topics, f, err)
	}
}

// mustWSRead reads c's next frame or fails t.
func mustWSRead(ctx context.Context, t testing.TB, c *websocket.Conn) map[string]any {
	t.Helper()
	f, err := authWSRead(ctx, c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

func authWSSend(ctx context.Context, t testing.TB, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("ws write: %v", err)
	}
}

func authWSRead(ctx context.Context, c *websocket.Conn) (map[string]any, error) {
	_, b, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// authEventually polls fn every 20 ms until it holds or d passes.
func authEventually(t testing.TB, d time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mintToken signs claims with method and key.
func mintToken(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, hdr ...string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for i := 0; i+1 < len(hdr); i += 2 {
		tok.Header[hdr[i]] = hdr[i+1]
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("mintToken: %v", err)
	}
	return s
}
