package actors

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// routerFunc is a topicRouter that records what reaches existing topics.
type routerFunc func(topic string, msg any) bool

func (f routerFunc) route(topic string, _ int64, msg any) error { f(topic, msg); return nil }
func (f routerFunc) routeExisting(topic string, msg any) bool   { return f(topic, msg) }

// nopSink takes every frame.
type nopSink struct{}

func (nopSink) Write([]byte) error { return nil }
func (nopSink) Flush() error       { return nil }
func (nopSink) Close(int, string)  {}

// TestReplayPageStopsForADroppedSubscription: a replay page is read and
// encoded for a subscription its connection holds, and not for one the
// connection has dropped (drop marks it left) or for one of a connection
// that is stopping (Connection.Stop marks its outbox before the actor gets
// to its stop), though the request was sent before: when many connections
// close at once, their pages in flight are not read for nobody.
func TestReplayPageStopsForADroppedSubscription(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{})
	defer store.Close()
	batch := make([]messages.Message, 50)
	for i := range batch {
		batch[i] = messages.Message{Payload: json.RawMessage(`{"i":1}`), Timestamp: time.Now()}
	}
	if _, err := store.Append(context.Background(), "t", batch); err != nil {
		t.Fatal(err)
	}
	s := &subscription{topic: "t", active: true, replaying: true}
	r := &replayRequest{sub: s, maxBytes: 1 << 20}
	if p := readReplayPage(context.Background(), store, "t", r, 100); p.err != nil || len(p.frames) != 50 {
		t.Fatalf("held subscription: %d frames, err %v; want 50", len(p.frames), p.err)
	}

	var unsubscribed []string
	c := &connActor{
		connDeps: &connDeps{obs: nopObserver{}, topics: routerFunc(func(topic string, msg any) bool {
			if _, ok := msg.(*unsubscribeRequest); ok {
				unsubscribed = append(unsubscribed, topic)
			}
			return true
		})},
		subs: map[string]*subscription{"t": s},
	}
	c.drop(s)
	if len(unsubscribed) != 1 || len(c.subs) != 0 {
		t.Fatalf("drop: unsubscribed %v, subscriptions left %d", unsubscribed, len(c.subs))
	}
	if p := readReplayPage(context.Background(), store, "t", r, 100); len(p.frames) != 0 {
		t.Fatalf("dropped subscription: a page of %d frames was read and encoded", len(p.frames))
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	system := NewActorSystem(log)
	m := NewTopicManager(system, store, Config{}, log)
	defer system.Shutdown()
	defer m.Shutdown(context.Background())
	conn, err := m.Connect(nopSink{}, "ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	s2 := &subscription{topic: "t", active: true, replaying: true, outbox: conn.outbox}
	r2 := &replayRequest{sub: s2, maxBytes: 1 << 20}
	if p := readReplayPage(context.Background(), store, "t", r2, 100); len(p.frames) != 50 {
		t.Fatalf("subscription of a live connection: %d frames, want 50", len(p.frames))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn.Stop(ctx)
	if p := readReplayPage(context.Background(), store, "t", r2, 100); len(p.frames) != 0 {
		t.Fatalf("stopped connection: a page of %d frames was read and encoded", len(p.frames))
	}
}
