package e2e

// Scale-out (issue 12, acceptance 1, 3 and 4): relay processes sharing one
// Valkey deliver every message live to every subscriber, whichever relay
// it was published through, once and in stream order.

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/internal/valkeytest"
)

// TestScaleoutThreeRelaysDeliverEverything (acceptance 1): 3 relays on one
// Valkey, 300 subscribers spread over them on 10 topics, 8 publishers
// spread over them, 20,000 messages: every subscriber gets every message of
// its topic once, in stream order.
func TestScaleoutThreeRelaysDeliverEverything(t *testing.T) {
	srv := valkeytest.Start(t)
	relays := startRelays(t, 3, srv.Addr())
	raw := rawClient(t, []string{srv.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	topics := topicNames("scale", 10)
	subs := subscribeSpread(t, ctx, relays, topics, 300)
	acks := newAckLog()
	publishSpread(relays, topics, 8, 2500, 0, acks, nil)
	if got := acks.total(); got != 20000 {
		t.Fatalf("%d of 20000 publishes acknowledged; refused: %v", got, acks.refusals())
	}
	waitDelivered(t, 60*time.Second, subs, acks.ids)
	checkOrderOnce(t, subs, raw, acks, true)
	for _, r := range relays {
		if code, body := r.Ready(); code != 200 || !strings.Contains(body, `"pubsub":"ok"`) {
			t.Fatalf("/ready: %d %s", code, body)
		}
	}
}

// TestScaleoutWedgedLinkRepaired (acceptance 3): Valkey kills the relays'
// pub/sub connections (CLIENT KILL TYPE pubsub); messages published right
// after reach the subscribers on the other relay within the position-check
// period, none lost, and the repair is counted.
func TestScaleoutWedgedLinkRepaired(t *testing.T) {
	srv := valkeytest.Start(t)
	const period = time.Second
	relays := startRelays(t, 2, srv.Addr(), "RELAY_POSITION_CHECK_INTERVAL=1s")
	raw := rawClient(t, []string{srv.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	topics := topicNames("wedge", 2)
	subs := subscribeSpread(t, ctx, relays[1:], topics, 10) // all on relay B
	acks := newAckLog()
	for i := range 20 {
		acks.publishTo(relays[0].URL, topics[i%2], 0, i)
	}
	waitDelivered(t, 10*time.Second, subs, acks.ids)
	// Only the relay with subscribers listens to the topics' channels.
	if a, b := sumMetric(t, relays[:1], "relay_feed_topics"), sumMetric(t, relays[1:], "relay_feed_topics"); a != 0 || b != 2 {
		t.Fatalf("relay_feed_topics: publisher-only relay %v, subscribers' relay %v; want 0 and 2", a, b)
	}

	if err := raw.Do(ctx, raw.B().ClientKill().TypePubsub().Build()).Error(); err != nil {
		t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
	}
	for i := range 20 {
		acks.publishTo(relays[0].URL, topics[i%2], 1, i)
	}
	if got := acks.total(); got != 40 {
		t.Fatalf("%d of 40 acknowledged: %v", got, acks.refusals())
	}
	start := time.Now()
	waitDelivered(t, 2*period+5*time.Second, subs, acks.ids)
	t.Logf("repaired %s after the last publish", time.Since(start))
	checkOrderOnce(t, subs, raw, acks, true)
	relaytest.Eventually(t, 10*time.Second, "a counted repair on relay B", func() bool {
		return sumMetric(t, relays[1:], "relay_gap_repairs_total") > 0
	})
}

// TestScaleoutResumeOnAnotherRelay (acceptance 4): a subscriber on relay A
// disconnects, reconnects to relay B with since, and gets exactly what it
// missed, then live messages.
func TestScaleoutResumeOnAnotherRelay(t *testing.T) {
	srv := valkeytest.Start(t)
	relays := startRelays(t, 2, srv.Addr())
	resumeOnAnotherRelay(t, relays, []string{srv.Addr()}, "resume")
}

func resumeOnAnotherRelay(t *testing.T, relays []*relaytest.Process, addrs []string, topic string) {
	raw := rawClient(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acks := newAckLog()

	a, err := relaytest.Record(ctx, relays[0].WSURL, map[string]any{"topics": []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		acks.publishTo(relays[i%2].URL, topic, 0, i)
	}
	first := acks.ids(topic)
	relaytest.Eventually(t, 10*time.Second, "the first 10 on relay A", func() bool { return len(a.IDs(topic)) == 10 })
	a.Close()
	seen := a.IDs(topic)
	if !slices.Equal(seen, first) {
		t.Fatalf("relay A delivered %v, want %v", seen, first)
	}
	for i := range 15 {
		acks.publishTo(relays[i%2].URL, topic, 1, i)
	}
	b, err := relaytest.Record(ctx, relays[1].WSURL, map[string]any{"topics": []string{topic}, "since": map[string]string{topic: seen[len(seen)-1]}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 5 {
		acks.publishTo(relays[i%2].URL, topic, 2, i)
	}
	all := acks.ids(topic)
	if len(all) != 30 {
		t.Fatalf("%d of 30 acknowledged: %v", len(all), acks.refusals())
	}
	relaytest.Eventually(t, 10*time.Second, "the missed 15 and the live 5 on relay B", func() bool { return len(b.IDs(topic)) >= 20 })
	if got := b.IDs(topic); !slices.Equal(got, all[10:]) {
		t.Fatalf("relay B delivered %v\nwant %v", got, all[10:])
	}
	if s := streamIDs(t, raw, topic); !slices.Equal(s, all) {
		t.Fatalf("stream %v, want %v", s, all)
	}
}

// TestScaleoutPollWaiterAcrossRelays: a long-poll waiting on relay B is
// answered by a message published through relay A (waiters follow the
// topic's channel like WebSocket subscribers), and a poll with since on B
// gets what was published on A meanwhile.
func TestScaleoutPollWaiterAcrossRelays(t *testing.T) {
	srv := valkeytest.Start(t)
	relays := startRelays(t, 2, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "poll-across"
	type result struct {
		status int
		a      pollAnswer
	}
	done := make(chan result, 1)
	go func() {
		s, a := poll(t, ctx, relays[1].URL+"/api/v1/poll", map[string]any{"topics": []string{topic}, "timeout": 20})
		done <- result{s, a}
	}()
	relaytest.Eventually(t, 10*time.Second, "the poll waiting on relay B", func() bool {
		v, err := relays[1].Metric("relay_connections", `transport="poll"`)
		return err == nil && v == 1
	})
	first := mustPublish(t, relays[0].URL, topic, map[string]any{"n": 0})
	res := <-done
	if res.status != 200 || len(res.a.Messages) != 1 || res.a.Messages[0].MessageID != first {
		t.Fatalf("poll on B: %d %+v, want %s", res.status, res.a, first)
	}
	var ids []string
	for i := range 3 {
		ids = append(ids, mustPublish(t, relays[0].URL, topic, map[string]any{"n": i + 1}))
	}
	status, a := poll(t, ctx, relays[1].URL+"/api/v1/poll", map[string]any{"topics": []string{topic}, "since": map[string]string{topic: first}, "timeout": 5})
	var got []string
	for _, m := range a.Messages {
		got = append(got, m.MessageID)
	}
	if status != 200 || !slices.Equal(got, ids) {
		t.Fatalf("poll with since on B: %d %v, want %v", status, got, ids)
	}
}

// TestScaleoutClusterRequiredRefusesStandalone: RELAY_VALKEY_CLUSTER=1
// against a standalone server stops start-up with a message naming the
// setting.
func TestScaleoutClusterRequiredRefusesStandalone(t *testing.T) {
	srv := valkeytest.Start(t)
	bin, err := relaytest.BuildRelay()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "RELAY_HTTP_ADDR="+relaytest.FreeAddr(t), "RELAY_VALKEY_ADDR="+srv.Addr(), "RELAY_VALKEY_CLUSTER=1")
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "RELAY_VALKEY_CLUSTER=1") {
		t.Fatalf("exit %v (ctx %v); output:\n%s", err, ctx.Err(), out)
	}
}
