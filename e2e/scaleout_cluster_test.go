package e2e

// Scale-out on a Valkey Cluster (issue 12, acceptance 5): three masters and
// three replicas on loopback, started once for the test below.

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/internal/valkeytest"
)

// TestScaleoutCluster: on one cluster, (1) three relays deliver every
// message to every subscriber once, in order (60 subscribers, 10 topics, 4
// publishers, 2,000 messages); (2) the topics' keys land on all three
// masters; (3) a subscriber resumes on another relay with since; (4) with
// RELAY_VALKEY_WAIT_REPLICAS=1, killing the master of a busy topic mid-run
// loses no acknowledged message after the failover (the killed master is
// then restarted and rejoins as the new master's replica, so that WAIT 1
// can succeed again).
func TestScaleoutCluster(t *testing.T) {
	cluster := valkeytest.StartCluster(t)
	seeds := strings.Join(cluster.Addrs(), ",")
	raw := rawClient(t, cluster.Addrs())
	topics := topicNames("cl", 10)

	t.Run("deliver", func(t *testing.T) {
		relays := startRelays(t, 3, seeds, "RELAY_VALKEY_CLUSTER=1")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		subs := subscribeSpread(t, ctx, relays, topics, 60)
		acks := newAckLog()
		publishSpread(relays, topics, 4, 500, 0, acks, nil)
		if got := acks.total(); got != 2000 {
			t.Fatalf("%d of 2000 acknowledged: %v", got, acks.refusals())
		}
		waitDelivered(t, 30*time.Second, subs, acks.ids)
		checkOrderOnce(t, subs, raw, acks, true)
	})

	t.Run("topics on every master", func(t *testing.T) {
		masters := cluster.Masters()
		if len(masters) != 3 {
			t.Fatalf("%d masters", len(masters))
		}
		for _, m := range masters {
			if n := streamsOn(t, m.Addr(), topics); n == 0 {
				t.Fatalf("master %s holds none of the 10 topics", m.Addr())
			}
		}
	})

	t.Run("resume on another relay", func(t *testing.T) {
		relays := startRelays(t, 2, seeds)
		resumeOnAnotherRelay(t, relays, cluster.Addrs(), "cl-resume")
	})

	t.Run("failover with WAIT 1", func(t *testing.T) {
		relays := startRelays(t, 2, seeds, "RELAY_VALKEY_WAIT_REPLICAS=1",
			"RELAY_POSITION_CHECK_INTERVAL=1s", "RELAY_STORE_TIMEOUT=1s", "RELAY_PUBLISH_TIMEOUT=3s")
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		busy := []string{"cl-busy"}
		subs := subscribeSpread(t, ctx, relays, busy, 10)
		acks := newAckLog()
		for i := range 20 {
			acks.publishTo(relays[i%2].URL, busy[0], 9, i)
		}
		var owner *valkeytest.Server
		for _, m := range cluster.Masters() {
			if streamsOn(t, m.Addr(), busy) == 1 {
				owner = m
			}
		}
		if owner == nil {
			t.Fatal("no master holds the busy topic")
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for p := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load() && i < 5000; i++ {
					acks.publishTo(relays[p].URL, busy[0], p, i)
					time.Sleep(5 * time.Millisecond) // pacing the load
				}
			}()
		}
		relaytest.Eventually(t, 10*time.Second, "publishes before the kill", func() bool { return len(acks.ids(busy[0])) > 100 })
		t.Logf("SIGKILL master %s", owner.Addr())
		owner.Kill()
		relaytest.Eventually(t, 30*time.Second, "a replica to take over the busy topic's slot", func() bool {
			for _, m := range cluster.Masters() {
				if m != owner && streamsOn(t, m.Addr(), busy) == 1 {
					return true
				}
			}
			return false
		})
		// The new master has no replica until the old one comes back as
		// its replica: WAIT 1 refuses every publish meanwhile.
		owner.Restart()
		t.Logf("old master back (as a replica); refused so far %v", acks.refusals())
		before := len(acks.ids(busy[0]))
		relaytest.Eventually(t, 30*time.Second, "publishes acknowledged after the failover", func() bool {
			return len(acks.ids(busy[0])) > before+100
		})
		stop.Store(true)
		wg.Wait()
		t.Logf("acknowledged %d; refused %v", len(acks.ids(busy[0])), acks.refusals())
		waitDelivered(t, 30*time.Second, subs, acks.ids)
		checkOrderOnce(t, subs, raw, acks, false)
	})
}

// streamsOn counts the topics whose stream is on the node at addr (asked
// directly, without following redirects).
func streamsOn(t *testing.T, addr string, topics []string) int {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatalf("client on %s: %v", addr, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := 0
	for _, topic := range topics {
		// A key of another node's slot answers MOVED: not here.
		if v, err := c.Do(ctx, c.B().Exists().Key("topic:{"+topic+"}:stream").Build()).AsInt64(); err == nil && v == 1 {
			n++
		}
	}
	return n
}
