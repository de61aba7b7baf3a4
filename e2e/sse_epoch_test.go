package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/internal/valkeytest"
)

// TestSSEResumeAfterEpochChangeUnderLiveStream: the stream is recreated
// (FLUSHALL) under a live SSE stream, whose events then carry the new
// incarnation's ids with the tag the stream opened with. A resume from the
// last event gets only what came after it: no replay of what it had, no
// false "truncated".
func TestSSEResumeAfterEpochChangeUnderLiveStream(t *testing.T) {
	srv := valkeytest.Start(t)
	raw, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, Password: srv.Password(), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	r := idemValkeyRelay(t, srv)
	mustPublish(t, r.URL, "ep", map[string]any{"i": 0})
	url := r.URL + "/api/v1/sse?topics=ep"
	s := openSSE(t, url)
	sub := s.next(t, "subscribed", 5*time.Second)
	_ = sub
	if err := raw.Do(context.Background(), raw.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	a := mustPublish(t, r.URL, "ep", map[string]any{"i": 1})
	b := mustPublish(t, r.URL, "ep", map[string]any{"i": 2})
	e1 := s.next(t, "message", 5*time.Second)
	e2 := s.next(t, "message", 5*time.Second)
	if messageOf(t, e1).MessageID != a || messageOf(t, e2).MessageID != b {
		t.Fatalf("live events after the flush: %q %q, want %s %s", e1.ID, e2.ID, a, b)
	}
	s.Close()
	s2 := openSSE(t, url, "Last-Event-ID", e2.ID)
	s2.next(t, "subscribed", 5*time.Second)
	c := mustPublish(t, r.URL, "ep", map[string]any{"i": 3})
	var got []string
	deadline := time.After(3 * time.Second)
	for {
		select {
		case ev := <-s2.Events:
			if ev.Event == "message" {
				got = append(got, messageOf(t, ev).MessageID)
			} else if ev.Event != "" {
				got = append(got, "<"+ev.Event+">")
			}
			continue
		case <-deadline:
		}
		break
	}
	t.Logf("after resume from %q: %v (new: %s)", e2.ID, got, c)
	if strings.Join(got, ",") != c {
		t.Fatalf("resume after an epoch change under a live SSE stream: got %v, want only %s", got, c)
	}
}
