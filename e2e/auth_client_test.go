package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/auth"
)

// TestAuthClientExchange plays pulsar-relay-client's exchange with auth on
// and a bootstrap admin: form login, publish, bulk, history with cursor,
// refresh after a 2-second access token expired, topic creation (409 the
// second time) owned by /auth/me's user_id.
func TestAuthClientExchange(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{
		JWTSecret: []byte("exchange-secret"), AdminUsername: "admin", AdminPassword: "admin-password",
		AccessTokenTTL: 2 * time.Second,
	}})

	// Wrong user and wrong password: the same 401.
	badUser := r.do("POST", "/auth/login", "", url.Values{"username": {"nobody"}, "password": {"admin-password"}, "grant_type": {"password"}})
	badPass := r.do("POST", "/auth/login", "", url.Values{"username": {"admin"}, "password": {"wrong"}, "grant_type": {"password"}})
	if badUser.Status != 401 || badPass.Status != 401 || badUser.JSON()["message"] != badPass.JSON()["message"] {
		t.Fatalf("bad logins: %d %s / %d %s", badUser.Status, badUser.Body, badPass.Status, badPass.Body)
	}

	pair := r.login("admin", "admin-password")
	if pair.TokenType != "bearer" || pair.ExpiresIn != 2 || pair.RefreshToken == "" || pair.AccessToken == "" {
		t.Fatalf("login answer: %+v", pair)
	}
	// JSON login works too.
	if res := r.do("POST", "/auth/login", "", map[string]string{"username": "admin", "password": "admin-password"}); res.Status != 200 {
		t.Fatalf("JSON login: %d %s", res.Status, res.Body)
	}

	if res := r.publish(pair.AccessToken, "jobs.1", map[string]any{"n": 0}); res.Status != 201 {
		t.Fatalf("publish: %d %s", res.Status, res.Body)
	}
	bulk := r.do("POST", "/api/v1/messages/bulk", pair.AccessToken, map[string]any{"messages": []any{
		map[string]any{"topic": "jobs.1", "payload": map[string]any{"n": 1}},
		map[string]any{"topic": "jobs.1", "payload": map[string]any{"n": 2}},
	}})
	if bulk.Status != 207 || bulk.JSON()["summary"].(map[string]any)["accepted"].(float64) != 2 {
		t.Fatalf("bulk: %d %s", bulk.Status, bulk.Body)
	}

	// History with cursor, two pages.
	page1 := r.do("GET", "/api/v1/topics/jobs.1/messages?limit=2", pair.AccessToken, nil)
	cursor, _ := page1.JSON()["next_cursor"].(string)
	if page1.Status != 200 || len(page1.JSON()["messages"].([]any)) != 2 || cursor == "" {
		t.Fatalf("history page 1: %d %s", page1.Status, page1.Body)
	}
	page2 := r.do("GET", "/api/v1/topics/jobs.1/messages?limit=2&cursor="+cursor, pair.AccessToken, nil)
	msgs, _ := page2.JSON()["messages"].([]any)
	if page2.Status != 200 || len(msgs) != 1 || msgs[0].(map[string]any)["payload"].(map[string]any)["n"].(float64) != 2 {
		t.Fatalf("history page 2: %d %s", page2.Status, page2.Body)
	}

	// The access token expires; the client gets 401, refreshes and retries.
	authEventually(t, 10*time.Second, "the 2 s access token to expire", func() bool {
		res := r.publish(pair.AccessToken, "jobs.1", map[string]any{"n": "late"})
		if res.Status == 201 {
			return false
		}
		if res.Status != 401 || res.Code() != "UNAUTHORIZED" {
			t.Fatalf("publish with an expired token: %d %s", res.Status, res.Body)
		}
		return true
	})
	res := r.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": pair.RefreshToken})
	if res.Status != 200 {
		t.Fatalf("refresh: %d %s", res.Status, res.Body)
	}
	pair2 := auth.TokenPair{AccessToken: res.JSON()["access_token"].(string), RefreshToken: res.JSON()["refresh_token"].(string)}
	if pair2.RefreshToken == pair.RefreshToken {
		t.Fatal("refresh returned the same refresh token")
	}
	if res := r.publish(pair2.AccessToken, "jobs.1", map[string]any{"n": 3}); res.Status != 201 {
		t.Fatalf("publish after refresh: %d %s", res.Status, res.Body)
	}

	// Topics: create, create again (409), owner is /auth/me's user_id.
	created := r.do("POST", "/api/v1/topics", pair2.AccessToken, map[string]string{"topic_name": "galaxy.jobs", "description": "job updates"})
	if created.Status != 201 {
		t.Fatalf("create topic: %d %s", created.Status, created.Body)
	}
	for _, k := range []string{"topic_id", "topic_name", "owner_id", "created_at", "description"} {
		if _, ok := created.JSON()[k]; !ok {
			t.Fatalf("create topic answer lacks %q: %s", k, created.Body)
		}
	}
	if again := r.do("POST", "/api/v1/topics", pair2.AccessToken, map[string]string{"topic_name": "galaxy.jobs"}); again.Status != 409 || again.Code() != "CONFLICT" {
		t.Fatalf("create topic again: %d %s", again.Status, again.Body)
	}
	me := r.do("GET", "/auth/me", pair2.AccessToken, nil)
	got := r.do("GET", "/api/v1/topics/galaxy.jobs", pair2.AccessToken, nil)
	if me.Status != 200 || got.Status != 200 || me.JSON()["user_id"] == "" || got.JSON()["owner_id"] != me.JSON()["user_id"] {
		t.Fatalf("owner_id %v vs user_id %v (%s / %s)", got.JSON()["owner_id"], me.JSON()["user_id"], got.Body, me.Body)
	}
	if me.JSON()["username"] != "admin" || fmt.Sprint(me.JSON()["owned_topics"]) != "[galaxy.jobs]" {
		t.Fatalf("/auth/me: %s", me.Body)
	}
	if h := r.do("GET", "/health", "", nil); h.JSON()["auth"] != "on" {
		t.Fatalf("/health: %s", h.Body)
	}
	// Logout: 204, and the refresh token is dead.
	if res := r.do("POST", "/auth/logout", "", map[string]string{"refresh_token": pair2.RefreshToken}); res.Status != 204 {
		t.Fatalf("logout: %d %s", res.Status, res.Body)
	}
	if res := r.do("POST", "/auth/token/refresh", "", map[string]string{"refresh_token": pair2.RefreshToken}); res.Status != 401 {
		t.Fatalf("refresh after logout: %d %s", res.Status, res.Body)
	}
}

