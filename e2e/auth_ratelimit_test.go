package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/gateway"
)

func authUserToken(t testing.TB, secret []byte, sub string, ttl time.Duration, perms ...string) string {
	return mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(ttl).Unix(), "permissions": perms})
}

// TestAuthPublishRateLimit: 200 publishes at once from one identity with
// 50/s burst 50 give 50 x 201 (plus what the bucket refilled meanwhile) and
// 429s with a correct Retry-After; another identity is unaffected; nothing
// refused is stored; refusals are counted in relay_rate_limited_total.
func TestAuthPublishRateLimit(t *testing.T) {
	secret := []byte("rate-secret")
	r := startAuthRelay(t, authRelayOpts{Metrics: true, Auth: auth.Config{JWTSecret: secret, Rates: auth.RateConfig{Publish: 50, PublishBurst: 50}}})
	a := authUserToken(t, secret, "ident-a", time.Hour, "read", "write")
	b := authUserToken(t, secret, "ident-b", time.Hour, "read", "write")

	const n = 200
	statuses := make([]authResponse, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = r.publish(a, "rate.a", map[string]any{"i": i})
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	accepted, limited := 0, 0
	for _, res := range statuses {
		switch res.Status {
		case 201:
			accepted++
		case 429:
			limited++
			if res.Code() != "RATE_LIMIT_EXCEEDED" || res.Header.Get("Retry-After") != "1" ||
				res.Header.Get("X-RateLimit-Limit") != "50" || res.Header.Get("X-RateLimit-Remaining") != "0" ||
				res.Header.Get("X-RateLimit-Reset") == "" {
				t.Fatalf("429 answer: %s %v", res.Body, res.Header)
			}
		default:
			t.Fatalf("publish: %d %s", res.Status, res.Body)
		}
	}
	// The bucket refills at 50/s while the 200 requests arrive.
	most := 50 + int(math.Ceil(50*elapsed.Seconds()))
	if accepted < 50 || accepted > most || limited != n-accepted {
		t.Fatalf("%d accepted, %d limited in %s; want 50..%d accepted", accepted, limited, elapsed, most)
	}
	t.Logf("%d x 201, %d x 429 in %s", accepted, limited, elapsed)

	for i := range 10 {
		if res := r.publish(b, "rate.b", map[string]any{"i": i}); res.Status != 201 {
			t.Fatalf("identity b publish %d: %d %s", i, res.Status, res.Body)
		}
	}
	h := r.do("GET", "/api/v1/topics/rate.a/messages?limit=1000", b, nil)
	if got := len(h.JSON()["messages"].([]any)); got != accepted {
		t.Fatalf("rate.a holds %d messages, %d were accepted", got, accepted)
	}
	m := r.do("GET", "/metrics", "", nil)
	for _, want := range []string{`relay_rate_limited_total{route="/api/v1/messages"} `, `relay_auth_entries{kind="rate_publish"} 2`} {
		if !strings.Contains(string(m.Body), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}

// TestAuthWebSocketFrameLimit: a WebSocket over its frame rate gets
// RATE_LIMIT_EXCEEDED error frames and stays open.
func TestAuthWebSocketFrameLimit(t *testing.T) {
	secret := []byte("ws-rate-secret")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret, Rates: auth.RateConfig{WSFrames: 5}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := r.dial(ctx, authUserToken(t, secret, "ws-user", time.Hour, "read"), "query")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	const sent = 20
	for range sent {
		authWSSend(ctx, t, c, map[string]any{"type": "ping"})
	}
	pongs, limited := 0, 0
	for pongs+limited < sent {
		f, err := authWSRead(ctx, c)
		if err != nil {
			t.Fatalf("after %d pongs and %d refusals: %v", pongs, limited, err)
		}
		switch {
		case f["type"] == "pong":
			pongs++
		case f["type"] == "error" && f["code"] == "RATE_LIMIT_EXCEEDED":
			limited++
		default:
			t.Fatalf("unexpected frame %v", f)
		}
	}
	if limited == 0 || pongs < 5 {
		t.Fatalf("%d pongs, %d refusals", pongs, limited)
	}
	// Still open: once the bucket refills, a ping gets its pong.
	authEventually(t, 5*time.Second, "a pong after the burst", func() bool {
		authWSSend(ctx, t, c, map[string]any{"type": "ping"})
		f, err := authWSRead(ctx, c)
		if err != nil {
			t.Fatalf("connection closed: %v", err)
		}
		return f["type"] == "pong"
	})
}

// TestAuthConnectionLimit: over RELAY_RATE_CONNECTIONS the upgrade gets 429;
// closing one frees its slot.
func TestAuthConnectionLimit(t *testing.T) {
	secret := []byte("conn-secret")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret, Rates: auth.RateConfig{Connections: 2}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok := authUserToken(t, secret, "conn-user", time.Hour, "read")
	c1, _, err := r.dial(ctx, tok, "header")
	if err != nil {
		t.Fatal(err)
	}
	c2, _, err := r.dial(ctx, tok, "header")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	if c, resp, err := r.dial(ctx, tok, "header"); err == nil || resp == nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		if c != nil {
			c.CloseNow()
		}
		t.Fatalf("third connection: %v %v", resp, err)
	}
	other, _, err := r.dial(ctx, authUserToken(t, secret, "someone-else", time.Hour, "read"), "header")
	if err != nil {
		t.Fatalf("another identity: %v", err)
	}
	other.CloseNow()
	c1.Close(websocket.StatusNormalClosure, "")
	authEventually(t, 5*time.Second, "the closed connection's slot to free", func() bool {
		c, _, err := r.dial(ctx, tok, "header")
		if err == nil {
			c.CloseNow()
		}
		return err == nil
	})
}

// TestAuthWebSocketTokenExpiry: at its token's expiry a WebSocket is closed
// with 1008 "token expired", unless it sent a fresh token in an auth frame.
func TestAuthWebSocketTokenExpiry(t *testing.T) {
	secret := []byte("expiry-secret")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	short := authUserToken(t, secret, "ws-user", 2*time.Second, "read")
	stale, _, err := r.dial(ctx, short, "header")
	if err != nil {
		t.Fatal(err)
	}
	defer stale.CloseNow()
	renewed, _, err := r.dial(ctx, short, "subprotocol")
	if err != nil {
		t.Fatal(err)
	}
	defer renewed.CloseNow()
	for _, c := range []*websocket.Conn{stale, renewed} {
		authWSSend(ctx, t, c, map[string]any{"type": "subscribe", "topics": []string{"expiry.t"}})
		if f, err := authWSRead(ctx, c); err != nil || f["type"] != "subscribed" {
			t.Fatalf("subscribe: %v %v", f, err)
		}
	}
	// A bad auth frame gets an error frame; a token of another subject too.
	authWSSend(ctx, t, renewed, map[string]any{"type": "auth", "token": "garbage"})
	if f, err := authWSRead(ctx, renewed); err != nil || f["code"] != "UNAUTHORIZED" {
		t.Fatalf("bad auth frame: %v %v", f, err)
	}
	authWSSend(ctx, t, renewed, map[string]any{"type": "auth", "token": authUserToken(t, secret, "someone-else", time.Hour, "read")})
	if f, err := authWSRead(ctx, renewed); err != nil || f["code"] != "UNAUTHORIZED" {
		t.Fatalf("auth frame of another subject: %v %v", f, err)
	}
	authWSSend(ctx, t, renewed, map[string]any{"type": "auth", "token": authUserToken(t, secret, "ws-user", time.Hour, "read")})

	_, _, err = stale.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "token expired" {
		t.Fatalf("stale connection: %v, want close 1008 token expired", err)
	}
	// The renewed one outlives the old expiry by more than a sweep (1 s):
	// it keeps answering pings.
	for until := time.Now().Add(1500 * time.Millisecond); time.Now().Before(until); {
		authWSSend(ctx, t, renewed, map[string]any{"type": "ping"})
		if f, err := authWSRead(ctx, renewed); err != nil || f["type"] != "pong" {
			t.Fatalf("renewed connection: %v %v", f, err)
		}
		time.Sleep(100 * time.Millisecond) // paces the pings over more than one sweep
	}
}

// TestAuthSSETokenExpiry: an SSE stream ends at its token's expiry with a
// relay-error UNAUTHORIZED event (an SSE client cannot renew in band).
func TestAuthSSETokenExpiry(t *testing.T) {
	secret := []byte("sse-expiry-secret")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	short := authUserToken(t, secret, "sse-user", 2*time.Second, "read")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/api/v1/sse?topics=expiry.sse&token="+short, nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body) // the relay ends the stream
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("stream ended after %v, before its token expired", el)
	}
	if !strings.Contains(string(body), "event: relay-error\ndata: {\"code\":\"UNAUTHORIZED\",\"message\":\"token expired\"}") {
		t.Fatalf("stream did not say why it ended:\n%s", body)
	}
}

// TestAuthWebSocketExpiredTokenActsOnNothing: a frame that arrives after
// the token's expiry, before the sweeper's next pass, is not acted on: the
// connection is closed 1008 instead of subscribing and replaying (the
// sweeper runs once a second, so that window was up to a second long).
func TestAuthWebSocketExpiredTokenActsOnNothing(t *testing.T) {
	secret := []byte("late-secret")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	writer := authUserToken(t, secret, "writer", time.Hour, "read", "write")
	if res := r.do("POST", "/api/v1/messages", writer, map[string]any{"topic": "late.topic", "payload": map[string]any{"secret": 1}}); res.Status != 201 {
		t.Fatalf("publish: %d %s", res.Status, res.Body)
	}
	exp := time.Now().Add(2 * time.Second).Unix()
	short := mintToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "late", "exp": exp, "permissions": []string{"read"}})
	c, _, err := r.dial(ctx, short, "header")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	time.Sleep(time.Until(time.Unix(exp, 0).Add(5 * time.Millisecond)))
	authWSSend(ctx, t, c, map[string]any{"type": "subscribe", "topics": []string{"late.topic"}, "offset": "earliest"})
	f, err := authWSRead(ctx, c)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation {
		t.Fatalf("a subscribe after the token expired: %v %v, want close 1008 and no frame", f, err)
	}
}

