package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/pulsar-relay/relay/auth"
)

func authWritePEM(t *testing.T, dir, name string, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuthSecurityTable refuses every bad credential on every route and
// transport with the SPEC code, refuses what a valid credential may not do,
// and shows nothing was stored or delivered.
func TestAuthSecurityTable(t *testing.T) {
	dir := t.TempDir()
	rsKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherRS, _ := rsa.GenerateKey(rand.Reader, 2048)
	esKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsPEM := authWritePEM(t, dir, "rs.pem", &rsKey.PublicKey)
	authWritePEM(t, dir, "es.pem", &esKey.PublicKey)
	authWritePEM(t, dir, "ed.pem", edKey.Public())
	secret := []byte("table-secret")
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{
		JWTSecret:      secret,
		PublicKeyFiles: []string{filepath.Join(dir, "rs.pem"), filepath.Join(dir, "es.pem"), filepath.Join(dir, "ed.pem")},
		Issuer:         "relay-test", Audience: "relay-api",
		AdminUsername: "admin", AdminPassword: "admin-password",
	}})
	admin := r.login("admin", "admin-password").AccessToken
	r.createUser(admin, "alice", "alice-password", []string{"read", "write"}, nil)
	r.createUser(admin, "bob", "bob-password", []string{"read", "write"}, nil)
	r.createUser(admin, "jobsbot", "jobs-password", []string{"read", "write"}, []string{"jobs.*"})
	r.createUser(admin, "carol", "carol-password", []string{"read"}, nil)

	// The admin watches every topic the refused requests aim at.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watch, _, err := r.dial(ctx, admin, "header")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.CloseNow()
	authWSSend(ctx, t, watch, map[string]any{"type": "subscribe", "topics": []string{"target", "billing", "bob.private"}})
	if f, err := authWSRead(ctx, watch); err != nil || f["type"] != "subscribed" {
		t.Fatalf("admin subscribe: %v %v", f, err)
	}

	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "mallory", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
			"iss": "relay-test", "aud": "relay-api", "permissions": []string{"read", "write", "admin"}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	good := mintToken(t, jwt.SigningMethodHS256, secret, claims(nil))
	parts := strings.Split(good, ".")
	flip := func(s string) string {
		if s[len(s)/2] == 'A' {
			return s[:len(s)/2] + "B" + s[len(s)/2+1:]
		}
		return s[:len(s)/2] + "A" + s[len(s)/2+1:]
	}
	forged := mintToken(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["sub"] = "someone-else" }))
	bad := []struct{ name, token string }{
		{"no credential", ""},
		{"alg none", mintToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))},
		{"HS256 keyed with the RS256 public key", mintToken(t, jwt.SigningMethodHS256, rsPEM, claims(nil), "kid", "rs")},
		{"expired", mintToken(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }))},
		{"not yet valid", mintToken(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }))},
		{"wrong issuer", mintToken(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["iss"] = "evil" }))},
		{"wrong audience", mintToken(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["aud"] = "other-api" }))},
		{"no expiry", mintToken(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { delete(c, "exp") }))},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2])},
		{"tampered claims", parts[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2]},
		{"RS256 by an unknown key", mintToken(t, jwt.SigningMethodRS256, otherRS, claims(nil), "kid", "rs")},
		{"HS256 by another secret", mintToken(t, jwt.SigningMethodHS256, []byte("guess"), claims(nil))},
		{"unknown API key", "not-a-real-api-key"},
	}
	publishBody := map[string]any{"topic": "target", "payload": map[string]any{"evil": true}}
	routes := []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/v1/messages", publishBody},
		{"POST", "/api/v1/messages/bulk", map[string]any{"messages": []any{publishBody}}},
		{"GET", "/api/v1/topics/target/messages", nil},
		{"POST", "/api/v1/poll", map[string]any{"topics": []string{"target"}, "timeout": 1}},
		{"POST", "/messages/poll", map[string]any{"topics": []string{"target"}, "timeout": 1}},
		{"GET", "/api/v1/sse?topics=target", nil},
		{"GET", "/api/v1/topics", nil},
		{"POST", "/api/v1/topics", map[string]any{"topic_name": "evil.topic"}},
		{"GET", "/api/v1/topics/target", nil},
		{"PUT", "/api/v1/topics/target", map[string]any{"description": "x"}},
		{"DELETE", "/api/v1/topics/target", nil},
		{"POST", "/api/v1/topics/target/grants", map[string]any{"user_id": "x", "permission": "write"}},
		{"GET", "/auth/me", nil},
		{"POST", "/api/v1/admin/users", map[string]any{"username": "evil", "password": "evil-password"}},
	}
	for _, b := range bad {
		for _, rt := range routes {
			res := r.do(rt.method, rt.path, b.token, rt.body)
			if res.Status != 401 || res.Code() != "UNAUTHORIZED" {
				t.Errorf("%s: %s %s: %d %s, want 401 UNAUTHORIZED", b.name, rt.method, rt.path, res.Status, res.Body)
			}
		}
		// SSE's ?token= form.
		if res := r.do("GET", "/api/v1/sse?topics=target&token="+url.QueryEscape(b.token), "", nil); res.Status != 401 {
			t.Errorf("%s: SSE ?token=: %d", b.name, res.Status)
		}
		for _, via := range []string{"header", "query", "subprotocol"} {
			c, resp, err := r.dial(ctx, b.token, via)
			if err == nil {
				c.CloseNow()
				t.Errorf("%s: WebSocket (%s) upgraded", b.name, via)
				continue
			}
			if resp == nil || resp.StatusCode != 401 {
				t.Errorf("%s: WebSocket (%s): %v, want 401", b.name, via, err)
			}
		}
	}

	// Positive controls: each accepted algorithm, and each WS transport.
	for name, tok := range map[string]string{
		"RS256": mintToken(t, jwt.SigningMethodRS256, rsKey, claims(nil), "kid", "rs"),
		"ES256": mintToken(t, jwt.SigningMethodES256, esKey, claims(nil), "kid", "es"),
		"EdDSA": mintToken(t, jwt.SigningMethodEdDSA, edKey, claims(nil)),
	} {
		if res := r.publish(tok, "control."+name, map[string]any{"ok": true}); res.Status != 201 {
			t.Errorf("%s token refused: %d %s", name, res.Status, res.Body)
		}
	}
	for _, via := range []string{"header", "query", "subprotocol"} {
		c, _, err := r.dial(ctx, admin, via)
		if err != nil {
			t.Fatalf("WebSocket with a valid token (%s): %v", via, err)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}

	// Refresh tokens: revoked (logout), and replayed (the whole login revoked).
	p := r.login("alice", "alice-password")
	r.do("POST", "/auth/logout", "", map[string]string{"refresh_token": p.RefreshToken})
	if res := r.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": p.RefreshToken}); res.Status != 401 || res.Code() != "UNAUTHORIZED" {
		t.Errorf("revoked refresh token: %d %s", res.Status, res.Body)
	}
	if res := r.publish(p.AccessToken, "target", map[string]any{"after": "logout"}); res.Status != 401 {
		t.Errorf("access token of a logged-out login: %d %s", res.Status, res.Body)
	}
	p1 := r.login("alice", "alice-password")
	res := r.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": p1.RefreshToken})
	if res.Status != 200 {
		t.Fatalf("first refresh: %d %s", res.Status, res.Body)
	}
	p2access, p2refresh := res.JSON()["access_token"].(string), res.JSON()["refresh_token"].(string)
	if res := r.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": p1.RefreshToken}); res.Status != 401 {
		t.Errorf("replayed refresh token: %d %s", res.Status, res.Body)
	}
	if res := r.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": p2refresh}); res.Status != 401 {
		t.Errorf("refresh token of a replayed login: %d %s", res.Status, res.Body)
	}
	for _, tok := range []string{p1.AccessToken, p2access} {
		if res := r.publish(tok, "target", map[string]any{"after": "replay"}); res.Status != 401 {
			t.Errorf("access token of a replayed login: %d %s", res.Status, res.Body)
		}
	}

	// Authorization with valid credentials.
	alice := r.login("alice", "alice-password").AccessToken
	bob := r.login("bob", "bob-password").AccessToken
	jobs := r.login("jobsbot", "jobs-password").AccessToken
	carol := r.login("carol", "carol-password").AccessToken
	if res := r.do("POST", "/api/v1/topics", bob, map[string]string{"topic_name": "bob.private"}); res.Status != 201 {
		t.Fatalf("bob creates his topic: %d %s", res.Status, res.Body)
	}
	if res := r.publish(bob, "bob.private", map[string]any{"secret": 1}); res.Status != 201 {
		t.Fatalf("bob publishes: %d %s", res.Status, res.Body)
	}
	forbidden := func(what string, res authResponse) string {
		t.Helper()
		if res.Status != 403 || res.Code() != "FORBIDDEN" {
			t.Errorf("%s: %d %s, want 403 FORBIDDEN", what, res.Status, res.Body)
		}
		return res.JSON()["message"].(string)
	}
	forbidden("alice reads bob's topic", r.do("GET", "/api/v1/topics/bob.private/messages", alice, nil))
	forbidden("alice publishes to bob's topic", r.publish(alice, "bob.private", map[string]any{"evil": 1}))
	msgOwned := forbidden("alice gets bob's topic", r.do("GET", "/api/v1/topics/bob.private", alice, nil))
	forbidden("alice deletes bob's topic", r.do("DELETE", "/api/v1/topics/bob.private", alice, nil))
	msgGhost := forbidden("alice deletes a topic that does not exist", r.do("DELETE", "/api/v1/topics/ghost.topic", alice, nil))
	forbidden("alice grants herself bob's topic", r.do("POST", "/api/v1/topics/bob.private/grants", alice, map[string]any{"username": "alice", "permission": "write"}))
	forbidden("alice creates a user", r.do("POST", "/api/v1/admin/users", alice, map[string]any{"username": "x", "password": "xxxxxxxxxx"}))
	forbidden("carol (read only) publishes", r.publish(carol, "carol.topic", map[string]any{"evil": 1}))
	forbidden("jobs.* token publishes to billing", r.publish(jobs, "billing", map[string]any{"evil": 1}))
	msgBilling := forbidden("jobs.* token gets billing", r.do("GET", "/api/v1/topics/billing", jobs, nil))
	msgBobJobs := forbidden("jobs.* token gets bob's topic", r.do("GET", "/api/v1/topics/bob.private", jobs, nil))
	if msgOwned != msgGhost || msgBilling != msgBobJobs {
		t.Errorf("a 403 tells whether the topic exists: %q vs %q, %q vs %q", msgOwned, msgGhost, msgBilling, msgBobJobs)
	}
	bulk := r.do("POST", "/api/v1/messages/bulk", jobs, map[string]any{"messages": []any{
		map[string]any{"topic": "jobs.a", "payload": map[string]any{"ok": 1}},
		map[string]any{"topic": "billing", "payload": map[string]any{"evil": 1}},
	}})
	results, _ := bulk.JSON()["results"].([]any)
	if bulk.Status != 207 || len(results) != 2 || results[0].(map[string]any)["status"] != "accepted" ||
		results[1].(map[string]any)["status"] != "rejected" || results[1].(map[string]any)["error"] != "FORBIDDEN" {
		t.Errorf("bulk with a forbidden item: %d %s", bulk.Status, bulk.Body)
	}
	// WebSocket: the forbidden topic gets a FORBIDDEN frame, the other subscribes.
	ac, _, err := r.dial(ctx, alice, "subprotocol")
	if err != nil {
		t.Fatal(err)
	}
	defer ac.CloseNow()
	authWSSend(ctx, t, ac, map[string]any{"type": "subscribe", "topics": []string{"bob.private", "alice.topic"}, "offset": "earliest"})
	f1, _ := authWSRead(ctx, ac)
	f2, _ := authWSRead(ctx, ac)
	if f1["type"] != "error" || f1["code"] != "FORBIDDEN" || f2["type"] != "subscribed" || len(f2["topics"].([]any)) != 1 || f2["topics"].([]any)[0] != "alice.topic" {
		t.Errorf("alice's WebSocket subscribe: %v then %v", f1, f2)
	}

	// Grants and public topics open exactly what they say.
	if res := r.do("POST", "/api/v1/topics/bob.private/grants", bob, map[string]any{"username": "alice", "permission": "read"}); res.Status != 200 {
		t.Fatalf("bob grants alice read: %d %s", res.Status, res.Body)
	}
	if res := r.do("GET", "/api/v1/topics/bob.private/messages", alice, nil); res.Status != 200 {
		t.Errorf("alice reads with a read grant: %d %s", res.Status, res.Body)
	}
	forbidden("alice publishes with a read grant", r.publish(alice, "bob.private", map[string]any{"evil": 2}))
	forbidden("carol reads bob's private topic", r.do("GET", "/api/v1/topics/bob.private/messages", carol, nil))
	if res := r.do("PUT", "/api/v1/topics/bob.private", bob, map[string]any{"public": true}); res.Status != 200 {
		t.Fatalf("bob makes his topic public: %d %s", res.Status, res.Body)
	}
	if res := r.do("GET", "/api/v1/topics/bob.private/messages", carol, nil); res.Status != 200 {
		t.Errorf("carol reads a public topic: %d %s", res.Status, res.Body)
	}

	// Nothing stored or delivered: the admin's first delivery is the marker.
	if res := r.publish(admin, "target", map[string]any{"marker": true}); res.Status != 201 {
		t.Fatal(res.Status)
	}
	for {
		f, err := authWSRead(ctx, watch)
		if err != nil {
			t.Fatalf("admin's watch: %v", err)
		}
		payload, _ := f["payload"].(map[string]any)
		if payload["evil"] != nil || payload["after"] != nil {
			t.Errorf("a refused publish was delivered: %v", f)
		}
		if payload["marker"] == true {
			break
		}
	}
	for topic, want := range map[string]int{"target": 1, "billing": 0, "bob.private": 1} {
		h := r.do("GET", "/api/v1/topics/"+topic+"/messages", admin, nil)
		if n := len(h.JSON()["messages"].([]any)); n != want {
			t.Errorf("%s holds %d messages, want %d: %s", topic, n, want, h.Body)
		}
	}
}