// TestAuthOffByDefault: no credential setting, no auth; /health says so.
func TestAuthOffByDefault(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{})
	if res := r.publish("", "open.topic", map[string]any{"a": 1}); res.Status != 201 {
		t.Fatalf("publish without auth: %d %s", res.Status, res.Body)
	}
	if h := r.do("GET", "/health", "", nil); h.JSON()["auth"] != "off" {
		t.Fatalf("/health: %s", h.Body)
	}
}

// TestAuthOffTopicChangesLoopbackOnly: with auth off a caller has an
// admin's rights on the topic routes, and DELETE wipes a topic's stored
// messages, so the routes that change topics (create, update, delete,
// grants) answer only loopback clients, as the admin routes do. Reading
// them stays open. Over the socket the test is a loopback client; a client
// from another address is served through the relay's handler (the relay
// under test listens on 127.0.0.1 only).
func TestAuthOffTopicChangesLoopbackOnly(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{})
	if res := r.do("POST", "/api/v1/topics", "", map[string]any{"topic_name": "kept"}); res.Status != 201 {
		t.Fatalf("loopback create: %d %s", res.Status, res.Body)
	}
	r.publish("", "kept", map[string]any{"n": 1})
	remote := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.RemoteAddr = "192.0.2.7:40000"
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		r.App.Gateway.Handler().ServeHTTP(rec, req)
		return rec
	}
	for _, c := range []struct{ method, path, body string }{
		{"DELETE", "/api/v1/topics/kept", ""},
		{"PUT", "/api/v1/topics/kept", `{"description":"mine now"}`},
		{"POST", "/api/v1/topics", `{"topic_name":"theirs"}`},
		{"POST", "/api/v1/topics/kept/grants", `{"user_id":"someone","permission":"read"}`},
		{"DELETE", "/api/v1/topics/kept/grants/someone", ""},
	} {
		if rec := remote(c.method, c.path, c.body); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "FORBIDDEN") {
			t.Errorf("%s %s from another address with auth off: %d %s, want 403", c.method, c.path, rec.Code, rec.Body)
		}
	}
	if rec := remote("GET", "/api/v1/topics/kept", ""); rec.Code != http.StatusOK {
		t.Errorf("GET a topic from another address: %d %s, want 200", rec.Code, rec.Body)
	}
	if res := r.do("GET", "/api/v1/topics/kept/messages", "", nil); res.Status != 200 || !strings.Contains(string(res.Body), `"n":1`) {
		t.Fatalf("the topic's messages after the refused delete: %d %s", res.Status, res.Body)
	}
	if res := r.do("DELETE", "/api/v1/topics/kept", "", nil); res.Status != 204 {
		t.Fatalf("loopback delete: %d %s", res.Status, res.Body)
	}
}

