package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// TestPulsarRelayClientExchange drives what pulsar-relay-client 0.2.x does,
// over real HTTP (issue 10, acceptance 1).
func TestPulsarRelayClientExchange(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{})
	ctx := context.Background()
	const topic = "job-42.status"

	// Publish with metadata.
	status, raw, _ := call(t, ctx, http.MethodPost, r.URL+"/api/v1/messages", map[string]any{
		"topic": topic, "payload": map[string]any{"state": "queued"}, "metadata": map[string]string{"job": "42"},
	})
	if status != http.StatusCreated {
		t.Fatalf("publish: %d %s", status, raw)
	}
	// Bulk of 4: the client reads summary.total and summary.accepted.
	var items []map[string]any
	for i := range 4 {
		items = append(items, map[string]any{"topic": topic, "payload": map[string]any{"bulk": i}})
	}
	status, raw, _ = call(t, ctx, http.MethodPost, r.URL+"/api/v1/messages/bulk", map[string]any{"messages": items})
	var bulk struct {
		Summary struct{ Total, Accepted int } `json:"summary"`
	}
	if err := json.Unmarshal(raw, &bulk); status != http.StatusMultiStatus || err != nil || bulk.Summary.Total != 4 || bulk.Summary.Accepted != 4 {
		t.Fatalf("bulk: %d %s", status, raw)
	}

	// First poll, without since: it waits, and returns the message
	// published once it is waiting (its waiter registered: a poll
	// connection open and its subscription routed to the topic).
	type result struct {
		status int
		a      pollAnswer
	}
	first := make(chan result, 1)
	go func() {
		s, a := poll(t, ctx, r.URL+"/messages/poll", map[string]any{"topics": []string{topic}, "timeout": 10})
		first <- result{s, a}
	}()
	relaytest.Eventually(t, 10*time.Second, "the first poll waiting", func() bool {
		return gauge(t, r.URL, `relay_connections{transport="poll"}`) == 1 && gauge(t, r.URL, "relay_subscriptions") == 1
	})
	want := mustPublish(t, r.URL, topic, map[string]any{"state": "running"})
	res := <-first
	if res.status != http.StatusOK || len(res.a.Messages) != 1 || res.a.Messages[0].MessageID != want ||
		res.a.Messages[0].Payload["state"] != "running" || res.a.Messages[0].Topic != topic {
		t.Fatalf("first poll: %d %+v, want only %s", res.status, res.a, want)
	}

	// Three more, then a poll with since: exactly those three, in order.
	var ids []string
	for i := range 3 {
		ids = append(ids, mustPublish(t, r.URL, topic, map[string]any{"n": i}))
	}
	status, a := poll(t, ctx, r.URL+"/messages/poll", map[string]any{"topics": []string{topic}, "since": map[string]string{topic: want}, "timeout": 10})
	if status != http.StatusOK || len(a.Messages) != 3 || a.HasMore {
		t.Fatalf("poll with since: %d %+v", status, a)
	}
	for i, m := range a.Messages {
		if m.MessageID != ids[i] || m.Payload["n"] != float64(i) {
			t.Fatalf("message %d: %+v, want %s", i, m, ids[i])
		}
	}

	// An idle poll answers [] after its timeout (1 s): not before half of it
	// (it waited), and well before the 30 s default (it used its own).
	start := time.Now()
	status, a = poll(t, ctx, r.URL+"/messages/poll", map[string]any{"topics": []string{topic}, "since": map[string]string{topic: ids[2]}, "timeout": 1})
	took := time.Since(start)
	if status != http.StatusOK || len(a.Messages) != 0 || a.HasMore {
		t.Fatalf("idle poll: %d %+v", status, a)
	}
	if took < 500*time.Millisecond || took > 5*time.Second {
		t.Fatalf("idle poll with timeout 1 answered after %v", took)
	}

	// History with cursor= (the client's name for after=).
	status, raw, _ = call(t, ctx, http.MethodGet, r.URL+"/api/v1/topics/"+topic+"/messages?limit=10&order=asc&cursor="+want, nil)
	var hist struct{ Messages []stored }
	if err := json.Unmarshal(raw, &hist); status != http.StatusOK || err != nil || len(hist.Messages) != 3 || hist.Messages[0].MessageID != ids[0] {
		t.Fatalf("history with cursor: %d %s", status, raw)
	}
}

