package e2e

// End-to-end tests of the relay on a real Valkey-compatible server (issue 3,
// acceptance 3, 4 and 5). Each test starts its own server with valkeytest
// (skipped without one, failed with RELAY_REQUIRE_VALKEY=1) and the real
// wiring with relaytest.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// vkRelay starts a relay whose store is a ValkeyStore on srv. timeout bounds
// every store call and every publish answer, as RELAY_STORE_TIMEOUT does in
// cmd/relay. The relay (and with it the store) is shut down in cleanup,
// before the server stops.
func vkRelay(t *testing.T, srv *valkeytest.Server, limits persistence.Limits, timeout time.Duration, acfg actors.Config) (*relaytest.Relay, *persistence.ValkeyStore) {
	t.Helper()
	store, err := persistence.NewValkeyStore(context.Background(), persistence.ValkeyConfig{
		Addrs: []string{srv.Addr()}, Password: srv.Password(), Limits: limits, Timeout: timeout,
	}, relaytest.Logger())
	if err != nil {
		t.Fatalf("NewValkeyStore: %v", err)
	}
	acfg.StoreLimits = limits
	acfg.StoreTimeout = timeout
	r := relaytest.Start(t, relaytest.Options{Store: store, Actors: acfg, Gateway: gateway.Config{PublishTimeout: timeout}})
	return r, store
}

// vkRaw is a plain valkey-go client, independent of the store, for reading
// what is really in Valkey. It is closed in cleanup.
func vkRaw(t *testing.T, srv *valkeytest.Server) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, Password: srv.Password(), DisableCache: true})
	if err != nil {
		t.Fatalf("raw valkey client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// vkStreamKey is the stream of topic (DESIGN.md, "Valkey layout").
func vkStreamKey(topic string) string { return "topic:{" + topic + "}:stream" }

// vkEntry is one stream entry as Valkey holds it.
type vkEntry struct {
	id      string
	payload string
}

// vkStream reads the whole stream of topic with XRANGE, in pages.
func vkStream(t *testing.T, c valkey.Client, topic string) []vkEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []vkEntry
	start := "-"
	for range 1000 { // at most 1,000,000 entries
		entries, err := c.Do(ctx, c.B().Xrange().Key(vkStreamKey(topic)).Start(start).End("+").Count(1000).Build()).AsXRange()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", topic, err)
		}
		for _, e := range entries {
			out = append(out, vkEntry{id: e.ID, payload: e.FieldValues["payload"]})
		}
		if len(entries) < 1000 {
			return out
		}
		start = "(" + entries[len(entries)-1].ID
	}
	t.Fatalf("stream %s: more than a million entries", topic)
	return nil
}

func vkXLen(t *testing.T, c valkey.Client, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.Do(ctx, c.B().Xlen().Key(vkStreamKey(topic)).Build()).AsInt64()
	if err != nil {
		t.Fatalf("XLEN %s: %v", topic, err)
	}
	return n
}

// vkResult is the answer one publish got.
type vkResult struct {
	status int
	body   map[string]any
	err    error
	took   time.Duration
}

