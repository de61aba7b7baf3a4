package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/policy"
)

// adminCall sends an admin request (token "" for none) and decodes the
// answer into out when it is 2xx; it returns the status and the raw body.
func adminCall(t testing.TB, method, url, token, contentType, body string, out any) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := relaytest.HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, url, data, err)
		}
	}
	return resp.StatusCode, string(data)
}

// adminEventually polls fn until it holds or d passes.
func adminEventually(t testing.TB, d time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func adminTopic(t testing.TB, url, topic string) (policy.TopicView, bool) {
	t.Helper()
	var v policy.TopicsView
	if code, body := adminCall(t, "GET", url+"/api/v1/admin/topics", "", "", "", &v); code != 200 {
		t.Fatalf("GET /api/v1/admin/topics: %d %s", code, body)
	}
	for _, tv := range v.Topics {
		if tv.Topic == topic {
			return tv, true
		}
	}
	return policy.TopicView{}, false
}

// TestPolicyAppliesLiveWithoutReconnecting: two subscribers of jobs.a are
// connected under the process-wide policy (disconnect). A policy that
// shrinks jobs.*'s connection queue to 8 and sets drop-oldest is PUT; a bad
// one is then refused (400 naming line and field) and the first stays. A
// flood follows: the subscriber that reads along gets every message, the
// stalled one (the same socket as before, never reconnected) loses the
// oldest ones instead of being cut with 4008.
func TestPolicyAppliesLiveWithoutReconnecting(t *testing.T) {
	relaytest.CheckLeaks(t)
	counters := &relaytest.Counters{}
	r := relaytest.Start(t, relaytest.Options{
		// Process-wide: disconnect past 512 queued frames. The stalled
		// peer's socket buffers take a few MB (~2,500 of these frames), so
		// without the policy the flood below would cut it with 4008.
		Actors: actors.Config{Observer: counters, ConnectionQueueSize: 512},
		// The stalled peer reads nothing for a while: not long enough for
		// the write timeout or a missed pong to drop it.
		Gateway: gateway.Config{WriteTimeout: 5 * time.Minute, PingInterval: 5 * time.Minute},
	})
	subscribe := func(rcvbuf int) *rawWS {
		c, err := dialRaw(r.WSURL, rcvbuf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.conn.Close() })
		_ = c.writeText([]byte(`{"type":"subscribe","topics":["jobs.a"]}`))
		if _, p, err := c.readFrame(); err != nil || !bytes.Contains(p, []byte(`"subscribed"`)) {
			t.Fatalf("subscribe: %s %v", p, err)
		}
		return c
	}
	slow, fast := subscribe(64<<10), subscribe(0)
	adminEventually(t, 5*time.Second, "jobs.a's two websocket subscribers in the admin view", func() bool {
		v, ok := adminTopic(t, r.URL, "jobs.a")
		return ok && v.Subscribers["websocket"] == 2 && v.Policy.Value("slow_consumer") == `"disconnect"`
	})

	const good = `{"version":1,"topics":{"jobs.*":{"connection_queue_size":8,"slow_consumer":"drop-oldest"}}}`
	var set policy.SetView
	if code, body := adminCall(t, "PUT", r.URL+"/api/v1/admin/policies", "", "application/json", good, &set); code != 200 {
		t.Fatalf("PUT policies: %d %s", code, body)
	}
	if set.Source != "api" || set.Policies.Len() != 1 {
		t.Fatalf("PUT answered %+v", set)
	}
	checkEffective := func() {
		t.Helper()
		var v policy.TopicPolicyView
		if code, body := adminCall(t, "GET", r.URL+"/api/v1/admin/policies?topic=jobs.a", "", "", "", &v); code != 200 {
			t.Fatalf("GET ?topic=jobs.a: %d %s", code, body)
		}
		if v.Policy.Value("connection_queue_size") != "8" || v.Policy.Value("slow_consumer") != `"drop-oldest"` ||
			fmt.Sprint(v.Matched) != "[jobs.*]" || v.Policy.Value("mailbox_size") != fmt.Sprint(actors.DefaultTopicMailboxSize) {
			t.Fatalf("effective policy of jobs.a: %+v", v)
		}
	}
	checkEffective()

	// A bad document (line 3: a queue of 0) is refused as a whole.
	const bad = "version: 1\ntopics:\n  jobs.*: {connection_queue_size: 0, slow_consumer: drop-oldest}\n"
	code, body := adminCall(t, "PUT", r.URL+"/api/v1/admin/policies", "", "application/yaml", bad, nil)
	if code != 400 || !strings.Contains(body, "line 3") || !strings.Contains(body, "connection_queue_size") || !strings.Contains(body, "INVALID_REQUEST") {
		t.Fatalf("bad PUT: %d %s, want 400 naming line 3 and connection_queue_size", code, body)
	}
	checkEffective()
	// The running topic actor took the change (it answers from its own state).
	adminEventually(t, 5*time.Second, "the topic actor to run with the new policy", func() bool {
		v, ok := adminTopic(t, r.URL, "jobs.a")
		return ok && v.Policy.Value("connection_queue_size") == "8" && v.Subscribers["websocket"] == 2
	})

	const total = 5000
	var fastIDs []string
	var fastErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // reads along; it may fall more than 8 behind too, and drop
		defer wg.Done()
		fastIDs, fastErr = readUntilEnd(fast)
	}()
	want := publishFast(t, r, "jobs.a", total-1, 1500)
	want = append(want, r.MustPublish("jobs.a", map[string]any{"end-of-flood": true}))
	wg.Wait()
	if fastErr != nil || !isSubsequence(fastIDs, want) {
		t.Fatalf("the subscriber that reads got %d of %d (err %v)", len(fastIDs), len(want), fastErr)
	}

	// The stalled subscriber now reads: what was in flight, then the newest
	// messages; no close frame.
	slowIDs, err := readUntilEnd(slow)
	if err != nil {
		t.Fatalf("stalled subscriber after %d messages: %v", len(slowIDs), err)
	}
	if !isSubsequence(slowIDs, want) {
		t.Fatal("stalled subscriber got ids out of order or repeated")
	}
	dropped := counters.Drops.Load()
	if len(slowIDs) == total || int(dropped) != 2*total-len(slowIDs)-len(fastIDs) || counters.SlowDisconnects.Load() != 0 {
		t.Fatalf("stalled received %d, reader %d, drops counted %d, of %d each; slow disconnects %d",
			len(slowIDs), len(fastIDs), dropped, total, counters.SlowDisconnects.Load())
	}
	t.Logf("stalled subscriber received %d of %d, the reader %d; dropped %d", len(slowIDs), total, len(fastIDs), dropped)

	// Both are still the connections they were: they answer a ping.
	for _, c := range []*rawWS{slow, fast} {
		_ = c.writeText([]byte(`{"type":"ping"}`))
		if _, p, err := c.readFrame(); err != nil || !bytes.Contains(p, []byte(`"pong"`)) {
			t.Fatalf("ping after the flood: %s %v", p, err)
		}
	}
}

