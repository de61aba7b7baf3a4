package e2e

// Helpers of the scale-out tests (issue 12): several relay processes on one
// Valkey (or a Valkey Cluster), subscribers and publishers spread over
// them, and the checks that every subscriber got every acknowledged
// message of its topics once, in stream order.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
)

// startRelays starts n relay processes on the Valkey at addrs (comma
// separated), with env added.
func startRelays(t *testing.T, n int, addrs string, env ...string) []*relaytest.Process {
	t.Helper()
	var out []*relaytest.Process
	for range n {
		e := append([]string{"RELAY_VALKEY_ADDR=" + addrs, "RELAY_LOG_LEVEL=warn"}, env...)
		out = append(out, relaytest.StartProcess(t, e...))
	}
	return out
}

// scaleSub is one recording subscriber and its topics.
type scaleSub struct {
	rec    *relaytest.Recorder
	topics []string
	relay  int
}

// subscribeSpread connects n subscribers round-robin over relays; the i-th
// subscribes to topics[i % len(topics)].
func subscribeSpread(t *testing.T, ctx context.Context, relays []*relaytest.Process, topics []string, n int) []*scaleSub {
	t.Helper()
	subs := make([]*scaleSub, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			topic := topics[i%len(topics)]
			r := relays[i%len(relays)]
			rec, err := relaytest.Record(ctx, r.WSURL, map[string]any{"topics": []string{topic}})
			if err != nil {
				errs <- fmt.Errorf("subscriber %d on relay %d: %w", i, i%len(relays), err)
				return
			}
			subs[i] = &scaleSub{rec: rec, topics: []string{topic}, relay: i % len(relays)}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range subs {
			if s != nil {
				s.rec.Close()
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return subs
}

// ackLog records what publishers were told: acknowledged ids per topic,
// and the refusals.
type ackLog struct {
	mu      sync.Mutex
	acked   map[string][]string
	refused map[int]int // status -> count
}

func newAckLog() *ackLog {
	return &ackLog{acked: make(map[string][]string), refused: make(map[int]int)}
}

func (a *ackLog) ids(topic string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.acked[topic])
}

// refusals returns a copy of the refusal counts by status.
func (a *ackLog) refusals() map[int]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[int]int, len(a.refused))
	for k, v := range a.refused {
		out[k] = v
	}
	return out
}

func (a *ackLog) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, ids := range a.acked {
		n += len(ids)
	}
	return n
}

// publishTo posts one message and records the outcome. Transport errors
// and 5xx count as refusals (the message may or may not be stored; it was
// not acknowledged).
func (a *ackLog) publishTo(url, topic string, p, i int) {
	body, _ := json.Marshal(map[string]any{"topic": topic, "payload": map[string]int{"p": p, "i": i}})
	resp, err := relaytest.HTTPClient.Post(url+"/api/v1/messages", "application/json", bytes.NewReader(body))
	if err != nil {
		a.mu.Lock()
		a.refused[0]++
		a.mu.Unlock()
		return
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"message_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	a.mu.Lock()
	defer a.mu.Unlock()
	if resp.StatusCode != http.StatusCreated || out.ID == "" {
		a.refused[resp.StatusCode]++
		return
	}
	a.acked[topic] = append(a.acked[topic], out.ID)
}

// publishSpread runs publishers goroutines round-robin over relays, each
// publishing perPublisher messages over the topics in turn, paced at most
// rate messages per second in all (0: as fast as they go). Between
// publishes it calls between(total published so far), if set.
func publishSpread(relays []*relaytest.Process, topics []string, publishers, perPublisher, rate int, log *ackLog, between func(done int)) {
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(publishers) * time.Second / time.Duration(rate)
	}
	var mu sync.Mutex
	done := 0
	wait := relaytest.Publishers(publishers, perPublisher, nil, func(p, i int) bool {
		start := time.Now()
		log.publishTo(relays[p%len(relays)].URL, topics[(p+i)%len(topics)], p, i)
		if between != nil {
			mu.Lock()
			done++
			d := done
			mu.Unlock()
			between(d)
		}
		if interval > 0 {
			if rest := interval - time.Since(start); rest > 0 {
				time.Sleep(rest) // pacing the load, not waiting for a condition
			}
		}
		return true
	})
	wait()
}

