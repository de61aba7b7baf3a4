package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// TestIdempotencyKeyValidation: a malformed key is refused with 400 before
// anything is stored.
func TestIdempotencyKeyValidation(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{})
	for _, key := range []string{"", strings.Repeat("k", 256), "tab\there", "é"} {
		status, out := publish(t, r.URL, "idem-bad", map[string]any{"x": 1}, "Idempotency-Key", key)
		if status != http.StatusBadRequest || out["error"] != "INVALID_REQUEST" {
			t.Errorf("key %q: %d %v", key, status, out)
		}
	}
	page, _ := r.Store.Range(context.Background(), "idem-bad", messages.ID{}, 10)
	if len(page.Messages) != 0 {
		t.Fatalf("stored %d messages with bad keys", len(page.Messages))
	}
	status, out := publish(t, r.URL, "idem-bad", map[string]any{"x": 1}, "Idempotency-Key", strings.Repeat("k", 255))
	if status != http.StatusCreated {
		t.Fatalf("a 255-character key: %d %v", status, out)
	}
}

// idemCheck publishes with one key sequentially and from 16 concurrent
// requests against urls (round robin) and checks every answer carries the
// same message_id; it returns that id.
func idemCheck(t *testing.T, urls []string, topic, key string) string {
	t.Helper()
	payload := map[string]any{"job": "42", "state": "done"}
	status, first := publish(t, urls[0], topic, payload, "Idempotency-Key", key)
	if status != http.StatusCreated {
		t.Fatalf("first publish: %d %v", status, first)
	}
	status, again := publish(t, urls[len(urls)-1], topic, payload, "Idempotency-Key", key)
	if status != http.StatusCreated || again["message_id"] != first["message_id"] || again["timestamp"] != first["timestamp"] {
		t.Fatalf("repeat: %d %v, first %v", status, again, first)
	}
	// 16 concurrent requests with a fresh key: one message, one id.
	ckey := key + "-concurrent"
	ids := make([]string, 16)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, out := publish(t, urls[i%len(urls)], topic, payload, "Idempotency-Key", ckey)
			if status != http.StatusCreated {
				t.Errorf("concurrent %d: %d %v", i, status, out)
				return
			}
			ids[i], _ = out["message_id"].(string)
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent answers differ: %d has %s, 0 has %s", i, id, ids[0])
		}
	}
	// The same key with another body: 422.
	status, out := publish(t, urls[0], topic, map[string]any{"job": "43"}, "Idempotency-Key", key)
	if status != http.StatusUnprocessableEntity || out["error"] != "IDEMPOTENCY_KEY_REUSED" {
		t.Fatalf("reused key: %d %v", status, out)
	}
	return first["message_id"].(string)
}

// TestIdempotentPublishMemory: the contract on the memory store, including
// bulk: a retried bulk returns the same results and stores nothing new.
func TestIdempotentPublishMemory(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{})
	idemCheck(t, []string{r.URL}, "idem-mem", "key-1")
	page, _ := r.Store.Range(context.Background(), "idem-mem", messages.ID{}, 100)
	if len(page.Messages) != 2 {
		t.Fatalf("stored %d messages, want 2 (one per key)", len(page.Messages))
	}

	bulk := map[string]any{"messages": []map[string]any{
		{"topic": "idem-bulk", "payload": map[string]any{"i": 0}},
		{"topic": "bad topic", "payload": map[string]any{"i": 1}},
		{"topic": "idem-bulk", "payload": map[string]any{"i": 2}},
	}}
	s1, raw1, _ := call(t, context.Background(), http.MethodPost, r.URL+"/api/v1/messages/bulk", bulk, "Idempotency-Key", "bulk-1")
	s2, raw2, _ := call(t, context.Background(), http.MethodPost, r.URL+"/api/v1/messages/bulk", bulk, "Idempotency-Key", "bulk-1")
	if s1 != http.StatusMultiStatus || s2 != s1 || string(raw1) != string(raw2) {
		t.Fatalf("retried bulk: %d %s / %d %s", s1, raw1, s2, raw2)
	}
	page, _ = r.Store.Range(context.Background(), "idem-bulk", messages.ID{}, 100)
	if len(page.Messages) != 2 {
		t.Fatalf("bulk stored %d messages, want 2", len(page.Messages))
	}
	bulk["messages"] = []map[string]any{{"topic": "idem-bulk", "payload": map[string]any{"other": true}}}
	if s, raw, _ := call(t, context.Background(), http.MethodPost, r.URL+"/api/v1/messages/bulk", bulk, "Idempotency-Key", "bulk-1"); s != http.StatusUnprocessableEntity {
		t.Fatalf("bulk with a reused key: %d %s", s, raw)
	}
}

// idemValkeyRelay starts a relay on srv (its own store and actor system).
func idemValkeyRelay(t *testing.T, srv *valkeytest.Server) *relaytest.Relay {
	t.Helper()
	store, err := persistence.NewValkeyStore(context.Background(), persistence.ValkeyConfig{
		Addrs: []string{srv.Addr()}, Password: srv.Password(), Timeout: 2 * time.Second,
	}, relaytest.Logger())
	if err != nil {
		t.Fatalf("NewValkeyStore: %v", err)
	}
	return startConsumerRelay(t, relaytest.Options{Store: store, Actors: actors.Config{StoreTimeout: 2 * time.Second}})
}

