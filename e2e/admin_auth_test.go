package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/auth"
)

// TestAdminRoutesWithAuth: with auth on, every admin route answers 401
// without a credential and 403 to a non-admin, and serves the admin; the
// page itself is public and carries the login form (issue 14, acceptance
// 5; TestPageLoginInBrowser logs in through it).
func TestAdminRoutesWithAuth(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: []byte("admin-secret-admin-secret-admin-s"),
		AdminUsername: "admin", AdminPassword: "admin-password"}})
	admin := r.login("admin", "admin-password").AccessToken
	r.createUser(admin, "alice", "alice-password", []string{"read", "write"}, nil)
	alice := r.login("alice", "alice-password").AccessToken
	if res := r.publish(alice, "jobs.a", map[string]any{"n": 1}); res.Status != 201 {
		t.Fatalf("publish: %d %s", res.Status, res.Body)
	}

	doc := []byte(`{"version":1,"topics":{"jobs.*":{"mailbox_size":55}}}`)
	routes := []struct {
		method, path string
		body         []byte
	}{
		{"GET", "/api/v1/admin/policies", nil},
		{"GET", "/api/v1/admin/policies?topic=jobs.a", nil},
		{"PUT", "/api/v1/admin/policies", doc},
		{"GET", "/api/v1/admin/topics", nil},
		{"GET", "/api/v1/admin/connections", nil},
	}
	for _, rt := range routes {
		var body any
		if rt.body != nil {
			body = rt.body
		}
		if res := r.do(rt.method, rt.path, "", body); res.Status != 401 || res.Code() != "UNAUTHORIZED" {
			t.Errorf("%s %s without a token: %d %s", rt.method, rt.path, res.Status, res.Body)
		}
		if res := r.do(rt.method, rt.path, alice, body); res.Status != 403 || res.Code() != "FORBIDDEN" {
			t.Errorf("%s %s as a non-admin: %d %s", rt.method, rt.path, res.Status, res.Body)
		}
		if res := r.do(rt.method, rt.path, admin, body); res.Status != 200 {
			t.Errorf("%s %s as the admin: %d %s", rt.method, rt.path, res.Status, res.Body)
		}
	}
	// The admin's PUT took effect; alice's did not get through.
	res := r.do("GET", "/api/v1/admin/policies?topic=jobs.a", admin, nil)
	if !strings.Contains(string(res.Body), `"mailbox_size":55`) {
		t.Fatalf("effective policy after the admin's PUT: %s", res.Body)
	}

	for _, path := range []string{"/", "/ui"} {
		page := r.do("GET", path, "", nil)
		html := string(page.Body)
		if page.Status != 200 || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(html, `<form id="login">`) || !strings.Contains(html, `type="password"`) ||
			!strings.Contains(html, `"/auth/login"`) {
			t.Fatalf("GET %s: %d %s, want the page with its login form", path, page.Status, page.Header.Get("Content-Type"))
		}
		if strings.Contains(html, "http://") || strings.Contains(html, "https://") {
			t.Fatalf("the page loads something from elsewhere")
		}
	}
}

// TestAnonymousReadByPolicy: with auth on, a topic whose policy sets
// anonymous_read may be read without a credential (history, WebSocket);
// any other topic answers 401 / an UNAUTHORIZED frame, and a write without
// a credential stays 401.
func TestAnonymousReadByPolicy(t *testing.T) {
	r := startAuthRelay(t, authRelayOpts{Auth: auth.Config{JWTSecret: []byte("anon-secret-anon-secret-anon-sec"),
		AdminUsername: "admin", AdminPassword: "admin-password"}})
	admin := r.login("admin", "admin-password").AccessToken
	for _, topic := range []string{"public.news", "private.x"} {
		if res := r.publish(admin, topic, map[string]any{"n": 1}); res.Status != 201 {
			t.Fatalf("publish: %d %s", res.Status, res.Body)
		}
	}
	if res := r.do("GET", "/api/v1/topics/public.news/messages", "", nil); res.Status != 401 {
		t.Fatalf("anonymous history before any policy: %d %s", res.Status, res.Body)
	}
	doc := []byte(`{"version":1,"topics":{"public.*":{"anonymous_read":true}}}`)
	if res := r.do("PUT", "/api/v1/admin/policies", admin, doc); res.Status != 200 {
		t.Fatalf("PUT: %d %s", res.Status, res.Body)
	}
	if res := r.do("GET", "/api/v1/topics/public.news/messages", "", nil); res.Status != 200 || !strings.Contains(string(res.Body), `"n":1`) {
		t.Fatalf("anonymous history of public.news: %d %s", res.Status, res.Body)
	}
	if res := r.do("GET", "/api/v1/topics/private.x/messages", "", nil); res.Status != 401 {
		t.Fatalf("anonymous history of private.x: %d %s", res.Status, res.Body)
	}
	if res := r.do("GET", "/api/v1/topics/public.news/messages", "not-a-token", nil); res.Status != 401 {
		t.Fatalf("a bad token on an anonymous topic: %d %s", res.Status, res.Body)
	}
	if res := r.publish("", "public.news", map[string]any{"n": 2}); res.Status != 401 {
		t.Fatalf("anonymous publish: %d %s", res.Status, res.Body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := r.dial(ctx, "", "")
	if err != nil {
		t.Fatalf("anonymous WebSocket: %v", err)
	}
	defer c.CloseNow()
	authWSSend(ctx, t, c, map[string]any{"type": "subscribe", "topics": []string{"private.x"}})
	if m, err := authWSRead(ctx, c); err != nil || m["type"] != "error" || m["code"] != "UNAUTHORIZED" {
		t.Fatalf("anonymous subscribe to private.x: %v %v", m, err)
	}
	authWSSend(ctx, t, c, map[string]any{"type": "subscribe", "topics": []string{"public.news"}})
	if m, err := authWSRead(ctx, c); err != nil || m["type"] != "subscribed" {
		t.Fatalf("anonymous subscribe to public.news: %v %v", m, err)
	}
	if res := r.publish(admin, "public.news", map[string]any{"n": 3}); res.Status != 201 {
		t.Fatalf("publish: %d %s", res.Status, res.Body)
	}
	if m, err := authWSRead(ctx, c); err != nil || m["type"] != "message" || m["topic"] != "public.news" {
		t.Fatalf("anonymous subscriber's message: %v %v", m, err)
	}
}