// streamIDs reads every id of topic's stream with XRANGE.
func streamIDs(t *testing.T, c valkey.Client, topic string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entries, err := c.Do(ctx, c.B().Xrange().Key("topic:{"+topic+"}:stream").Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", topic, err)
	}
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.ID
	}
	return out
}

// waitDelivered waits until every subscriber holds at least every
// acknowledged message of its topics (and, with exact, the whole stream).
func waitDelivered(t *testing.T, d time.Duration, subs []*scaleSub, want func(topic string) []string) {
	t.Helper()
	need := make(map[string][]string)
	deadline := time.Now().Add(d)
	for _, s := range subs {
		for _, topic := range s.topics {
			if _, ok := need[topic]; !ok {
				need[topic] = want(topic)
			}
		}
	}
	for {
		missing, first := 0, ""
		for i, s := range subs {
			if err := s.rec.Err(); err != nil {
				t.Fatalf("subscriber %d (relay %d) stopped: %v", i, s.relay, err)
			}
			for _, topic := range s.topics {
				got := s.rec.IDs(topic)
				have := make(map[string]bool, len(got))
				for _, id := range got {
					have[id] = true
				}
				for _, id := range need[topic] {
					if !have[id] {
						missing++
						if first == "" {
							first = fmt.Sprintf("subscriber %d (relay %d) lacks %s on %s (has %d of %d)", i, s.relay, id, topic, len(got), len(need[topic]))
						}
					}
				}
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d deliveries missing; first: %s", d, missing, first)
		}
		time.Sleep(100 * time.Millisecond) // polling the recorders
	}
}

// checkOrderOnce checks that each subscriber's ids per topic are strictly
// increasing (so no repeats, in stream order) and are all in the stream,
// and that every acknowledged id is in the stream. With exact, each
// subscriber got the whole stream.
func checkOrderOnce(t *testing.T, subs []*scaleSub, raw valkey.Client, acks *ackLog, exact bool) {
	t.Helper()
	streams := make(map[string][]string)
	for _, s := range subs {
		for _, topic := range s.topics {
			if _, ok := streams[topic]; !ok {
				streams[topic] = streamIDs(t, raw, topic)
			}
		}
	}
	for topic, ids := range streams {
		in := make(map[string]bool, len(ids))
		for _, id := range ids {
			in[id] = true
		}
		for _, id := range acks.ids(topic) {
			if !in[id] {
				t.Fatalf("acknowledged %s on %s is not in the stream", id, topic)
			}
		}
	}
	for i, s := range subs {
		for _, topic := range s.topics {
			got := s.rec.IDs(topic)
			var prev messages.ID
			in := make(map[string]bool, len(streams[topic]))
			for _, id := range streams[topic] {
				in[id] = true
			}
			for j, text := range got {
				id, err := messages.ParseID(text)
				if err != nil {
					t.Fatalf("subscriber %d: bad id %q", i, text)
				}
				if j > 0 && !prev.Less(id) {
					t.Fatalf("subscriber %d (relay %d) on %s: %s after %s (repeat or out of order)", i, s.relay, topic, text, prev)
				}
				prev = id
				if !in[text] {
					t.Fatalf("subscriber %d on %s got %s, which is not in the stream", i, topic, text)
				}
			}
			if exact && !slices.Equal(got, streams[topic]) {
				t.Fatalf("subscriber %d (relay %d) on %s: %d messages, stream has %d", i, s.relay, topic, len(got), len(streams[topic]))
			}
		}
	}
}

// rawClient is a plain valkey-go client on addrs (one node or cluster
// seeds), closed in cleanup.
func rawClient(t *testing.T, addrs []string) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatalf("raw valkey client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// sumMetric sums a metric over relays.
func sumMetric(t *testing.T, relays []*relaytest.Process, name string, labels ...string) float64 {
	t.Helper()
	sum := 0.0
	for _, r := range relays {
		v, err := r.Metric(name, labels...)
		if err != nil {
			t.Fatalf("metrics of %s: %v", r.URL, err)
		}
		sum += v
	}
	return sum
}

// topicNames returns n topic names with prefix.
func topicNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "-" + strings.Repeat("t", 1) + fmt.Sprint(i)
	}
	return out
}