// TestPollCatchUpAndHasMore: since returns at once, at most 100 per topic
// with has_more, across topics.
func TestPollCatchUpAndHasMore(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{})
	ctx := context.Background()
	var items []map[string]any
	for i := range 100 {
		items = append(items, map[string]any{"topic": "many", "payload": map[string]any{"i": i}})
	}
	for range 2 {
		if s, raw, _ := call(t, ctx, http.MethodPost, r.URL+"/api/v1/messages/bulk", map[string]any{"messages": items}); s != http.StatusMultiStatus {
			t.Fatalf("bulk: %d %s", s, raw)
		}
	}
	other := mustPublish(t, r.URL, "other", map[string]any{"x": 1})
	status, a := poll(t, ctx, r.URL+"/api/v1/poll", map[string]any{
		"topics": []string{"many", "other"}, "since": map[string]string{"many": "0-0", "other": "0-0"}, "timeout": 5,
	})
	if status != http.StatusOK || len(a.Messages) != 101 || !a.HasMore {
		t.Fatalf("catch-up: %d, %d messages, has_more %v", status, len(a.Messages), a.HasMore)
	}
	if a.Messages[99].Payload["i"] != float64(99) || a.Messages[100].MessageID != other {
		t.Fatalf("catch-up order: %+v / %+v", a.Messages[99], a.Messages[100])
	}
	for _, bad := range []map[string]any{
		{"topics": []string{}},
		{"topics": []string{"a"}, "timeout": 0},
		{"topics": []string{"a"}, "timeout": 61},
		{"topics": []string{"bad topic"}},
		{"topics": []string{"a"}, "since": map[string]string{"b": "1-0"}},
		{"topics": []string{"a"}, "since": map[string]string{"a": "x"}},
	} {
		if s, raw, _ := call(t, ctx, http.MethodPost, r.URL+"/api/v1/poll", bad); s != http.StatusBadRequest {
			t.Errorf("poll %v: %d %s, want 400", bad, s, raw)
		}
	}
}

// TestPollTopicWithoutSinceReadsFromOldest: pulsar-relay-client names in
// "since" only the topics it got a message from. Another topic of the same
// poll has had nothing it saw, so what is stored there comes back (from
// the oldest retained), as the original relay answers; a first poll, with
// no "since", starts every topic now.
func TestPollTopicWithoutSinceReadsFromOldest(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{})
	ctx := context.Background()
	a0 := mustPublish(t, r.URL, "jobs.setup", map[string]any{"n": 0})
	b0 := mustPublish(t, r.URL, "jobs.kill", map[string]any{"n": 0})
	b1 := mustPublish(t, r.URL, "jobs.kill", map[string]any{"n": 1})
	status, a := poll(t, ctx, r.URL+"/messages/poll", map[string]any{
		"topics": []string{"jobs.setup", "jobs.kill"}, "since": map[string]string{"jobs.setup": a0}, "timeout": 5,
	})
	if status != http.StatusOK || len(a.Messages) != 2 || a.Messages[0].MessageID != b0 || a.Messages[1].MessageID != b1 {
		t.Fatalf("poll with since for one topic only: %d %+v, want %s and %s of jobs.kill", status, a.Messages, b0, b1)
	}
	// A first poll (no since) waits for what comes next, on every topic.
	start := time.Now()
	status, a = poll(t, ctx, r.URL+"/messages/poll", map[string]any{"topics": []string{"jobs.setup", "jobs.kill"}, "timeout": 1})
	if status != http.StatusOK || len(a.Messages) != 0 || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("first poll: %d %+v after %s, want nothing at its timeout", status, a.Messages, time.Since(start))
	}
}