// vkPost publishes body without failing the test, so it can run on any
// goroutine, and times the answer. The client gives up after 10 s, which
// any test here counts as a hang.
func vkPost(url string, body []byte) vkResult {
	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, url+"/api/v1/messages", bytes.NewReader(body))
	if err != nil {
		return vkResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := relaytest.HTTPClient.Do(req)
	if err != nil {
		return vkResult{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	var out map[string]any
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		err = json.Unmarshal(data, &out)
	}
	return vkResult{status: resp.StatusCode, body: out, err: err, took: time.Since(start)}
}

// vkGet answers GET path with its status and decoded body.
func vkGet(t *testing.T, r *relaytest.Relay, path string) (int, map[string]any) {
	t.Helper()
	resp, err := relaytest.HTTPClient.Get(r.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("GET %s: %d, body: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// vkHistory pages through GET /api/v1/topics/{topic}/messages from the
// start and returns the message ids in the order served.
func vkHistory(t *testing.T, r *relaytest.Relay, topic string) []string {
	t.Helper()
	var ids []string
	after := ""
	for range 100 {
		path := "/api/v1/topics/" + topic + "/messages?limit=1000"
		if after != "" {
			path += "&after=" + after
		}
		status, body := vkGet(t, r, path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, status, body)
		}
		list, _ := body["messages"].([]any)
		for _, m := range list {
			ids = append(ids, m.(map[string]any)["message_id"].(string))
		}
		next, _ := body["next_cursor"].(string)
		if next == "" {
			return ids
		}
		after = next
	}
	t.Fatalf("history of %s: more than 100 pages", topic)
	return nil
}

// vkRead reads one frame, giving up after 10 s: a missing message shows as
// a read that never ends, and should fail long before the test's deadline.
func vkRead(ctx context.Context, c *relaytest.Client) (relaytest.Frame, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.Read(rctx)
}

// vkReadIDs reads n frames that must all be messages of topic, and returns
// their ids.
func vkReadIDs(t *testing.T, ctx context.Context, c *relaytest.Client, topic string, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for len(ids) < n {
		f, err := vkRead(ctx, c)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(ids), n, err)
		}
		if f.Type != "message" || f.Topic != topic {
			t.Fatalf("after %d messages: unexpected frame %+v", len(ids), f)
		}
		ids = append(ids, f.MessageID)
	}
	return ids
}

// vkExpectNext publishes a marker and asserts it is the next frame c gets:
// nothing (no duplicate, no late replay) came before it.
func vkExpectNext(t *testing.T, ctx context.Context, r *relaytest.Relay, c *relaytest.Client, topic string) string {
	t.Helper()
	marker := r.MustPublish(topic, map[string]any{"marker": true})
	if f, err := vkRead(ctx, c); err != nil || f.Type != "message" || f.MessageID != marker {
		t.Fatalf("want the marker %s next, got %+v (%v)", marker, f, err)
	}
	return marker
}

// vkIDsAfter returns the ids of entries after `after` ("" for all).
func vkIDsAfter(t *testing.T, entries []vkEntry, after string) []string {
	t.Helper()
	var from messages.ID
	if after != "" {
		var err error
		if from, err = messages.ParseID(after); err != nil {
			t.Fatal(err)
		}
	}
	var out []string
	for _, e := range entries {
		id, err := messages.ParseID(e.id)
		if err != nil {
			t.Fatalf("stream id %q: %v", e.id, err)
		}
		if from.Less(id) {
			out = append(out, e.id)
		}
	}
	return out
}

// vkDiff describes the first difference between two id lists.
func vkDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at %d: got %s, want %s (gap or duplicate)", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d ids, want %d", len(got), len(want))
	}
	return ""
}

// vkPublisher is one publishing goroutine of the outage test: it publishes
// {"p":p,"i":i} with i counting up, until stop is closed or it made max
// attempts, and keeps every answer.
type vkPublisher struct {
	results []vkResult
}