// readUntilEnd reads message frames until one whose payload holds
// "end-of-flood"; a close frame or a read error ends it with an error.
func readUntilEnd(c *rawWS) ([]string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	return c.readIDs(nil, func(_ []string, frame []byte) bool { return bytes.Contains(frame, []byte("end-of-flood")) })
}

// TestAdminConnectionsView: the connections view counts by
// transport; with auth off the admin routes answer loopback clients only.
func TestAdminConnectionsView(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	c, err := dialRaw(r.WSURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	_ = c.writeText([]byte(`{"type":"subscribe","topics":["watch.me"]}`))
	if _, p, err := c.readFrame(); err != nil || !bytes.Contains(p, []byte(`"subscribed"`)) {
		t.Fatalf("subscribe: %s %v", p, err)
	}
	var v actors.ConnectionsView
	adminEventually(t, 5*time.Second, "one websocket connection", func() bool {
		code, _ := adminCall(t, "GET", r.URL+"/api/v1/admin/connections", "", "", "", &v)
		return code == 200 && v.Total == 1 && v.ByTransport["websocket"] == 1 && len(v.Slowest) == 1
	})
	c.conn.Close()
	adminEventually(t, 5*time.Second, "no connection after the close", func() bool {
		code, _ := adminCall(t, "GET", r.URL+"/api/v1/admin/connections", "", "", "", &v)
		return code == 200 && v.Total == 0
	})
	// An unsupported body type is 415; a non-loopback client is 403
	// (served through the handler with a remote address set by hand).
	if code, body := adminCall(t, "PUT", r.URL+"/api/v1/admin/policies", "", "text/plain", "{}", nil); code != 415 {
		t.Fatalf("PUT text/plain: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", "/api/v1/admin/topics", nil)
	req.RemoteAddr = "192.0.2.7:4242"
	rec := newRecorder()
	r.App.Gateway.Handler().ServeHTTP(rec, req)
	if rec.code != 403 {
		t.Fatalf("non-loopback admin call with auth off: %d %s", rec.code, rec.body.String())
	}
}

type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func newRecorder() *recorder                    { return &recorder{h: http.Header{}, code: 200} }
func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