// TestAuthOffManagementRefusesOtherSites: with auth off, the routes that
// change topics and the admin routes answer a loopback client only when it
// names the relay by a loopback host and, if a browser sent the request,
// from a page of the relay's own origin. Before, a loopback address was
// enough, so any web page the operator opened on the relay's host could
// create, delete (wiping stored messages) and set policies: by a cross-site
// simple POST, or by a DNS-rebound name that made the page same-origin.
func TestAuthOffManagementRefusesOtherSites(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{})
	u, _ := url.Parse(r.URL)
	send := func(method, path, host, origin, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, r.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := authHTTPClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := send("POST", "/api/v1/topics", "", "", `{"topic_name":"victim.topic"}`); st != 201 {
		t.Fatalf("a local create: %d %s", st, body)
	}
	r.publish("", "victim.topic", map[string]any{"n": 1})
	rebound := "evil.example:" + u.Port()
	for _, c := range []struct{ method, path, host, origin, body string }{
		{"POST", "/api/v1/topics", "", "https://evil.example", `{"topic_name":"planted.topic"}`},
		{"DELETE", "/api/v1/topics/victim.topic", "", "https://evil.example", ""},
		{"POST", "/api/v1/topics/victim.topic/grants", "", "null", `{"user_id":"x","permission":"read"}`},
		{"DELETE", "/api/v1/topics/victim.topic", rebound, "http://" + rebound, ""},
		{"PUT", "/api/v1/admin/policies", rebound, "http://" + rebound, `{"version":1,"topics":{"*":{"max_messages":1}}}`},
		{"GET", "/api/v1/admin/connections", rebound, "http://" + rebound, ""},
		{"GET", "/api/v1/admin/connections", rebound, "", ""},
	} {
		if st, body := send(c.method, c.path, c.host, c.origin, c.body); st != http.StatusForbidden {
			t.Errorf("%s %s (Host %q, Origin %q) from loopback with auth off: %d %s, want 403", c.method, c.path, c.host, c.origin, st, body)
		}
	}
	if res := r.do("GET", "/api/v1/topics/victim.topic/messages", "", nil); res.Status != 200 || !strings.Contains(string(res.Body), `"n":1`) {
		t.Fatalf("the topic's messages after the refused requests: %d %s", res.Status, res.Body)
	}
	for _, c := range []struct{ method, path, host, origin string }{
		{"GET", "/api/v1/admin/connections", "localhost:" + u.Port(), ""},
		{"GET", "/api/v1/admin/connections", "", "http://" + u.Host},
		{"DELETE", "/api/v1/topics/victim.topic", "", "http://" + u.Host},
	} {
		if st, body := send(c.method, c.path, c.host, c.origin, ""); st/100 != 2 {
			t.Errorf("%s %s (Host %q, Origin %q), a local client: %d %s, want 2xx", c.method, c.path, c.host, c.origin, st, body)
		}
	}
}

