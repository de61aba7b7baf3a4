package actors_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
	"github.com/pulsar-relay/relay/policy"
)

func mustSet(t *testing.T, doc string) *policy.Set {
	t.Helper()
	s, err := policy.Parse([]byte(doc), policy.JSON)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func viewOf(t *testing.T, m *actors.TopicManager, topic string) policy.TopicView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, v := range m.TopicsView(ctx).Topics {
		if v.Topic == topic {
			return v
		}
	}
	t.Fatalf("topic %s not in the admin view", topic)
	return policy.TopicView{}
}

// TestPoliciesApplyToRunningTopics: a topic actor starts with its policy
// (Config.Policies) and takes a new set before its next message: the
// mailbox bound, the store's max_messages on the next append, and what it
// reports in the admin view. Topics no rule matches keep the base.
func TestPoliciesApplyToRunningTopics(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{Policies: mustSet(t, `{"topics":{"jobs.*":{"mailbox_size":7}}}`)})
	publish(t, m, "jobs.a", 1)
	publish(t, m, "other", 1)
	if v := viewOf(t, m, "jobs.a"); v.Policy.Value("mailbox_size") != "7" || v.LastID == "" {
		t.Fatalf("jobs.a at start: %+v", v)
	}
	if got := viewOf(t, m, "other").Policy.Value("mailbox_size"); got != "10000" {
		t.Fatalf("other runs with mailbox %s, want the base 10000", got)
	}

	if n := m.SetPolicies(mustSet(t, `{"topics":{"jobs.*":{"mailbox_size":9,"max_messages":3}}}`)); n != 2 {
		t.Fatalf("SetPolicies told %d topic actors, want 2", n)
	}
	for i := 2; i <= 10; i++ {
		publish(t, m, "jobs.a", i)
	}
	if got := len(storedIDs(t, store, "jobs.a", messages.ID{})); got != 3 {
		t.Fatalf("jobs.a keeps %d messages, want max_messages 3 applied on append", got)
	}
	v := viewOf(t, m, "jobs.a")
	if v.Policy.Value("mailbox_size") != "9" || v.Policy.Value("max_messages") != "3" || v.Subscribers["websocket"] != 0 {
		t.Fatalf("jobs.a after the change: %+v", v)
	}
	if v.PublishesPerSec <= 0 {
		t.Fatalf("publishes/s %v after 10 publishes", v.PublishesPerSec)
	}
	if p := m.EffectivePolicy("jobs.b"); *p.MailboxSize != 9 || *p.MaxBatch != actors.DefaultMaxBatch {
		t.Fatalf("effective policy of a topic not yet running: %v", p)
	}

	// Mailbox 1 refuses a publish while one is queued: the bound is the
	// topic's own, checked before queueing.
	m.SetPolicies(mustSet(t, `{"topics":{"jobs.a":{"mailbox_size":1}}}`))
	viewOf(t, m, "jobs.a") // the change is handled before this answer
	msgs := make([]messages.Message, 50)
	for i := range msgs {
		msgs[i] = messages.Message{Topic: "jobs.a", Payload: []byte(`{}`), Timestamp: time.Now()}
	}
	overloaded := 0
	for _, r := range m.PublishAll(context.Background(), msgs) {
		if errors.Is(r.Err, messages.ErrOverloaded) {
			overloaded++
		}
	}
	if overloaded == 0 {
		t.Fatal("50 publishes at once into a mailbox of 1: none refused")
	}
}

// TestConnectionsView counts live connections by transport.
func TestConnectionsView(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{})
	s := newSink()
	c := connect(t, m, s)
	if v := m.ConnectionsView(); v.Total != 1 || v.ByTransport["websocket"] != 1 || len(v.Slowest) != 1 {
		t.Fatalf("one connection: %+v", v)
	}
	c.Stop(context.Background())
	if v := m.ConnectionsView(); v.Total != 0 || len(v.Slowest) != 0 {
		t.Fatalf("after Stop: %+v", v)
	}
}

// TestSupervisorBudgetPerTopic: a topic whose policy allows one restart is
// stopped at its second failure, while a topic on the base budget (10)
// restarts through three; the admin view counts the restarts.
func TestSupervisorBudgetPerTopic(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = store.Close() })
	faults, counters := &actors.Faults{}, &relaytest.Counters{}
	m := newManager(t, store, actors.Config{Faults: faults, Observer: counters,
		Supervisor: actors.SupervisorConfig{Backoff: time.Millisecond},
		Policies:   mustSet(t, `{"topics":{"fragile":{"supervisor_max_restarts":1,"supervisor_window":"1m","supervisor_backoff":"1ms"}}}`)})
	publish(t, m, "fragile", 0)
	publish(t, m, "sturdy", 0)
	faults.PanicTopic("fragile", 2)
	faults.PanicTopic("sturdy", 3)
	for i := 1; i <= 3; i++ { // each publish meets one armed fault: 503
		for _, topic := range []string{"fragile", "sturdy"} {
			// Bounded: a publish that reaches a topic actor while it is
			// being stopped after failures may go unanswered.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = m.Publish(ctx, message(topic, i))
			cancel()
		}
	}
	relaytest.Eventually(t, 5*time.Second, "1 stop and 4 restarts", func() bool {
		return counters.Stops.Load() == 1 && counters.Restarts.Load() == 4
	})
	if v := viewOf(t, m, "sturdy"); v.Restarts != 3 {
		t.Fatalf("sturdy reports %d restarts, want 3", v.Restarts)
	}
}

// TestPublishWithinHonoursTheTopicMailbox: the single-publish path (the
// gateway's POST /api/v1/messages) checks a topic's own mailbox_size, as
// Publish and PublishAll do, not only the process-wide bound.
func TestPublishWithinHonoursTheTopicMailbox(t *testing.T) {
	store := relaytest.NewFaultyStore(nil)
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{Policies: mustSet(t, `{"topics":{"jobs.*":{"mailbox_size":2}}}`)})
	store.Stall(500 * time.Millisecond) // the first write holds; the rest queue
	var wg sync.WaitGroup
	var mu sync.Mutex
	overloaded, stored := 0, 0
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			_, err := m.PublishWithin(context.Background(), messages.Message{Topic: "jobs.a", Payload: []byte(`{}`), Timestamp: time.Now()}, 10*time.Second)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, messages.ErrOverloaded):
				overloaded++
			case err == nil:
				stored++
			default:
				t.Errorf("publish: %v", err)
			}
		})
	}
	wg.Wait()
	// At most the one being written plus two queued get through while the
	// store stalls; the 20 start well inside its 500 ms.
	if overloaded < 10 || stored == 0 {
		t.Fatalf("20 publishes at once into a mailbox of 2: %d refused, %d stored", overloaded, stored)
	}
}
