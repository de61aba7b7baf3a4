package e2e

// Scale-out under Valkey failures (issue 12, acceptance 2): relays keep
// every acknowledged message for every subscriber, once and in order,
// while Valkey is SIGKILLed and restarted (AOF, appendfsync always) and
// while it is SIGSTOPped for 3 s.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/valkeytest"
)

// TestScaleoutSurvivesValkeyKillAndStop runs 3 relays, 90 subscribers on
// 10 topics and 8 publishers (smaller than acceptance 1: 4,800 messages
// paced over ~12 s) while Valkey is killed and restarted after a third of
// the messages and paused for 3 s after two thirds. Publishes during the
// faults may be refused (503); none that was acknowledged is lost,
// repeated or reordered for any subscriber, every 201 is in the stream, and
// the relays count their repairs.
func TestScaleoutSurvivesValkeyKillAndStop(t *testing.T) {
	srv := valkeytest.Start(t, valkeytest.WithArgs("--appendonly", "yes", "--appendfsync", "always"))
	relays := startRelays(t, 3, srv.Addr(),
		"RELAY_POSITION_CHECK_INTERVAL=1s", "RELAY_STORE_TIMEOUT=1s", "RELAY_PUBLISH_TIMEOUT=3s")
	raw := rawClient(t, []string{srv.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	topics := topicNames("faults", 10)
	subs := subscribeSpread(t, ctx, relays, topics, 90)
	acks := newAckLog()
	const publishers, each = 8, 600
	var once1, once2 sync.Once
	faults := make(chan struct{})
	var wg sync.WaitGroup
	publishSpread(relays, topics, publishers, each, 400, acks, func(done int) {
		switch {
		case done == publishers*each/3:
			once1.Do(func() {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t.Log("SIGKILL valkey")
					srv.Kill()
					time.Sleep(500 * time.Millisecond) // Valkey stays down for a while
					srv.Restart()
					t.Log("valkey restarted")
				}()
			})
		case done == 2*publishers*each/3:
			once2.Do(func() {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t.Log("SIGSTOP valkey for 3 s")
					srv.Pause()
					time.Sleep(3 * time.Second) // the pause under test
					srv.Resume()
					close(faults)
				}()
			})
		}
	})
	wg.Wait()
	<-faults
	t.Logf("acknowledged %d of %d; refused %v", acks.total(), publishers*each, acks.refusals())
	if acks.total() < publishers*each/2 {
		t.Fatalf("only %d acknowledged", acks.total())
	}
	waitDelivered(t, 30*time.Second, subs, acks.ids)
	checkOrderOnce(t, subs, raw, acks, false)
	if n := sumMetric(t, relays, "relay_gap_repairs_total"); n == 0 {
		t.Fatal("relay_gap_repairs_total is 0 after a Valkey restart")
	}
	t.Logf("repairs: link %v, gap %v, position %v",
		sumMetric(t, relays, "relay_gap_repairs_total", `reason="link"`),
		sumMetric(t, relays, "relay_gap_repairs_total", `reason="gap"`),
		sumMetric(t, relays, "relay_gap_repairs_total", `reason="position"`))
}
