package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// postPoll posts body to /api/v1/poll over the relay's socket and returns
// the status and the raw answer. A nil length hides the body's length, so
// that it goes chunked.
func postPoll(t *testing.T, url string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/api/v1/poll", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := relaytest.HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("poll answer: %v", err)
	}
	return resp.StatusCode, raw
}

// TestPollCatchUpByteCap: a long-poll catch-up over a backlog several times
// HistoryMaxBytes answers at most about that (plus one message, always at
// least one), with has_more while anything is left; a reader that follows
// its cursor as pulsar-relay-client does (per topic, the id of the last
// message it got of that topic) gets every message exactly once, in id
// order per topic, even when an answer ends in the middle of a topic.
func TestPollCatchUpByteCap(t *testing.T) {
	const budget = 1 << 20
	r := relaytest.Start(t, relaytest.Options{Gateway: gateway.Config{HistoryMaxBytes: budget, MaxMessageSize: 2 << 20}})
	topics := []string{"big", "mid", "small"}
	sizes := map[string]func(i int) int{
		"big": func(i int) int { // ~200 KiB, one of 1.5 MiB: over the cap alone
			if i == 12 {
				return 1536 << 10
			}
			return 200 << 10
		},
		"mid":   func(int) int { return 90 << 10 },
		"small": func(int) int { return 100 },
	}
	counts := map[string]int{"big": 30, "mid": 25, "small": 150}
	published := map[string][]string{}
	largest, total := 0, 0
	for i := range 150 {
		for _, topic := range topics {
			if i >= counts[topic] {
				continue
			}
			n := sizes[topic](i)
			largest, total = max(largest, n), total+n
			status, out := r.Publish(topic, map[string]any{"i": i, "pad": strings.Repeat("x", n)})
			if status != http.StatusCreated {
				t.Fatalf("publish %s %d: %d %v", topic, i, status, out)
			}
			published[topic] = append(published[topic], out["message_id"].(string))
		}
	}
	if total < 5*budget {
		t.Fatalf("backlog of %d bytes, want several times %d", total, budget)
	}

	since := map[string]string{"big": "0-0", "mid": "0-0", "small": "0-0"}
	got := map[string][]string{}
	seen := map[string]bool{}
	answers := 0
	for polls := 0; ; polls++ {
		if polls == 100 {
			t.Fatal("the reader did not catch up in 100 polls")
		}
		body, _ := json.Marshal(map[string]any{"topics": topics, "since": since, "timeout": 1})
		status, raw := postPoll(t, r.URL, bytes.NewReader(body))
		if status != http.StatusOK {
			t.Fatalf("poll %d: %d %.300s", polls, status, raw)
		}
		var a struct {
			Messages []struct {
				MessageID string `json:"message_id"`
				Topic     string `json:"topic"`
				Payload   struct {
					I int `json:"i"`
				} `json:"payload"`
			} `json:"messages"`
			HasMore bool `json:"has_more"`
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("poll %d: %v", polls, err)
		}
		// The cap, plus the one message that may go over it, plus the
		// envelope of each message.
		if limit := budget + largest + 512*len(a.Messages); len(raw) > limit {
			t.Fatalf("poll %d: %d bytes in %d messages (has_more %v), want at most %d", polls, len(raw), len(a.Messages), a.HasMore, limit)
		}
		if len(a.Messages) == 0 {
			t.Fatalf("poll %d: nothing, has_more %v, with %v left", polls, a.HasMore, since)
		}
		for _, m := range a.Messages {
			if seen[m.MessageID+"/"+m.Topic] {
				t.Fatalf("poll %d: %s of %s again", polls, m.MessageID, m.Topic)
			}
			seen[m.MessageID+"/"+m.Topic] = true
			got[m.Topic] = append(got[m.Topic], m.MessageID)
			since[m.Topic] = m.MessageID // pulsar-relay-client's cursor
			if want := len(got[m.Topic]) - 1; m.Payload.I != want {
				t.Fatalf("poll %d: %s message %s is number %d, want %d", polls, m.Topic, m.MessageID, m.Payload.I, want)
			}
		}
		answers++
		t.Logf("poll %d: %d messages, %d bytes, has_more %v", polls, len(a.Messages), len(raw), a.HasMore)
		if polls == 0 && !a.HasMore {
			t.Fatalf("the first poll: %d messages, %d bytes, has_more false", len(a.Messages), len(raw))
		}
		if !a.HasMore {
			break
		}
	}
	if want := total / (budget + largest); answers < want {
		t.Fatalf("caught up in %d answers, want at least %d", answers, want)
	}
	for _, topic := range topics {
		if fmt.Sprint(got[topic]) != fmt.Sprint(published[topic]) {
			t.Errorf("%s: got %d messages %v\nwant %d %v", topic, len(got[topic]), got[topic], len(published[topic]), published[topic])
		}
	}
}

// TestPollBodyLimit: a poll body over 64 KiB is answered 413
// PAYLOAD_TOO_LARGE, with or without a Content-Length, while the largest
// valid body (20 topics of 255 characters, each with a since) is served.
func TestPollBodyLimit(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	// Valid JSON padded with whitespace past 64 KiB: the old 1 MiB limit
	// served it.
	over := []byte(`{"topics":["padded"],` + strings.Repeat(" ", 64<<10) + `"timeout":1}`)
	for _, c := range []struct {
		name string
		body io.Reader
	}{
		{"content-length", bytes.NewReader(over)},
		{"chunked", io.MultiReader(bytes.NewReader(over))},
	} {
		status, raw := postPoll(t, r.URL, c.body)
		var e struct{ Error string }
		_ = json.Unmarshal(raw, &e)
		if status != http.StatusRequestEntityTooLarge || e.Error != "PAYLOAD_TOO_LARGE" {
			t.Errorf("%s: a %d-byte poll body: %d %.200s, want 413 PAYLOAD_TOO_LARGE", c.name, len(over), status, raw)
		}
	}

	var topics []string
	since := map[string]string{}
	for i := range 20 {
		topic := fmt.Sprintf("%02d", i) + strings.Repeat("t", 253)
		topics = append(topics, topic)
		since[topic] = "1795744358685-12345"
	}
	largest, _ := json.MarshalIndent(map[string]any{"topics": topics, "since": since, "timeout": 1}, "", "  ")
	if status, raw := postPoll(t, r.URL, bytes.NewReader(largest)); status != http.StatusOK {
		t.Errorf("the largest valid poll body (%d bytes): %d %.200s, want 200", len(largest), status, raw)
	}
}
