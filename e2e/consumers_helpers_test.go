package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/metrics"
)

// client is the HTTP client of these tests; long-polls wait up to 60 s.
var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 90 * time.Second}

// startConsumerRelay starts a relay with metrics on a memory store (unless opts
// says otherwise).
func startConsumerRelay(t *testing.T, opts relaytest.Options) *relaytest.Relay {
	t.Helper()
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(100)
	}
	r := relaytest.Start(t, opts)
	t.Cleanup(client.CloseIdleConnections) // before the relay's own cleanup (LIFO)
	return r
}

// call sends a request with a JSON body (none when body is nil) and extra
// headers, and returns the status, the raw answer and its headers.
func call(t testing.TB, ctx context.Context, method, url string, body any, headers ...string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			b, _ = json.Marshal(body)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, nil
		}
		t.Errorf("%s %s: %v", method, url, err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// stored is a stored message as history, poll and SSE return it.
type stored struct {
	MessageID string            `json:"message_id"`
	Topic     string            `json:"topic"`
	Payload   map[string]any    `json:"payload"`
	Timestamp string            `json:"timestamp"`
	Metadata  map[string]string `json:"metadata"`
}

type pollAnswer struct {
	Messages []stored `json:"messages"`
	HasMore  bool     `json:"has_more"`
}

// poll posts a long-poll to path and decodes a 200 answer.
func poll(t testing.TB, ctx context.Context, url string, body map[string]any) (int, pollAnswer) {
	t.Helper()
	status, raw, _ := call(t, ctx, http.MethodPost, url, body)
	var a pollAnswer
	if status == http.StatusOK {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Errorf("poll answer %q: %v", raw, err)
		}
	}
	return status, a
}

// publish posts one message (with extra headers) and returns the status and
// the decoded answer.
func publish(t testing.TB, url, topic string, payload any, headers ...string) (int, map[string]any) {
	t.Helper()
	status, raw, _ := call(t, context.Background(), http.MethodPost, url+"/api/v1/messages",
		map[string]any{"topic": topic, "payload": payload}, headers...)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return status, out
}

func mustPublish(t testing.TB, url, topic string, payload any) string {
	t.Helper()
	status, out := publish(t, url, topic, payload)
	if status != http.StatusCreated {
		t.Fatalf("publish to %s: %d %v", topic, status, out)
	}
	return out["message_id"].(string)
}

// gauge reads one sample of /metrics, e.g. `relay_connections{transport="poll"}`.
func gauge(t testing.TB, url, series string) float64 {
	t.Helper()
	status, raw, _ := call(t, context.Background(), http.MethodGet, url+"/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// sseEvent is one Server-Sent Event (or a comment, with Comment set).
type sseEvent struct {
	ID, Event, Data, Comment string
}

// sseStream is an open SSE response read on its own goroutine.
type sseStream struct {
	Resp   *http.Response
	Events chan sseEvent // closed when the stream ends
	cancel context.CancelFunc
}

// openSSE opens GET url (with extra headers) and starts reading events.
func openSSE(t testing.TB, url string, headers ...string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	s := &sseStream{Resp: resp, Events: make(chan sseEvent, 1024), cancel: cancel}
	t.Cleanup(s.Close)
	go func() {
		defer close(s.Events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					s.Events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				s.Events <- sseEvent{Comment: strings.TrimSpace(line[1:])}
			default:
				k, v, _ := strings.Cut(line, ":")
				v = strings.TrimPrefix(v, " ")
				switch k {
				case "id":
					ev.ID = v
				case "event":
					ev.Event = v
				case "data":
					if ev.Data != "" {
						ev.Data += "\n"
					}
					ev.Data += v
				}
			}
		}
	}()
	return s
}

// Close ends the stream from the client side.
func (s *sseStream) Close() { s.cancel() }

// next returns the next event of kind (skipping others), or fails.
func (s *sseStream) next(t testing.TB, kind string, d time.Duration) sseEvent {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-s.Events:
			if !ok {
				t.Fatalf("stream ended waiting for %q", kind)
			}
			if ev.Event == kind || (kind == "" && ev.Comment != "") {
				return ev
			}
			if ev.Event == "relay-error" {
				t.Fatalf("relay-error event: %s", ev.Data)
			}
		case <-timer.C:
			t.Fatalf("no %q event within %v", kind, d)
		}
	}
}

// messageOf decodes an event's stored message.
func messageOf(t testing.TB, ev sseEvent) stored {
	t.Helper()
	var m stored
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		t.Fatalf("event data %q: %v", ev.Data, err)
	}
	return m
}