// TestAuthFrameMovesStreamSlot: an anonymous WebSocket that sends an auth
// frame counts as its user's from then on: it gives back its address's
// stream slot (RELAY_RATE_CONNECTIONS) and takes one of the user's. With
// the user's slots all taken, the auth frame is refused with
// RATE_LIMIT_EXCEEDED and the connection stays anonymous, on its address.
func TestAuthFrameMovesStreamSlot(t *testing.T) {
	secret := []byte("move-secret-move-secret-move-sec")
	r := startAnonymousReadRelay(t, secret, auth.RateConfig{Connections: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok := authUserToken(t, secret, "mover", time.Hour, "read")
	dialStatus := func(token string) (*websocket.Conn, int) {
		c, resp, err := r.dial(ctx, token, "header")
		if err == nil {
			return c, 101
		}
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		return nil, resp.StatusCode
	}
	// ping waits for the pong, so every frame before it was handled.
	ping := func(c *websocket.Conn) map[string]any {
		authWSSend(ctx, t, c, map[string]any{"type": "ping"})
		f, err := authWSRead(ctx, c)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return f
	}

	first, st := dialStatus("")
	if st != 101 {
		t.Fatalf("anonymous dial: %d", st)
	}
	defer first.CloseNow()
	if _, st := dialStatus(""); st != 429 {
		t.Fatalf("a second anonymous dial from the address holding its one slot: %d, want 429", st)
	}
	authWSSend(ctx, t, first, map[string]any{"type": "auth", "token": tok})
	if f := ping(first); f["type"] != "pong" {
		t.Fatalf("after the auth frame: %v", f)
	}
	// The slot moved: the address has its slot back, the user has none.
	second, st := dialStatus("")
	if st != 101 {
		t.Fatalf("anonymous dial after the first connection authenticated: %d, want 101", st)
	}
	defer second.CloseNow()
	if c, st := dialStatus(tok); st != 429 {
		if c != nil {
			c.CloseNow()
		}
		t.Fatalf("dial as the user whose slot the authenticated connection holds: %d, want 429", st)
	}
	// The user's slot is taken: the second connection's auth frame is
	// refused and it stays on the address's slot.
	authWSSend(ctx, t, second, map[string]any{"type": "auth", "token": tok})
	if f := ping(second); f["type"] != "error" || f["code"] != "RATE_LIMIT_EXCEEDED" {
		t.Fatalf("auth frame with the user's slots taken: %v", f)
	}
	if f, _ := authWSRead(ctx, second); f["type"] != "pong" {
		t.Fatalf("after the refused auth frame: %v", f)
	}
	if _, st := dialStatus(""); st != 429 {
		t.Fatalf("anonymous dial while the refused connection holds the address's slot: %d, want 429", st)
	}
	// Closing the authenticated connection frees the user's slot.
	first.Close(websocket.StatusNormalClosure, "")
	authEventually(t, 5*time.Second, "the user's slot to free", func() bool {
		c, st := dialStatus(tok)
		if c != nil {
			c.CloseNow()
		}
		return st == 101
	})
}

// TestSubscriptionQuotaPerIdentity: RELAY_RATE_SUBSCRIPTIONS bounds the
// topics one identity subscribes at once over all its WebSockets, SSE
// streams and long-polls: over it a WebSocket subscribe gets
// RATE_LIMIT_EXCEEDED (nothing subscribed), an SSE stream and a long-poll
// 429; another identity is unaffected; an unsubscribe gives its share back.
func TestSubscriptionQuotaPerIdentity(t *testing.T) {
	secret := []byte("quota-secret")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: secret, Rates: auth.RateConfig{Subscriptions: 3}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok := authUserToken(t, secret, "quota-user", time.Hour, "read")
	dial := func(token string) *websocket.Conn { return r.mustDial(ctx, t, token) }
	next := func(c *websocket.Conn) map[string]any { return mustWSRead(ctx, t, c) }
	a, b := dial(tok), dial(tok)
	authWSSend(ctx, t, a, map[string]any{"type": "subscribe", "topics": []string{"q.1", "q.2"}})
	if f := next(a); f["type"] != "subscribed" {
		t.Fatalf("first subscribe: %v", f)
	}
	authWSSend(ctx, t, b, map[string]any{"type": "subscribe", "topics": []string{"q.3", "q.4"}})
	if f := next(b); f["type"] != "error" || f["code"] != "RATE_LIMIT_EXCEEDED" {
		t.Fatalf("a subscribe past the identity's 3 topics on another connection: %v", f)
	}
	if res := r.do("GET", "/api/v1/sse?topics=q.3,q.4", tok, nil); res.Status != http.StatusTooManyRequests || res.Code() != "RATE_LIMIT_EXCEEDED" {
		t.Fatalf("SSE past the quota: %d %s", res.Status, res.Body)
	}
	if res := r.do("POST", "/api/v1/poll", tok, map[string]any{"topics": []string{"q.3", "q.4"}, "timeout": 1}); res.Status != http.StatusTooManyRequests {
		t.Fatalf("long-poll past the quota: %d %s", res.Status, res.Body)
	}
	// Another identity has its own share.
	other := dial(authUserToken(t, secret, "someone-else", time.Hour, "read"))
	authWSSend(ctx, t, other, map[string]any{"type": "subscribe", "topics": []string{"q.3", "q.4", "q.5"}})
	if f := next(other); f["type"] != "subscribed" {
		t.Fatalf("another identity's subscribe: %v", f)
	}
	// One more fits; an unsubscribe gives one back for the long-poll.
	authWSSend(ctx, t, b, map[string]any{"type": "subscribe", "topics": []string{"q.3"}})
	if f := next(b); f["type"] != "subscribed" {
		t.Fatalf("a subscribe within the quota: %v", f)
	}
	authWSSend(ctx, t, a, map[string]any{"type": "unsubscribe", "topics": []string{"q.1"}})
	if f := next(a); f["type"] != "unsubscribed" {
		t.Fatalf("unsubscribe: %v", f)
	}
	if res := r.do("POST", "/api/v1/poll", tok, map[string]any{"topics": []string{"q.9"}, "timeout": 1}); res.Status != http.StatusOK {
		t.Fatalf("long-poll within the quota after an unsubscribe: %d %s", res.Status, res.Body)
	}
}

// TestAuthFrameMovesSubscriptions: an anonymous WebSocket's auth frame
// moves the topics it holds from its address's RELAY_RATE_SUBSCRIPTIONS
// share to its user's; with no room in the user's share the frame is
// refused (RATE_LIMIT_EXCEEDED) and the connection stays anonymous, its
// topics on its address.
func TestAuthFrameMovesSubscriptions(t *testing.T) {
	secret := []byte("moves-subs-secret-moves-subs-sec")
	r := startAnonymousReadRelay(t, secret, auth.RateConfig{Subscriptions: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(token string) *websocket.Conn { return r.mustDial(ctx, t, token) }
	next := func(c *websocket.Conn) map[string]any { return mustWSRead(ctx, t, c) }
	subscribe := func(c *websocket.Conn, topics ...string) map[string]any {
		authWSSend(ctx, t, c, map[string]any{"type": "subscribe", "topics": topics})
		return next(c)
	}
	ping := func(c *websocket.Conn) map[string]any {
		authWSSend(ctx, t, c, map[string]any{"type": "ping"})
		return next(c)
	}
	tok := authUserToken(t, secret, "mover", time.Hour, "read")

	a, b := dial(""), dial("")
	if f := subscribe(a, "public.1", "public.2"); f["type"] != "subscribed" {
		t.Fatalf("anonymous subscribe: %v", f)
	}
	if f := subscribe(b, "public.3"); f["type"] != "error" || f["code"] != "RATE_LIMIT_EXCEEDED" {
		t.Fatalf("a subscribe past the address's share: %v", f)
	}
	authWSSend(ctx, t, a, map[string]any{"type": "auth", "token": tok})
	if f := ping(a); f["type"] != "pong" {
		t.Fatalf("after the auth frame: %v", f)
	}
	// a's two topics are the user's now: the address has room again, the
	// user has none.
	if f := subscribe(b, "public.3", "public.4"); f["type"] != "subscribed" {
		t.Fatalf("a subscribe on the address after a's topics moved: %v", f)
	}
	if f := subscribe(dial(tok), "public.5"); f["type"] != "error" || f["code"] != "RATE_LIMIT_EXCEEDED" {
		t.Fatalf("a subscribe past the user's share: %v", f)
	}
	// b's auth frame finds no room in the user's share: refused, and b's
	// topics stay on the address.
	authWSSend(ctx, t, b, map[string]any{"type": "auth", "token": tok})
	if f := ping(b); f["type"] != "error" || f["code"] != "RATE_LIMIT_EXCEEDED" {
		t.Fatalf("an auth frame with no room in the user's share: %v", f)
	}
	if f := next(b); f["type"] != "pong" {
		t.Fatalf("after the refused auth frame: %v", f)
	}
	if f := subscribe(dial(""), "public.6"); f["type"] != "error" || f["code"] != "RATE_LIMIT_EXCEEDED" {
		t.Fatalf("the address's share after the refused move: %v", f)
	}
}

// TestAuthLogoutEndsStreams: a logout (or a refresh-token replay) revokes
// the login's access tokens for streams already open, not only for new
// requests: its WebSockets close 1008 "login revoked" (a subscribe sent
// after the logout subscribes to nothing) and its SSE streams end with a
// relay-error event. Before, they read on, and subscribed to new topics,
// until the token's exp.
func TestAuthLogoutEndsStreams(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: []byte("logout-ends-streams-secret-0123456789"),
		AdminUsername: "admin", AdminPassword: "admin-password"}})
	admin := r.login("admin", "admin-password").AccessToken
	r.createUser(admin, "alice", "alice-password", []string{"read", "write"}, nil)
	pair := r.login("alice", "alice-password")
	other := r.login("alice", "alice-password") // another login of hers stays
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	watched := r.mustDial(ctx, t, pair.AccessToken)
	mustWSSubscribe(ctx, t, watched, "revoke.before")
	late := r.mustDial(ctx, t, pair.AccessToken)
	kept := r.mustDial(ctx, t, other.AccessToken)
	mustWSSubscribe(ctx, t, kept, "revoke.before")
	sseCtx, sseCancel := context.WithTimeout(ctx, 20*time.Second)
	defer sseCancel()
	req, _ := http.NewRequestWithContext(sseCtx, http.MethodGet, r.URL+"/api/v1/sse?topics=revoke.sse", nil)
	req.Header.Set("Authorization", "Bearer "+pair.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sse: %v %v", resp, err)
	}
	defer resp.Body.Close()

	if res := r.do("POST", "/auth/logout", "", map[string]string{"refresh_token": pair.RefreshToken}); res.Status != 204 {
		t.Fatalf("logout: %d %s", res.Status, res.Body)
	}
	// A subscribe sent at once, before any watcher's pass: no frame.
	authWSSend(ctx, t, late, map[string]any{"type": "subscribe", "topics": []string{"revoke.after"}})
	var ce websocket.CloseError
	if f, err := authWSRead(ctx, late); !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "login revoked" {
		t.Fatalf("a subscribe after the logout: %v %v, want close 1008 login revoked and no frame", f, err)
	}
	if f, err := authWSRead(ctx, watched); !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "login revoked" {
		t.Fatalf("an open subscription after the logout: %v %v, want close 1008 login revoked", f, err)
	}
	body, _ := io.ReadAll(resp.Body) // the relay ends the stream
	if !strings.Contains(string(body), "event: relay-error\ndata: {\"code\":\"UNAUTHORIZED\",\"message\":\"login revoked\"}") {
		t.Fatalf("the SSE stream did not end with login revoked:\n%s", body)
	}
	// Her other login reads on.
	authWSSend(ctx, t, kept, map[string]any{"type": "ping"})
	if f, err := authWSRead(ctx, kept); err != nil || f["type"] != "pong" {
		t.Fatalf("the other login's connection: %v %v", f, err)
	}
}

// slowHash is a bcrypt hash of "slow-password" at cost 12 (a quarter of a
// second of CPU per check, more under -race), written out so the test
// does not pay for making it.
const slowHash = "$2a$12$.qNhtEBHQN5jWchyoLiiXelOPBndSn2yP0eqOfDr.71PtV5PhHQ.a"

// TestLoginPasswordChecksBounded: at most GOMAXPROCS/2 password checks
// (bcrypt) run at once, whatever the per-address and per-name limits let
// through; a login that waits past the publish timeout for a slot gets 503
// and counts relay_limit_hits_total{reason="login_slots"}. Before, clients
// from a few addresses kept every core on bcrypt (/health answered in over
// a second).
func TestLoginPasswordChecksBounded(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.json")
	b, _ := json.Marshal([]auth.FileUser{{Username: "slow", PasswordHash: slowHash, Permissions: []string{"read"}}})
	if err := os.WriteFile(users, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{UsersFile: users, JWTSecret: []byte("login-slots-secret-0123456789abcdef")},
		Gateway: gateway.Config{PublishTimeout: 50 * time.Millisecond}, Metrics: true})
	n := 2*runtime.GOMAXPROCS(0) + 2
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() {
			statuses[i] = r.do("POST", "/auth/login", "", url.Values{"username": {"slow"}, "password": {"wrong"}}).Status
		})
	}
	wg.Wait()
	refused := 0
	for i, st := range statuses {
		switch st {
		case 401:
		case 503:
			refused++
		default:
			t.Fatalf("login %d: %d, want 401 or 503", i, st)
		}
	}
	if refused == 0 {
		t.Fatalf("%d logins at once, each a quarter-second check: none waited past 50 ms for a slot (%v)", n, statuses)
	}
	if got := hardenMetric(t, r.Metrics, "relay_limit_hits_total", map[string]string{"reason": "login_slots"}); got != float64(refused) {
		t.Fatalf("relay_limit_hits_total{reason=login_slots} = %v, want %d", got, refused)
	}
	if res := r.do("POST", "/auth/login", "", url.Values{"username": {"slow"}, "password": {"slow-password"}}); res.Status != 200 {
		t.Fatalf("a login after the rush: %d %s", res.Status, res.Body)
	}
}
