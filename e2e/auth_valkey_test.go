package e2e

import (
	"context"
	"testing"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/persistence"
)

// authValkeyRelay starts a relay on srv with its auth state in the same Valkey.
func authValkeyRelay(t *testing.T, srv *valkeytest.Server, cfg auth.Config) *authTestRelay {
	t.Helper()
	vs, err := persistence.NewValkeyStore(context.Background(), persistence.ValkeyConfig{Addrs: []string{srv.Addr()}}, authTestLogger())
	if err != nil {
		t.Fatal(err)
	}
	return startAuthRelay(t, authRelayOpts{Auth: cfg, Store: vs, AuthStore: persistence.NewValkeyAuthStore(vs)})
}

// TestAuthTwoInstancesShareValkey: a refresh rotation, a replay and a
// logout on one instance are honoured by the other at once; a topic created
// on one is owned on the other.
func TestAuthTwoInstancesShareValkey(t *testing.T) {
	srv := valkeytest.Start(t)
	cfg := auth.Config{JWTSecret: []byte("fleet-secret"), AdminUsername: "admin", AdminPassword: "admin-password"}
	a := authValkeyRelay(t, srv, cfg)
	b := authValkeyRelay(t, srv, cfg)
	adminA := a.login("admin", "admin-password").AccessToken
	a.createUser(adminA, "alice", "alice-password", []string{"read", "write"}, nil)
	a.createUser(adminA, "bob", "bob-password", []string{"read", "write"}, nil)

	// A user created on A logs in on B; B rotates, A sees the rotation.
	p1 := b.login("alice", "alice-password")
	res := a.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": p1.RefreshToken})
	if res.Status != 200 {
		t.Fatalf("refresh on A of B's login: %d %s", res.Status, res.Body)
	}
	p2refresh := res.JSON()["refresh_token"].(string)
	p2access := res.JSON()["access_token"].(string)
	if res := b.publish(p2access, "alice.topic", map[string]any{"n": 1}); res.Status != 201 {
		t.Fatalf("B accepts A's access token: %d %s", res.Status, res.Body)
	}
	// The spent token replayed on B: 401, and the whole login is revoked on A.
	if res := b.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": p1.RefreshToken}); res.Status != 401 {
		t.Fatalf("replay on B: %d %s", res.Status, res.Body)
	}
	if res := a.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": p2refresh}); res.Status != 401 {
		t.Fatalf("A honours B's replay revocation: %d %s", res.Status, res.Body)
	}

	// Logout on A, refresh on B: refused at once.
	q := a.login("alice", "alice-password")
	if res := a.do("POST", "/auth/logout", "", map[string]string{"refresh_token": q.RefreshToken}); res.Status != 204 {
		t.Fatalf("logout on A: %d", res.Status)
	}
	if res := b.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": q.RefreshToken}); res.Status != 401 {
		t.Fatalf("B honours A's logout: %d %s", res.Status, res.Body)
	}
	if res := b.publish(q.AccessToken, "alice.topic", map[string]any{"n": 2}); res.Status != 401 {
		t.Fatalf("B refuses the access token of a login revoked on A: %d %s", res.Status, res.Body)
	}

	// A topic created on A is owned on B.
	alice := a.login("alice", "alice-password").AccessToken
	created := a.do("POST", "/api/v1/topics", alice, map[string]string{"topic_name": "alice.owned"})
	if created.Status != 201 {
		t.Fatalf("create on A: %d %s", created.Status, created.Body)
	}
	got := b.do("GET", "/api/v1/topics/alice.owned", alice, nil)
	if got.Status != 200 || got.JSON()["owner_id"] != created.JSON()["owner_id"] {
		t.Fatalf("B's view of A's topic: %d %s", got.Status, got.Body)
	}
	if res := b.do("POST", "/api/v1/topics", alice, map[string]string{"topic_name": "alice.owned"}); res.Status != 409 {
		t.Fatalf("create again on B: %d %s", res.Status, res.Body)
	}
	bob := b.login("bob", "bob-password").AccessToken
	if res := b.publish(bob, "alice.owned", map[string]any{"evil": 1}); res.Status != 403 {
		t.Fatalf("bob publishes to alice's topic on B: %d %s", res.Status, res.Body)
	}
	me := b.do("GET", "/auth/me", alice, nil)
	if owned, _ := me.JSON()["owned_topics"].([]any); len(owned) != 1 || owned[0] != "alice.owned" {
		t.Fatalf("/auth/me on B: %s", me.Body)
	}
	// Deleted on B: gone on A, with its messages.
	if res := a.publish(alice, "alice.owned", map[string]any{"n": 1}); res.Status != 201 {
		t.Fatalf("alice publishes to her topic: %d %s", res.Status, res.Body)
	}
	if res := b.do("DELETE", "/api/v1/topics/alice.owned", alice, nil); res.Status != 204 {
		t.Fatalf("delete on B: %d %s", res.Status, res.Body)
	}
	if res := a.do("GET", "/api/v1/topics/alice.owned", alice, nil); res.Status != 404 {
		t.Fatalf("A after delete on B: %d %s", res.Status, res.Body)
	}
	if h := a.do("GET", "/api/v1/topics/alice.owned/messages", alice, nil); len(h.JSON()["messages"].([]any)) != 0 {
		t.Fatalf("messages of a deleted topic: %s", h.Body)
	}
}