// TestValkeyOutageAnswers503AndRecovers (acceptance 3): with publishers
// running, kill Valkey (SIGKILL). Every publish answers, 201 or 503 only,
// within the store timeout plus a margin (none hangs); /ready turns 503 with
// the storage reason while /health stays 200. Valkey restarts on the same
// port and data dir: publishing resumes without restarting the relay, /ready
// is 200 again, and every message that got 201 is in the stream with its
// payload.
//
// appendfsync always: with everysec, a killed Valkey may lose up to a second
// of writes it had already confirmed, which is Valkey's durability setting,
// not the relay acknowledging what Valkey did not take.
func TestValkeyOutageAnswers503AndRecovers(t *testing.T) {
	srv := valkeytest.Start(t, valkeytest.WithArgs("--appendfsync", "always"))
	const (
		timeout    = time.Second
		answerMax  = 3 * time.Second // timeout + a generous margin for -race and a loaded machine
		topic      = "outage"
		nPub       = 8
		maxPerPub  = 20_000 // bounds each publisher whatever happens
		testBudget = 60 * time.Second
	)
	r, _ := vkRelay(t, srv, persistence.Limits{}, timeout, actors.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	defer cancel()
	// A live subscriber stays connected through the outage.
	live := r.Dial(ctx)
	live.Subscribe(ctx, map[string]any{"topics": []string{topic}})

	var ok201, got503 atomic.Int64
	stop := make(chan struct{})
	pubs := make([]*vkPublisher, nPub)
	var wg sync.WaitGroup
	for p := range nPub {
		pubs[p] = &vkPublisher{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range maxPerPub {
				select {
				case <-stop:
					return
				default:
				}
				body, _ := json.Marshal(map[string]any{"topic": topic, "payload": map[string]int{"p": p, "i": i}})
				res := vkPost(r.URL, body)
				pubs[p].results = append(pubs[p].results, res)
				switch res.status {
				case http.StatusCreated:
					ok201.Add(1)
				case http.StatusServiceUnavailable:
					got503.Add(1)
				}
			}
		}()
	}
	stopped := false
	stopPublishers := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopPublishers() // a failing check must not leave publishers behind

	relaytest.Eventually(t, 10*time.Second, "publishing to work", func() bool { return ok201.Load() >= 200 })

	srv.Kill()
	killedAt201 := ok201.Load()
	killedAt := time.Now()
	// Keep Valkey down for longer than the store timeout, so publishes in
	// every state (in flight at the kill, queued, new) meet the outage.
	relaytest.Eventually(t, 10*time.Second, "publishes to answer 503 with Valkey down", func() bool {
		return got503.Load() >= 200 && time.Since(killedAt) > timeout+500*time.Millisecond
	})
	var readyReason string
	relaytest.Eventually(t, 10*time.Second, "/ready to turn 503", func() bool {
		status, body := vkGet(t, r, "/ready")
		if status != http.StatusServiceUnavailable {
			return false
		}
		checks, _ := body["checks"].(map[string]any)
		readyReason, _ = checks["storage"].(string)
		return body["ready"] == false
	})
	if readyReason == "" || readyReason == "ok" {
		t.Errorf("/ready is 503 but its storage check says %q; want the reason", readyReason)
	}
	if status, body := vkGet(t, r, "/health"); status != http.StatusOK || body["status"] != "healthy" {
		t.Errorf("/health with Valkey down: %d %v; want 200 healthy (liveness)", status, body)
	}
	t.Logf("Valkey down: %d answers 201 before, /ready storage: %q", killedAt201, readyReason)

	srv.Restart()
	restartedAt201 := ok201.Load()
	relaytest.Eventually(t, 20*time.Second, "publishing to resume after Valkey restarted", func() bool {
		return ok201.Load() >= restartedAt201+200
	})
	relaytest.Eventually(t, 10*time.Second, "/ready to turn 200 again", func() bool {
		status, body := vkGet(t, r, "/ready")
		return status == http.StatusOK && body["ready"] == true
	})
	stopPublishers()

	// Every answer: in time, 201 or 503, and a 201 names a stored message.
	stream := vkStream(t, vkRaw(t, srv), topic)
	payloadOf := make(map[string]string, len(stream))
	for _, e := range stream {
		payloadOf[e.id] = e.payload
	}
	var n201, n503 int
	var slowest time.Duration
	acked := make(map[string]bool)
	for p, pub := range pubs {
		for i, res := range pub.results {
			slowest = max(slowest, res.took)
			if res.err != nil {
				t.Fatalf("publisher %d, publish %d: no answer after %v: %v", p, i, res.took, res.err)
			}
			if res.took > answerMax {
				t.Errorf("publisher %d, publish %d: answered %d after %v; want every answer within %v", p, i, res.status, res.took, answerMax)
			}
			switch res.status {
			case http.StatusCreated:
				n201++
				id, _ := res.body["message_id"].(string)
				if acked[id] {
					t.Fatalf("publisher %d, publish %d: id %s acknowledged twice", p, i, id)
				}
				acked[id] = true
				stored, ok := payloadOf[id]
				if !ok {
					t.Fatalf("publisher %d, publish %d got 201 with id %s, which is not in the stream (%d entries)", p, i, id, len(stream))
				}
				var got struct{ P, I int }
				if err := json.Unmarshal([]byte(stored), &got); err != nil || got.P != p || got.I != i {
					t.Fatalf("publisher %d, publish %d: stream entry %s holds %s", p, i, id, stored)
				}
			case http.StatusServiceUnavailable:
				n503++
				if res.body["error"] != "SERVICE_UNAVAILABLE" {
					t.Errorf("503 body %v; want error SERVICE_UNAVAILABLE", res.body)
				}
			default:
				t.Fatalf("publisher %d, publish %d: status %d %v; want 201 or 503 only", p, i, res.status, res.body)
			}
		}
	}
	t.Logf("%d answers 201, %d answers 503, slowest %v; stream holds %d (a 503'd write may still have landed)",
		n201, n503, slowest, len(stream))
	for _, e := range stream {
		if !acked[e.id] {
			t.Logf("in the stream but answered 503: %s %s", e.id, e.payload)
		}
	}
	if n503 == 0 {
		t.Fatal("no publish got 503 while Valkey was down")
	}
	if len(stream) < n201 {
		t.Fatalf("stream holds %d entries, fewer than the %d acknowledged", len(stream), n201)
	}

	// The live subscriber gets every stored message once, in id order: every
	// acknowledged one (each is in the stream, checked above) and a 503'd
	// write that landed anyway, since the stream is what every relay
	// delivers from (its notice, or the repair after the link came back).
	want := make([]messages.ID, 0, len(stream))
	for _, e := range stream {
		want = append(want, mustID(t, e.id))
	}
	slices.SortFunc(want, messages.ID.Compare)
	got := vkReadIDs(t, ctx, live, topic, len(want))
	for i := range want {
		if got[i] != want[i].String() {
			t.Fatalf("live subscriber, message %d: got %s, want %s", i, got[i], want[i])
		}
	}
	vkExpectNext(t, ctx, r, live, topic)
}

// TestValkeyStallAnswers503WithinTimeout: a Valkey that stops answering
// (SIGSTOP: connections open, nothing answered) must not hang publishers
// either: each gets 503 within the store timeout plus a margin, and
// publishing recovers once Valkey does, without restarting the relay.
func TestValkeyStallAnswers503WithinTimeout(t *testing.T) {
	srv := valkeytest.Start(t)
	const (
		timeout   = 500 * time.Millisecond
		answerMax = timeout + 2*time.Second
		topic     = "stall"
	)
	r, _ := vkRelay(t, srv, persistence.Limits{}, timeout, actors.Config{})
	r.MustPublish(topic, map[string]any{"warm": true})

	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	// Concurrent publishes while stalled: the first write waits out the
	// timeout, the others queue behind it; none may wait longer.
	var wg sync.WaitGroup
	results := make([]vkResult, 16)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]any{"topic": topic, "payload": map[string]int{"i": i}})
			results[i] = vkPost(r.URL, body)
		}()
	}
	wg.Wait()
	for i, res := range results {
		if res.err != nil || res.status != http.StatusServiceUnavailable || res.took > answerMax {
			t.Errorf("publish %d with Valkey stalled: status %d after %v (err %v); want 503 within %v", i, res.status, res.took, res.err, answerMax)
		}
	}
	if status, _ := vkGet(t, r, "/ready"); status != http.StatusServiceUnavailable {
		t.Errorf("/ready with Valkey stalled: %d, want 503", status)
	}

	srv.Resume()
	resumed = true
	relaytest.Eventually(t, 10*time.Second, "publishing to recover after the stall", func() bool {
		body, _ := json.Marshal(map[string]any{"topic": topic, "payload": map[string]any{"after": true}})
		return vkPost(r.URL, body).status == http.StatusCreated
	})
}

