package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
)

func TestPublishSubscribeBasics(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	status, body := r.Publish("notifications", map[string]any{"user_id": 123, "message": "Hello"})
	if status != http.StatusCreated || body["message_id"] == nil || body["topic"] != "notifications" || body["timestamp"] == nil {
		t.Fatalf("publish: %d %v", status, body)
	}

	c := r.Dial(ctx)
	sub := c.Subscribe(ctx, map[string]any{"topics": []string{"notifications", "alerts"}})
	if len(sub.Topics) != 2 || sub.SessionID == "" {
		t.Fatalf("subscribed frame: %+v", sub)
	}
	var want []string
	for i := range 20 {
		topic := []string{"notifications", "alerts"}[i%2]
		want = append(want, topic+"/"+r.MustPublish(topic, map[string]any{"n": i}))
	}
	for i, w := range want {
		f := c.MustRead(ctx)
		if got := f.Topic + "/" + f.MessageID; f.Type != "message" || got != w {
			t.Fatalf("message %d: got %+v, want %s", i, f, w)
		}
		if f.Payload["n"] != float64(i) {
			t.Fatalf("message %d payload %v", i, f.Payload)
		}
	}

	c.Send(ctx, map[string]any{"type": "ping"})
	if f := c.MustRead(ctx); f.Type != "pong" || f.Timestamp == "" {
		t.Fatalf("want pong, got %+v", f)
	}

	c.Send(ctx, map[string]any{"type": "unsubscribe", "topics": []string{"alerts"}})
	if f := c.MustRead(ctx); f.Type != "unsubscribed" || len(f.Topics) != 1 || f.Topics[0] != "alerts" {
		t.Fatalf("want unsubscribed, got %+v", f)
	}
	r.MustPublish("alerts", map[string]any{"after": "unsubscribe"})
	last := r.MustPublish("notifications", map[string]any{"marker": true})
	if f := c.MustRead(ctx); f.MessageID != last || f.Topic != "notifications" {
		t.Fatalf("after unsubscribe got %+v, want only the notifications marker %s", f, last)
	}
}