// TestIdempotentPublishValkey: one message per key in the Valkey stream,
// with one relay, across two relays on one Valkey, and across a restart
// (issue 10, acceptance 5).
func TestIdempotentPublishValkey(t *testing.T) {
	srv := valkeytest.Start(t)
	raw, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, Password: srv.Password(), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	xlen := func(topic string) int64 {
		n, err := raw.Do(context.Background(), raw.B().Xlen().Key("topic:{"+topic+"}:stream").Build()).AsInt64()
		if err != nil {
			t.Fatalf("XLEN: %v", err)
		}
		return n
	}

	a := idemValkeyRelay(t, srv)
	idemCheck(t, []string{a.URL}, "idem-one", "k1")
	if n := xlen("idem-one"); n != 2 {
		t.Fatalf("one relay: stream holds %d entries, want 2", n)
	}

	b := idemValkeyRelay(t, srv)
	idemCheck(t, []string{a.URL, b.URL}, "idem-two", "k2")
	if n := xlen("idem-two"); n != 2 {
		t.Fatalf("two relays: stream holds %d entries, want 2", n)
	}

	// Restart: a new relay remembers the key the old one stored.
	payload := map[string]any{"job": "7"}
	status, first := publish(t, a.URL, "idem-restart", payload, "Idempotency-Key", "k3")
	if status != http.StatusCreated {
		t.Fatalf("publish: %d %v", status, first)
	}
	a.Close()
	b.Close()
	c := idemValkeyRelay(t, srv)
	status, again := publish(t, c.URL, "idem-restart", payload, "Idempotency-Key", "k3")
	if status != http.StatusCreated || again["message_id"] != first["message_id"] {
		t.Fatalf("after restart: %d %v, first %v", status, again, first)
	}
	if n := xlen("idem-restart"); n != 1 {
		t.Fatalf("after restart: stream holds %d entries, want 1", n)
	}
	b1, _ := json.Marshal(first)
	t.Logf("first answer %s", b1)
}

// TestIdempotencySharePerClient: the memory store's idempotency records are
// shared per client. A user flooding fresh keys (single and bulk
// publishes) past the store's cap does not push out another user's keys:
// the other's retries still answer its first message, and no second copy
// is stored.
func TestIdempotencySharePerClient(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{}, persistence.WithIdempotencyCap(40))
	r := startAuthRelay(t, authRelayOpts{Store: store, Auth: auth.Config{JWTSecret: []byte("idem-share-secret-0123456789abcdef"),
		AdminUsername: "admin", AdminPassword: "admin-password"}})
	admin := r.login("admin", "admin-password").AccessToken
	r.createUser(admin, "quiet", "quiet-password", []string{"read", "write"}, nil)
	r.createUser(admin, "flood", "flood-password", []string{"read", "write"}, nil)
	quiet := r.login("quiet", "quiet-password").AccessToken
	flood := r.login("flood", "flood-password").AccessToken

	send := func(token, topic, key string, i int) string {
		t.Helper()
		res := r.do("POST", "/api/v1/messages", token, map[string]any{"topic": topic, "payload": map[string]any{"i": i}}, "Idempotency-Key", key)
		if res.Status != http.StatusCreated {
			t.Fatalf("publish %s to %s: %d %s", key, topic, res.Status, res.Body)
		}
		return res.JSON()["message_id"].(string)
	}
	first := make([]string, 5)
	for i := range first {
		first[i] = send(quiet, "share-quiet", fmt.Sprintf("q-%d", i), i)
	}
	for i := range 100 {
		send(flood, "share-flood", fmt.Sprintf("f-%d", i), i)
	}
	items := make([]map[string]any, 20)
	for i := range items {
		items[i] = map[string]any{"topic": "share-flood", "payload": map[string]any{"bulk": i}}
	}
	if res := r.do("POST", "/api/v1/messages/bulk", flood, map[string]any{"messages": items}, "Idempotency-Key", "f-bulk"); res.Status != http.StatusMultiStatus {
		t.Fatalf("bulk: %d %s", res.Status, res.Body)
	}
	for i, id := range first {
		if again := send(quiet, "share-quiet", fmt.Sprintf("q-%d", i), i); again != id {
			t.Errorf("retry of q-%d answered %s, first %s: the flood pushed out its key", i, again, id)
		}
	}
	page, err := store.Range(context.Background(), "share-quiet", messages.ID{}, 100)
	if err != nil || len(page.Messages) != len(first) {
		t.Fatalf("share-quiet holds %d messages (%v), want %d: a retry stored a second copy", len(page.Messages), err, len(first))
	}
	if n := store.IdempotencyKeys(); n > 40 {
		t.Errorf("the store keeps %d records, over its cap of 40", n)
	}
}