// TestValkeyRetention (acceptance 4): the count cap keeps the stream near
// MaxMessages, and messages older than the retention or past their ttl are
// neither replayed nor returned by history.
func TestValkeyRetention(t *testing.T) {
	t.Run("max-messages", func(t *testing.T) {
		srv := valkeytest.Start(t)
		const (
			topic = "capped"
			limit = 1000
			total = 5000
			// MAXLEN ~ removes whole stream nodes only, so up to one node
			// (stream-node-max-entries, 100 by default) over the cap stays
			// (persistence.ValkeyStore's documented slack).
			slack = 100
		)
		r, _ := vkRelay(t, srv, persistence.Limits{MaxMessages: limit}, 2*time.Second, actors.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()

		acked := vkPublishMany(t, r, topic, total, 16)
		raw := vkRaw(t, srv)
		n := vkXLen(t, raw, topic)
		if n < limit || n >= limit+slack {
			t.Fatalf("after %d publishes with a cap of %d the stream holds %d; want %d..%d", total, limit, n, limit, limit+slack-1)
		}
		// What is kept is the newest, and it is exactly what history and
		// an "earliest" replay serve.
		kept := acked[len(acked)-int(n):]
		if d := vkDiff(vkIDsAfter(t, vkStream(t, raw, topic), ""), kept); d != "" {
			t.Fatalf("stream is not the newest %d acknowledged messages: %s", n, d)
		}
		if d := vkDiff(vkHistory(t, r, topic), kept); d != "" {
			t.Fatalf("history: %s", d)
		}
		c := r.Dial(ctx)
		if f := c.Subscribe(ctx, map[string]any{"topics": []string{topic}, "offset": "earliest"}); len(f.Truncated) != 0 {
			t.Fatalf("earliest is not a point; truncated=%v", f.Truncated)
		}
		if d := vkDiff(vkReadIDs(t, ctx, c, topic, len(kept)), kept); d != "" {
			t.Fatalf("earliest replay: %s", d)
		}
		vkExpectNext(t, ctx, r, c, topic)

		// A point that was trimmed away: the replay starts at the oldest
		// retained message and says so.
		old := r.Dial(ctx)
		f := old.Subscribe(ctx, map[string]any{"topics": []string{topic}, "since": map[string]string{topic: acked[0]}})
		if !slices.Equal(f.Truncated, []string{topic}) {
			t.Fatalf("resume from trimmed %s: truncated=%v, want [%s]", acked[0], f.Truncated, topic)
		}
		if got := vkReadIDs(t, ctx, old, topic, 1); got[0] != kept[0] {
			t.Fatalf("truncated replay starts at %s, want the oldest retained %s", got[0], kept[0])
		}
	})

	t.Run("age", func(t *testing.T) {
		srv := valkeytest.Start(t)
		const (
			topic     = "aging"
			retention = time.Second
		)
		r, _ := vkRelay(t, srv, persistence.Limits{Retention: retention}, 2*time.Second, actors.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var old []string
		for i := range 5 {
			old = append(old, r.MustPublish(topic, map[string]any{"old": i}))
		}
		if got := vkHistory(t, r, topic); !slices.Equal(got, old) {
			t.Fatalf("history before the retention passed: %v, want %v", got, old)
		}
		relaytest.Eventually(t, 10*time.Second, "history to drop messages past the retention", func() bool {
			return len(vkHistory(t, r, topic)) == 0
		})

		// Replayed from the store ("earliest" always reads it): nothing.
		c := r.Dial(ctx)
		c.Subscribe(ctx, map[string]any{"topics": []string{topic}, "offset": "earliest"})
		fresh := vkExpectNext(t, ctx, r, c, topic)

		// From an old point (the publish above moved the hot ring past it):
		// the store skips what is past the retention, says the point is
		// truncated, and starts at the oldest retained message.
		since := r.Dial(ctx)
		f := since.Subscribe(ctx, map[string]any{"topics": []string{topic}, "since": map[string]string{topic: old[0]}})
		if !slices.Equal(f.Truncated, []string{topic}) {
			t.Errorf("resume from %s, past the retention: truncated=%v, want [%s]", old[0], f.Truncated, topic)
		}
		if got := vkReadIDs(t, ctx, since, topic, 1); got[0] != fresh {
			t.Fatalf("resume from %s replays %s first, want %s (the old ones are past the retention)", old[0], got[0], fresh)
		}
		vkExpectNext(t, ctx, r, since, topic)
	})

	t.Run("ttl", func(t *testing.T) {
		srv := valkeytest.Start(t)
		const topic = "expiring"
		r, _ := vkRelay(t, srv, persistence.Limits{}, 2*time.Second, actors.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		first := r.MustPublish(topic, map[string]any{"keep": 1})
		status, body := r.Post("/api/v1/messages", "application/json",
			[]byte(`{"topic":"`+topic+`","payload":{"expires":true},"ttl":1}`))
		if status != http.StatusCreated {
			t.Fatalf("publish with ttl: %d %v", status, body)
		}
		expiring := body["message_id"].(string)
		last := r.MustPublish(topic, map[string]any{"keep": 2})
		if got := vkHistory(t, r, topic); !slices.Equal(got, []string{first, expiring, last}) {
			t.Fatalf("history before the ttl passed: %v", got)
		}
		relaytest.Eventually(t, 10*time.Second, "history to drop the expired message", func() bool {
			return slices.Equal(vkHistory(t, r, topic), []string{first, last})
		})

		earliest := r.Dial(ctx)
		earliest.Subscribe(ctx, map[string]any{"topics": []string{topic}, "offset": "earliest"})
		if got := vkReadIDs(t, ctx, earliest, topic, 2); !slices.Equal(got, []string{first, last}) {
			t.Fatalf("earliest replay %v, want %v without the expired %s", got, []string{first, last}, expiring)
		}
		vkExpectNext(t, ctx, r, earliest, topic)

		ring := r.Dial(ctx) // the hot ring covers `first`
		ring.Subscribe(ctx, map[string]any{"topics": []string{topic}, "since": map[string]string{topic: first}})
		if got := vkReadIDs(t, ctx, ring, topic, 1); got[0] != last {
			t.Fatalf("replay after %s: got %s first, want %s (the expired %s skipped)", first, got[0], last, expiring)
		}
	})
}

// TestValkeyHotRingHonoursRetention (acceptance 4, the hot-ring path): a
// resume from a point the topic actor's hot ring still covers must not
// replay messages older than the retention, which the store no longer
// serves. Nothing is published between the old messages and the resume, so
// nothing evicted them from the ring.
//
// (The ring used to evict by age only when a message was added.)
func TestValkeyHotRingHonoursRetention(t *testing.T) {
	srv := valkeytest.Start(t)
	const (
		topic     = "aging-ring"
		retention = time.Second
	)
	r, _ := vkRelay(t, srv, persistence.Limits{Retention: retention}, 2*time.Second, actors.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var old []string
	for i := range 5 {
		old = append(old, r.MustPublish(topic, map[string]any{"old": i}))
	}
	relaytest.Eventually(t, 10*time.Second, "history to drop messages past the retention", func() bool {
		return len(vkHistory(t, r, topic)) == 0
	})
	c := r.Dial(ctx)
	c.Subscribe(ctx, map[string]any{"topics": []string{topic}, "since": map[string]string{topic: old[0]}})
	vkExpectNext(t, ctx, r, c, topic)
}

// vkPublishMany publishes total messages to topic from n goroutines and
// returns the acknowledged ids in id order. Any answer but 201 fails.
func vkPublishMany(t *testing.T, r *relaytest.Relay, topic string, total, n int) []string {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var ids []messages.ID
	var failed atomic.Value
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(total) || failed.Load() != nil {
					return
				}
				body, _ := json.Marshal(map[string]any{"topic": topic, "payload": map[string]int64{"i": i}})
				res := vkPost(r.URL, body)
				if res.err != nil || res.status != http.StatusCreated {
					failed.Store(fmt.Sprintf("publish %d: %d %v %v", i, res.status, res.body, res.err))
					return
				}
				id, err := messages.ParseID(res.body["message_id"].(string))
				if err != nil {
					failed.Store(err.Error())
					return
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	slices.SortFunc(ids, messages.ID.Compare)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// TestValkeyResumeOlderThanHotRing (acceptance 5): a subscriber resumes with
// "since" at a point older than the topic actor's hot ring holds (ring of
// 50, resume point 200+ messages back) while publishers keep going: it gets
// exactly the stored messages after that point, in order, then the live
// ones, without gap or duplicate. A topic actor that stopped after idling,
// and a new relay on the same Valkey, pick up where the stream is.
func TestValkeyResumeOlderThanHotRing(t *testing.T) {
	srv := valkeytest.Start(t)
	const (
		topic   = "resume-valkey"
		ring    = 50
		nPub    = 8
		perPub  = 300
		readK   = 100
		backlog = 4 * ring // messages after the resume point before resuming
	)
	acfg := actors.Config{HotTierMaxMessages: ring, TopicIdleTimeout: 300 * time.Millisecond}
	r, store := vkRelay(t, srv, persistence.Limits{}, 2*time.Second, acfg)
	raw := vkRaw(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	first := r.Dial(ctx)
	first.Subscribe(ctx, map[string]any{"topics": []string{topic}})
	var acks atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for p := range nPub {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPub {
				body, _ := json.Marshal(map[string]any{"topic": topic, "payload": map[string]int{"p": p, "i": i}})
				if res := vkPost(r.URL, body); res.err != nil || res.status != http.StatusCreated {
					failed.Store(fmt.Sprintf("publish: %d %v %v", res.status, res.body, res.err))
					return
				}
				acks.Add(1)
			}
		}()
	}
	defer wg.Wait()
	seen := vkReadIDs(t, ctx, first, topic, readK)
	last := seen[len(seen)-1]
	first.Conn.CloseNow()

	// Let publishing run on until the ring can no longer cover `last`.
	lastID, _ := messages.ParseID(last)
	relaytest.Eventually(t, 20*time.Second, fmt.Sprintf("%d messages after the resume point", backlog), func() bool {
		page, err := store.Range(ctx, topic, lastID, backlog)
		return err == nil && len(page.Messages) >= backlog
	})
	if acks.Load() >= nPub*perPub {
		t.Fatal("publishing finished before the resume; the test would not resume during publishing")
	}
	again := r.Dial(ctx)
	if f := again.Subscribe(ctx, map[string]any{"topics": []string{topic}, "since": map[string]string{topic: last}}); len(f.Truncated) != 0 {
		t.Fatalf("nothing was trimmed, yet truncated=%v", f.Truncated)
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	stream := vkStream(t, raw, topic)
	if len(stream) != nPub*perPub {
		t.Fatalf("stream holds %d, want the %d acknowledged", len(stream), nPub*perPub)
	}
	if d := vkDiff(seen, vkIDsAfter(t, stream, "")[:readK]); d != "" {
		t.Fatalf("first subscriber: %s", d)
	}
	want := vkIDsAfter(t, stream, last)
	if d := vkDiff(vkReadIDs(t, ctx, again, topic, len(want)), want); d != "" {
		t.Fatalf("resume from %s (older than the ring): %s", last, d)
	}
	vkExpectNext(t, ctx, r, again, topic)

	// The topic actor stops when idle; the next one starts from the stream.
	again.Conn.CloseNow()
	relaytest.Eventually(t, 10*time.Second, "the idle topic actor to stop", func() bool {
		return r.App.Manager.ActiveTopics() == 0
	})
	stream = vkStream(t, raw, topic)
	mid := stream[len(stream)/2].id
	revived := r.Dial(ctx)
	revived.Subscribe(ctx, map[string]any{"topics": []string{topic}, "since": map[string]string{topic: mid}})
	want = vkIDsAfter(t, stream, mid)
	if d := vkDiff(vkReadIDs(t, ctx, revived, topic, len(want)), want); d != "" {
		t.Fatalf("resume after the topic actor idled: %s", d)
	}
	marker := vkExpectNext(t, ctx, r, revived, topic)

	// A new relay on the same Valkey serves the same stream.
	r2, _ := vkRelay(t, srv, persistence.Limits{}, 2*time.Second, actors.Config{HotTierMaxMessages: ring})
	fresh := r2.Dial(ctx)
	fresh.Subscribe(ctx, map[string]any{"topics": []string{topic}, "since": map[string]string{topic: last}})
	want = append(vkIDsAfter(t, stream, last), marker)
	if d := vkDiff(vkReadIDs(t, ctx, fresh, topic, len(want)), want); d != "" {
		t.Fatalf("resume on a new relay: %s", d)
	}
	next := vkExpectNext(t, ctx, r2, fresh, topic)
	if m, _ := messages.ParseID(marker); !m.Less(mustID(t, next)) {
		t.Fatalf("new relay's id %s is not after %s", next, marker)
	}
}

func mustID(t *testing.T, s string) messages.ID {
	t.Helper()
	id, err := messages.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestValkeyTopicActorRestartCatchesUpFromStream: a topic actor that panics
// while publishers run is restarted by its supervisor and re-reads the
// stream from where it was, so a live subscriber gets every stored message
// exactly once, in id order, and every stored message was acknowledged.
func TestValkeyTopicActorRestartCatchesUpFromStream(t *testing.T) {
	srv := valkeytest.Start(t)
	const (
		topic  = "restarting"
		nPub   = 4
		perPub = 200
	)
	faults, counters := &actors.Faults{}, &relaytest.Counters{}
	r, _ := vkRelay(t, srv, persistence.Limits{}, 2*time.Second, actors.Config{Faults: faults, Observer: counters})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.Dial(ctx)
	c.Subscribe(ctx, map[string]any{"topics": []string{topic}})

	var mu sync.Mutex
	acked := map[string]bool{}
	var other []string
	var wg sync.WaitGroup
	for p := range nPub {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPub {
				if p == 0 && i == perPub/2 {
					faults.PanicTopic(topic, 1)
				}
				body, _ := json.Marshal(map[string]any{"topic": topic, "payload": map[string]int{"p": p, "i": i}})
				res := vkPost(r.URL, body)
				mu.Lock()
				switch {
				case res.err == nil && res.status == http.StatusCreated:
					acked[res.body["message_id"].(string)] = true
				case res.err == nil && res.status == http.StatusServiceUnavailable:
				default:
					other = append(other, fmt.Sprintf("%d %v %v", res.status, res.body, res.err))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("answers other than 201 and 503: %v", other)
	}
	relaytest.Eventually(t, 10*time.Second, "the restart to be counted", func() bool { return counters.Restarts.Load() >= 1 })
	stored := vkIDsAfter(t, vkStream(t, vkRaw(t, srv), topic), "")
	for _, id := range stored {
		if !acked[id] {
			t.Fatalf("message %s is in the stream but was not acknowledged", id)
		}
	}
	if len(stored) != len(acked) {
		t.Fatalf("stream holds %d, %d acknowledged", len(stored), len(acked))
	}
	if d := vkDiff(vkReadIDs(t, ctx, c, topic, len(stored)), stored); d != "" {
		t.Fatalf("live subscriber across the restart: %s", d)
	}
	vkExpectNext(t, ctx, r, c, topic)
}

// TestValkeyLongRunOfExpiredMessages: a long run of expired messages (more
// than ten thousand, as a busy topic with a short ttl leaves behind) must not
// end history or a replay early: what comes after the run is still served,
// and a replay joins live delivery without a gap.
//
// The expired run is written straight through the store (already expired),
// which is what such a stream holds once the ttls have passed.
func TestValkeyLongRunOfExpiredMessages(t *testing.T) {
	srv := valkeytest.Start(t)
	const (
		topic = "expired-run"
		run   = 12_000
	)
	r, store := vkRelay(t, srv, persistence.Limits{}, 2*time.Second, actors.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := r.MustPublish(topic, map[string]any{"live": "before"})
	past := time.Now().Add(-time.Minute)
	for written := 0; written < run; {
		batch := make([]messages.Message, min(1000, run-written))
		for i := range batch {
			batch[i] = messages.Message{Payload: []byte(`{"expired":true}`), Timestamp: past, ExpiresAt: past.Add(time.Second)}
		}
		n, err := store.Append(ctx, topic, batch)
		if err != nil {
			t.Fatalf("append the expired run: %v", err)
		}
		written += n
	}
	after := []string{r.MustPublish(topic, map[string]any{"live": "after", "n": 1}), r.MustPublish(topic, map[string]any{"live": "after", "n": 2})}
	want := append([]string{before}, after...)

	if got := vkHistory(t, r, topic); !slices.Equal(got, want) {
		t.Fatalf("history across %d expired messages: %v, want %v", run, got, want)
	}
	// A store call scans a bounded number of entries, so the run takes a few
	// short pages, each with a next_cursor past what it skipped.
	var desc []string
	cursor := ""
	for range 100 {
		path := "/api/v1/topics/" + topic + "/messages?order=desc&limit=10"
		if cursor != "" {
			path += "&after=" + cursor
		}
		status, body := vkGet(t, r, path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, status, body)
		}
		list, _ := body["messages"].([]any)
		for _, m := range list {
			desc = append(desc, m.(map[string]any)["message_id"].(string))
		}
		if cursor, _ = body["next_cursor"].(string); cursor == "" || len(desc) >= 3 {
			break
		}
	}
	if !slices.Equal(desc, []string{after[1], after[0], before}) {
		t.Fatalf("history, newest first, across %d expired messages: %v, want %v", run, desc, []string{after[1], after[0], before})
	}
	c := r.Dial(ctx)
	c.Subscribe(ctx, map[string]any{"topics": []string{topic}, "offset": "earliest"})
	if d := vkDiff(vkReadIDs(t, ctx, c, topic, len(want)), want); d != "" {
		t.Fatalf("earliest replay across %d expired messages: %s", run, d)
	}
	vkExpectNext(t, ctx, r, c, topic)
}
