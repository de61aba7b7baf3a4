package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/pulsar-relay/relay/internal/relaytest"
)

// TestMemoryStoreByteBudget: the relay process on the memory store with
// RELAY_MEMORY_STORE_BYTES=1MiB takes 3 MB of publishes to one topic with
// 201 each; relay_store_bytes stays within the budget, the flooded topic's
// history starts later than its first message, and a small topic written
// before the flood still has all its messages.
func TestMemoryStoreByteBudget(t *testing.T) {
	p := relaytest.StartProcess(t, "RELAY_MEMORY_STORE_BYTES=1MiB")
	for i := range 5 {
		if code, _ := publish(t, p.URL, "budget.small", map[string]any{"i": i}); code != 201 {
			t.Fatalf("small publish %d: %d", i, code)
		}
	}
	pad := strings.Repeat("x", 8<<10)
	for i := range 360 {
		if code, _ := publish(t, p.URL, "budget.flood", map[string]any{"i": i, "pad": pad}); code != 201 {
			t.Fatalf("flood publish %d: %d", i, code)
		}
	}
	held, err := p.Metric("relay_store_bytes")
	if err != nil || held <= 0 || held > 1<<20 {
		t.Fatalf("relay_store_bytes = %v (%v); want within the 1 MiB budget", held, err)
	}
	if n := historyLen(t, p.URL, "budget.small"); n != 5 {
		t.Errorf("the small topic holds %d messages after the flood, want 5", n)
	}
	if n := historyLen(t, p.URL, "budget.flood"); n == 0 || n >= 360 {
		t.Errorf("the flooded topic holds %d of 360 messages; want its newest only", n)
	}
}

// historyLen counts the messages GET /api/v1/topics/{topic}/messages
// returns (up to 1,000).
func historyLen(t *testing.T, url, topic string) int {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/topics/" + topic + "/messages?limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != 200 {
		t.Fatalf("history of %s: %d %v", topic, resp.StatusCode, err)
	}
	return len(page.Messages)
}
