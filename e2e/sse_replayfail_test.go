package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// rangeFailStore is a store whose Range (replay reads) fails on demand:
// while failing, the first okCalls calls still succeed.
type rangeFailStore struct {
	persistence.Store
	failing atomic.Bool
	okCalls atomic.Int64
	calls   atomic.Int64
}

func (f *rangeFailStore) Range(ctx context.Context, topic string, after messages.ID, limit int) (persistence.Page, error) {
	if n := f.calls.Add(1); f.failing.Load() && n > f.okCalls.Load() {
		return persistence.Page{}, fmt.Errorf("range fail store: %w: injected read failure", messages.ErrUnavailable)
	}
	return f.Store.Range(ctx, topic, after, limit)
}

// sseIDPos returns topic's position in an SSE event id.
func sseIDPos(t *testing.T, id, topic string) messages.ID {
	t.Helper()
	for _, part := range strings.Split(id, ";")[1:] {
		if tp, rest, ok := strings.Cut(part, "="); ok && tp == topic {
			idPart, _, _ := strings.Cut(rest, ".")
			mid, err := messages.ParseID(idPart)
			if err != nil {
				t.Fatalf("event id %q: %v", id, err)
			}
			return mid
		}
	}
	t.Fatalf("event id %q has no position for %q", id, topic)
	return messages.ID{}
}

// TestSSEReplayFailureEndsStream: when a resuming stream's replay read
// fails, the relay-error event is the last thing on the stream: no later
// live message moves the topic's position past the messages never
// replayed, and a reconnect from the last id received (reads working
// again) delivers them, then the live one, in order and once each. Both
// places a replay can fail are covered: the first read, when the topic
// actor answers the subscribe ("probe"), and a later page ("page").
func TestSSEReplayFailureEndsStream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		okCalls int64
	}{{"probe", 0}, {"page", 1}} {
		t.Run(tc.name, func(t *testing.T) { testSSEReplayFailure(t, tc.okCalls) })
	}
}

func testSSEReplayFailure(t *testing.T, okCalls int64) {
	store := &rangeFailStore{Store: persistence.NewMemoryStore(persistence.Limits{})}
	store.okCalls.Store(okCalls)
	r := startConsumerRelay(t, relaytest.Options{Store: store})
	const topic = "s1"

	// m1, m2 straight into the store: only a replay can deliver them.
	batch := []messages.Message{
		{Topic: topic, Payload: json.RawMessage(`{"n":1}`), Timestamp: time.Now().UTC()},
		{Topic: topic, Payload: json.RawMessage(`{"n":2}`), Timestamp: time.Now().UTC()},
	}
	if n, err := store.Append(context.Background(), topic, batch); n != 2 || err != nil {
		t.Fatalf("append: %d %v", n, err)
	}
	m1, m2 := batch[0].ID, batch[1].ID

	store.failing.Store(true)
	url := r.URL + "/api/v1/sse?topics=" + topic
	s := openSSE(t, url+"&since=0-0")
	var lastID string
	sawError, ended := false, false
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	var m3 string
	for !ended {
		select {
		case ev, ok := <-s.Events:
			if !ok {
				ended = true
				break
			}
			if ev.ID != "" {
				lastID = ev.ID
			}
			switch ev.Event {
			case "relay-error":
				var body struct{ Code, Message string }
				if err := json.Unmarshal([]byte(ev.Data), &body); err != nil {
					t.Fatalf("relay-error data %q: %v", ev.Data, err)
				}
				if body.Code != messages.CodeSubscriptionError || !strings.Contains(body.Message, fmt.Sprintf("replay of %q failed", topic)) {
					t.Fatalf("relay-error %+v", body)
				}
				if sawError {
					break
				}
				sawError = true
				if c := store.calls.Load(); c != okCalls+1 {
					t.Fatalf("%d Range calls before the relay-error, want %d", c, okCalls+1)
				}
				// Reads work again; a live message follows.
				store.failing.Store(false)
				m3 = mustPublish(t, r.URL, topic, map[string]any{"n": 3})
				// Give the old code time to deliver m3 on this stream.
				timeout.Reset(3 * time.Second)
			case "message":
				if !sawError {
					t.Fatalf("message before the replay failure: %+v", ev)
				}
			}
		case <-timeout.C:
			if !sawError {
				t.Fatal("no relay-error event for the failed replay")
			}
			t.Errorf("the stream did not end after the replay-failure relay-error (last id %q)", lastID)
			s.Close()
			ended = true
		}
	}
	if !sawError {
		t.Fatal("the stream ended without a relay-error event")
	}
	if lastID == "" {
		t.Fatal("no event id received")
	}
	if p := sseIDPos(t, lastID, topic); !p.Less(m1) {
		t.Fatalf("last id %q covers %s..%s, which were never delivered", lastID, m1, m2)
	}

	// Reconnect as EventSource does, from the last id received.
	s2 := openSSE(t, url, "Last-Event-ID", lastID)
	s2.next(t, "subscribed", 5*time.Second)
	want := []string{m1.String(), m2.String(), m3}
	for i, w := range want {
		if m := messageOf(t, s2.next(t, "message", 5*time.Second)); m.MessageID != w {
			t.Fatalf("after reconnect, message %d is %s, want %s (want %v)", i, m.MessageID, w, want)
		}
	}
	// Nothing else pending (no duplicate): a fresh publish is the next event.
	m4 := mustPublish(t, r.URL, topic, map[string]any{"n": 4})
	if m := messageOf(t, s2.next(t, "message", 5*time.Second)); m.MessageID != m4 {
		t.Fatalf("after m1..m3: %s, want %s", m.MessageID, m4)
	}
}