// TestPollRaceNoGapNoDuplicate races a publish against the waiter's
// registration, 1,000 times: every poll returns the message, exactly once
// (issue 10, acceptance 2).
func TestPollRaceNoGapNoDuplicate(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{})
	ctx := context.Background()
	const topic = "race"
	last := mustPublish(t, r.URL, topic, map[string]any{"i": -1})
	iterations := 1000
	if testing.Short() {
		iterations = 100
	}
	for i := range iterations {
		done := make(chan pollAnswer, 1)
		go func() {
			s, a := poll(t, ctx, r.URL+"/api/v1/poll", map[string]any{"topics": []string{topic}, "since": map[string]string{topic: last}, "timeout": 10})
			if s != http.StatusOK {
				t.Errorf("iteration %d: poll status %d", i, s)
			}
			done <- a
		}()
		// Spread the publish over the window in which the poll reads the
		// store and registers its waiter.
		if d := time.Duration(i%25) * 40 * time.Microsecond; d > 0 {
			time.Sleep(d)
		}
		id := mustPublish(t, r.URL, topic, map[string]any{"i": i})
		a := <-done
		if len(a.Messages) != 1 || a.Messages[0].MessageID != id {
			t.Fatalf("iteration %d: got %+v, want exactly %s", i, a.Messages, id)
		}
		last = id
	}
}

// TestPollDisconnectFreesWaiter: a client that goes away mid-wait frees its
// waiter at once: the poll connection gauge and the goroutine count come
// back to where they were (issue 10, acceptance 2).
func TestPollDisconnectFreesWaiter(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{})
	const series = `relay_connections{transport="poll"}`
	// Warm up: one poll that times out, so lazily started goroutines exist.
	poll(t, context.Background(), r.URL+"/api/v1/poll", map[string]any{"topics": []string{"gone"}, "timeout": 1})
	client.CloseIdleConnections()
	before := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			poll(t, ctx, r.URL+"/api/v1/poll", map[string]any{"topics": []string{"gone"}, "timeout": 60})
		}()
	}
	relaytest.Eventually(t, 5*time.Second, "5 poll waiters", func() bool { return gauge(t, r.URL, series) == 5 })
	start := time.Now()
	cancel()
	wg.Wait()
	client.CloseIdleConnections()
	relaytest.Eventually(t, 5*time.Second, "poll waiters freed", func() bool { return gauge(t, r.URL, series) == 0 })
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("waiters freed after %v", took)
	}
	client.CloseIdleConnections()
	relaytest.Eventually(t, 5*time.Second, fmt.Sprintf("goroutines back to %d", before), func() bool {
		client.CloseIdleConnections()
		return runtime.NumGoroutine() <= before
	})
}

// TestPollWaiterCap: the per-client cap of concurrent waiters answers 429
// with Retry-After (issue 10, acceptance 2).
func TestPollWaiterCap(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{Gateway: gateway.Config{Consumers: gateway.ConsumersConfig{PollMaxWaitersPerClient: 3}}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			poll(t, ctx, r.URL+"/api/v1/poll", map[string]any{"topics": []string{"capped"}, "timeout": 60})
		}()
	}
	relaytest.Eventually(t, 5*time.Second, "3 waiters", func() bool { return gauge(t, r.URL, `relay_connections{transport="poll"}`) == 3 })
	status, raw, h := call(t, context.Background(), http.MethodPost, r.URL+"/api/v1/poll", map[string]any{"topics": []string{"capped"}, "timeout": 1})
	var body struct{ Error string }
	_ = json.Unmarshal(raw, &body)
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" || body.Error != "RATE_LIMIT_EXCEEDED" || h.Get("X-RateLimit-Limit") != "3" {
		t.Fatalf("4th waiter: %d %s %v", status, raw, h)
	}
	// A poll with something to return at once is not a waiter: no cap.
	id := mustPublish(t, r.URL, "capped", map[string]any{"x": 1})
	_ = id
	status, a := poll(t, context.Background(), r.URL+"/api/v1/poll", map[string]any{"topics": []string{"capped"}, "since": map[string]string{"capped": "0-0"}, "timeout": 1})
	if status != http.StatusOK || len(a.Messages) != 1 {
		t.Fatalf("catch-up poll under the cap: %d %+v", status, a)
	}
}
