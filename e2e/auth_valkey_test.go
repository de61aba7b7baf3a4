package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

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

// TestOwnedTopicsBoundAcrossRelays: RELAY_RATE_OWNED_TOPICS holds for one
// user creating on two relays of one Valkey at once (the bound is checked
// and taken in one step in Valkey; a count read first, then a create,
// let every create in flight pass it). A user's listing, read through the
// owner, grantee and public indexes, follows a grant made on the other
// relay, a revoke and the public flag.
func TestOwnedTopicsBoundAcrossRelays(t *testing.T) {
	srv := valkeytest.Start(t)
	cfg := auth.Config{JWTSecret: []byte("bound-across-relays-secret-0123456789"), AdminUsername: "admin", AdminPassword: "admin-password",
		Rates: auth.RateConfig{OwnedTopics: 4}}
	a := authValkeyRelay(t, srv, cfg)
	b := authValkeyRelay(t, srv, cfg)
	admin := a.login("admin", "admin-password").AccessToken
	a.createUser(admin, "carol", "carol-password", []string{"read", "write"}, nil)
	daveID := a.createUser(admin, "dave", "dave-password", []string{"read", "write"}, nil)
	carol := a.login("carol", "carol-password").AccessToken
	var wg sync.WaitGroup
	statuses := make([]int, 24)
	for i := range statuses {
		relay := a
		if i%2 == 1 {
			relay = b
		}
		wg.Go(func() {
			statuses[i] = relay.do("POST", "/api/v1/topics", carol, map[string]any{"topic_name": fmt.Sprintf("carol.%02d", i)}).Status
		})
	}
	wg.Wait()
	created := 0
	for i, st := range statuses {
		switch st {
		case 201:
			created++
		case 403:
		default:
			t.Fatalf("create %d: %d, want 201 or 403", i, st)
		}
	}
	me := b.do("GET", "/auth/me", carol, nil)
	owned, _ := me.JSON()["owned_topics"].([]any)
	if created != 4 || len(owned) != 4 {
		t.Fatalf("%d of 24 creates at once succeeded, /auth/me lists %d (%s); want 4 (RELAY_RATE_OWNED_TOPICS)", created, len(owned), me.Body)
	}

	list := func(r *authTestRelay, token string) string {
		res := r.do("GET", "/api/v1/topics", token, nil)
		if res.Status != 200 {
			t.Fatalf("list: %d %s", res.Status, res.Body)
		}
		var topics []struct {
			Name string `json:"topic_name"`
		}
		if err := json.Unmarshal(res.Body, &topics); err != nil {
			t.Fatalf("list: %v in %s", err, res.Body)
		}
		var names []string
		for _, v := range topics {
			names = append(names, v.Name)
		}
		return strings.Join(names, ",")
	}
	dave := a.login("dave", "dave-password").AccessToken
	if res := a.do("POST", "/api/v1/topics", dave, map[string]any{"topic_name": "dave.own"}); res.Status != 201 {
		t.Fatalf("dave's create: %d %s", res.Status, res.Body)
	}
	if got := list(b, dave); got != "dave.own" {
		t.Fatalf("dave's listing before any grant: %q", got)
	}
	first := owned[0].(string)
	if res := a.do("POST", "/api/v1/topics/"+first+"/grants", carol, map[string]any{"username": "dave", "permission": "read"}); res.Status != 200 {
		t.Fatalf("grant: %d %s", res.Status, res.Body)
	}
	second := owned[1].(string)
	if res := a.do("PUT", "/api/v1/topics/"+second, carol, map[string]any{"public": true}); res.Status != 200 {
		t.Fatalf("make public: %d %s", res.Status, res.Body)
	}
	if got, want := list(b, dave), strings.Join([]string{first, second, "dave.own"}, ","); got != want {
		t.Fatalf("dave's listing on B after a grant and a public topic on A: %q, want %q", got, want)
	}
	if res := b.do("DELETE", "/api/v1/topics/"+first+"/grants/"+daveID, carol, nil); res.Status != 204 {
		t.Fatalf("revoke: %d %s", res.Status, res.Body)
	}
	if got, want := list(a, dave), second+",dave.own"; got != want {
		t.Fatalf("dave's listing after the revoke: %q, want %q", got, want)
	}
}

// TestLogoutEndsStreamsOnOtherRelays: a logout on relay A closes the
// login's WebSocket on relay B of the same Valkey (B's check trusts a live
// answer for 5 s), with 1008 "login revoked".
func TestLogoutEndsStreamsOnOtherRelays(t *testing.T) {
	srv := valkeytest.Start(t)
	cfg := auth.Config{JWTSecret: []byte("logout-across-relays-secret-0123456789"), AdminUsername: "admin", AdminPassword: "admin-password"}
	a := authValkeyRelay(t, srv, cfg)
	b := authValkeyRelay(t, srv, cfg)
	admin := a.login("admin", "admin-password").AccessToken
	a.createUser(admin, "erin", "erin-password", []string{"read"}, nil)
	pair := a.login("erin", "erin-password")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := b.mustDial(ctx, t, pair.AccessToken)
	mustWSSubscribe(ctx, t, c, "erin.topic")
	if res := a.do("POST", "/auth/logout", "", map[string]string{"refresh_token": pair.RefreshToken}); res.Status != 204 {
		t.Fatalf("logout on A: %d %s", res.Status, res.Body)
	}
	start := time.Now()
	f, err := authWSRead(ctx, c)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "login revoked" {
		t.Fatalf("B's connection after a logout on A: %v %v, want close 1008 login revoked", f, err)
	}
	t.Logf("closed %v after the logout", time.Since(start).Round(time.Millisecond))
}

// TestStalledStoreDelaysNoFrame: a WebSocket's frames are answered while
// the auth store is stalled. Its reader consults only the revocation the
// login watcher found; before, each frame asked the store once its login's
// cached answer ran out, and waited 2 s (the check's timeout) for it.
func TestStalledStoreDelaysNoFrame(t *testing.T) {
	srv := valkeytest.Start(t)
	r := authValkeyRelay(t, srv, auth.Config{JWTSecret: []byte("stall-secret-0123456789abcdef0123"), AdminUsername: "admin", AdminPassword: "admin-password"})
	tok := r.login("admin", "admin-password").AccessToken
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.mustDial(ctx, t, tok)
	srv.Pause()
	defer srv.Resume()
	time.Sleep(6 * time.Second) // the login's cached "live" (5 s) runs out
	start := time.Now()
	for range 3 {
		authWSSend(ctx, t, c, map[string]any{"type": "ping"})
		if f, err := authWSRead(ctx, c); err != nil || f["type"] != "pong" {
			t.Fatalf("ping with the store stalled: %v %v", f, err)
		}
	}
	// Each would have waited 2-4 s on the store: 6 s at least for three.
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("three pings took %v with the auth store stalled", d.Round(time.Millisecond))
	}
}