// TestClaimOfAUsedTopicRefused: a topic nobody owns is open to every
// writer; a user may not then become its owner (409), which would lock the
// others out and let it delete what they stored. An admin may.
func TestClaimOfAUsedTopicRefused(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: []byte("claim-secret-0123456789abcdef0123"),
		AdminUsername: "admin", AdminPassword: "admin-password"}})
	admin := r.login("admin", "admin-password").AccessToken
	r.createUser(admin, "alice", "alice-password", []string{"read", "write"}, nil)
	r.createUser(admin, "bob", "bob-password", []string{"read", "write"}, nil)
	alice := r.login("alice", "alice-password").AccessToken
	bob := r.login("bob", "bob-password").AccessToken
	if res := r.publish(alice, "galaxy.jobs.42", map[string]any{"n": 1}); res.Status != 201 {
		t.Fatalf("alice publishes to a topic nobody owns: %d %s", res.Status, res.Body)
	}
	if res := r.do("POST", "/api/v1/topics", bob, map[string]any{"topic_name": "galaxy.jobs.42"}); res.Status != 409 || res.Code() != "CONFLICT" {
		t.Fatalf("bob claims the used topic: %d %s, want 409", res.Status, res.Body)
	}
	if res := r.publish(alice, "galaxy.jobs.42", map[string]any{"n": 2}); res.Status != 201 {
		t.Fatalf("alice publishes after the refused claim: %d %s", res.Status, res.Body)
	}
	if res := r.do("DELETE", "/api/v1/topics/galaxy.jobs.42", bob, nil); res.Status != 403 {
		t.Fatalf("bob deletes the topic: %d %s, want 403", res.Status, res.Body)
	}
	if h := r.do("GET", "/api/v1/topics/galaxy.jobs.42/messages", alice, nil); len(h.JSON()["messages"].([]any)) != 2 {
		t.Fatalf("alice's messages: %s", h.Body)
	}
	if res := r.do("POST", "/api/v1/topics", bob, map[string]any{"topic_name": "galaxy.jobs.43"}); res.Status != 201 {
		t.Fatalf("bob creates an unused topic: %d %s", res.Status, res.Body)
	}
	if res := r.do("POST", "/api/v1/topics", admin, map[string]any{"topic_name": "galaxy.jobs.42"}); res.Status != 201 {
		t.Fatalf("an admin claims the used topic: %d %s", res.Status, res.Body)
	}
}

// TestWriteOnlyOwnerVerifiesItsTopic: pulsar-relay-client's
// create_or_verify_topic, run again by a publish-only service user (write
// permission, no read), answers 409 and then reads the topic to compare
// owner_id: the owner may read its topic's record, though not its
// messages. Before, the GET was 403 and the client raised
// TopicOwnershipConflictError for its own topic.
func TestWriteOnlyOwnerVerifiesItsTopic(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: []byte("write-only-secret-0123456789abcdef"),
		AdminUsername: "admin", AdminPassword: "admin-password"}})
	admin := r.login("admin", "admin-password").AccessToken
	id := r.createUser(admin, "pulsar", "pulsar-password", []string{"write"}, nil)
	r.createUser(admin, "other", "other-password", []string{"write"}, nil)
	tok := r.login("pulsar", "pulsar-password").AccessToken
	if res := r.do("POST", "/api/v1/topics", tok, map[string]any{"topic_name": "job_status_update_m1"}); res.Status != 201 {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	if res := r.do("POST", "/api/v1/topics", tok, map[string]any{"topic_name": "job_status_update_m1"}); res.Status != 409 {
		t.Fatalf("create again: %d %s, want 409", res.Status, res.Body)
	}
	if res := r.do("GET", "/api/v1/topics/job_status_update_m1", tok, nil); res.Status != 200 || res.JSON()["owner_id"] != id {
		t.Fatalf("the owner reads its topic: %d %s, want 200 with owner_id %s", res.Status, res.Body, id)
	}
	if res := r.do("GET", "/api/v1/topics/job_status_update_m1/messages", tok, nil); res.Status != 403 {
		t.Fatalf("a write-only owner reads the messages: %d %s, want 403", res.Status, res.Body)
	}
	other := r.login("other", "other-password").AccessToken
	if res := r.do("GET", "/api/v1/topics/job_status_update_m1", other, nil); res.Status != 403 {
		t.Fatalf("another write-only user reads the topic: %d %s, want 403", res.Status, res.Body)
	}
}

// TestOwnedTopicsPerUserBounded: a user owns at most RELAY_RATE_OWNED_TOPICS
// topics at once (403 past it, a place again after a delete), so that one
// account cannot take the relay's 100,000; admins are not bound; /auth/me
// lists the caller's own.
func TestOwnedTopicsPerUserBounded(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: []byte("owned-topics-secret-0123456789abcdef"),
		AdminUsername: "admin", AdminPassword: "admin-password", Rates: auth.RateConfig{OwnedTopics: 3}}})
	admin := r.login("admin", "admin-password").AccessToken
	r.createUser(admin, "owner", "owner-password", []string{"read", "write"}, nil)
	tok := r.login("owner", "owner-password").AccessToken
	create := func(token, name string) authResponse {
		return r.do("POST", "/api/v1/topics", token, map[string]any{"topic_name": name})
	}
	for i := range 3 {
		if res := create(tok, fmt.Sprintf("mine.%d", i)); res.Status != 201 {
			t.Fatalf("create %d: %d %s", i, res.Status, res.Body)
		}
	}
	if res := create(tok, "mine.3"); res.Status != 403 || res.Code() != "FORBIDDEN" || !strings.Contains(res.JSON()["message"].(string), "RELAY_RATE_OWNED_TOPICS") {
		t.Fatalf("a create past the bound: %d %s, want 403 naming RELAY_RATE_OWNED_TOPICS", res.Status, res.Body)
	}
	// At the bound, a topic owned already is still a conflict (409), as
	// pulsar-relay-client's create-or-verify expects: its own, or another's.
	if res := create(admin, "admins.taken"); res.Status != 201 {
		t.Fatalf("admin create: %d %s", res.Status, res.Body)
	}
	for _, name := range []string{"mine.1", "admins.taken"} {
		if res := create(tok, name); res.Status != 409 || res.Code() != "CONFLICT" {
			t.Fatalf("re-creating %s at the bound: %d %s, want 409", name, res.Status, res.Body)
		}
	}
	if res := r.do("GET", "/auth/me", tok, nil); res.Status != 200 || len(res.JSON()["owned_topics"].([]any)) != 3 {
		t.Fatalf("/auth/me: %d %s, want 3 owned topics", res.Status, res.Body)
	}
	if res := r.do("DELETE", "/api/v1/topics/mine.0", tok, nil); res.Status != 204 {
		t.Fatalf("delete: %d %s", res.Status, res.Body)
	}
	if res := create(tok, "mine.3"); res.Status != 201 {
		t.Fatalf("a create after a delete: %d %s", res.Status, res.Body)
	}
	for i := range 5 {
		if res := create(admin, fmt.Sprintf("admins.%d", i)); res.Status != 201 {
			t.Fatalf("admin create %d: %d %s", i, res.Status, res.Body)
		}
	}
}
