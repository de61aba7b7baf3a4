package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// TestSSEStreamAndResume: events carry stored messages and an id that
// resumes every topic of the stream; Last-Event-ID resumes with no gap and
// no duplicate.
func TestSSEStreamAndResume(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{})
	url := r.URL + "/api/v1/sse?topics=alpha,beta"
	s := openSSE(t, url)
	if s.Resp.StatusCode != http.StatusOK || !strings.HasPrefix(s.Resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("open: %d %v", s.Resp.StatusCode, s.Resp.Header)
	}
	sub := s.next(t, "subscribed", 5*time.Second)
	if !strings.HasPrefix(sub.ID, "v1;alpha=") || !strings.Contains(sub.ID, ";beta=") {
		t.Fatalf("subscribed id %q", sub.ID)
	}
	a1 := mustPublish(t, r.URL, "alpha", map[string]any{"n": 1})
	b1 := mustPublish(t, r.URL, "beta", map[string]any{"n": 2})
	ev1 := s.next(t, "message", 5*time.Second)
	ev2 := s.next(t, "message", 5*time.Second)
	if m := messageOf(t, ev1); m.MessageID != a1 || m.Topic != "alpha" || m.Payload["n"] != float64(1) {
		t.Fatalf("first event %+v", ev1)
	}
	if m := messageOf(t, ev2); m.MessageID != b1 || m.Topic != "beta" {
		t.Fatalf("second event %+v", ev2)
	}
	if !strings.Contains(ev2.ID, "alpha="+a1) || !strings.Contains(ev2.ID, "beta="+b1) {
		t.Fatalf("event id %q does not hold both positions", ev2.ID)
	}
	s.Close()

	// While disconnected: more on both topics.
	var want []string
	for i := range 3 {
		want = append(want, mustPublish(t, r.URL, "alpha", map[string]any{"i": i}))
		want = append(want, mustPublish(t, r.URL, "beta", map[string]any{"i": i}))
	}
	// Resume from the first event's id: beta's b1 comes again (the first
	// event's id predates it), then everything after, each once.
	s2 := openSSE(t, url, "Last-Event-ID", ev1.ID)
	s2.next(t, "subscribed", 5*time.Second)
	got := map[string]int{}
	var order []string
	for range 1 + len(want) {
		m := messageOf(t, s2.next(t, "message", 5*time.Second))
		got[m.Topic+"/"+m.MessageID]++
		order = append(order, m.Topic+"/"+m.MessageID)
	}
	for i, id := range append([]string{b1}, want...) {
		topic := "beta"
		if i > 0 && i%2 == 1 {
			topic = "alpha"
		}
		if id = topic + "/" + id; got[id] != 1 {
			t.Fatalf("message %s delivered %d times; got %v", id, got[id], order)
		}
	}
	if got["alpha/"+a1] != 0 {
		t.Fatalf("a1 delivered again: %v", order)
	}
	// Nothing else is pending: a fresh publish is the next event.
	next := mustPublish(t, r.URL, "alpha", map[string]any{"last": true})
	if m := messageOf(t, s2.next(t, "message", 5*time.Second)); m.MessageID != next {
		t.Fatalf("after resume: %+v, want %s", m, next)
	}

	// ?since= with a bare message id applies to every topic.
	s3 := openSSE(t, url+"&since="+want[len(want)-1])
	s3.next(t, "subscribed", 5*time.Second)
	if m := messageOf(t, s3.next(t, "message", 5*time.Second)); m.MessageID != next {
		t.Fatalf("since: %+v, want %s", m, next)
	}
}

// TestSSETruncatedKeepaliveCORS: a resume point older than what is retained
// is reported in a "truncated" event; idle streams get keepalive comments;
// origins follow RELAY_ALLOWED_ORIGINS with CORS headers.
func TestSSETruncatedKeepaliveCORS(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{
		Store:   persistence.NewMemoryStore(persistence.Limits{MaxMessages: 5}),
		Actors:  actors.Config{StoreLimits: persistence.Limits{MaxMessages: 5}},
		Gateway: gateway.Config{AllowedOrigins: []string{"app.example.com"}, Consumers: gateway.ConsumersConfig{SSEKeepalive: 50 * time.Millisecond}},
	})
	first := mustPublish(t, r.URL, "short", map[string]any{"i": 0})
	for i := 1; i < 12; i++ {
		mustPublish(t, r.URL, "short", map[string]any{"i": i})
	}
	s := openSSE(t, r.URL+"/api/v1/sse?topics=short&since="+first, "Origin", "http://app.example.com")
	if got := s.Resp.Header.Get("Access-Control-Allow-Origin"); got != "http://app.example.com" {
		t.Fatalf("Access-Control-Allow-Origin %q", got)
	}
	s.next(t, "subscribed", 5*time.Second)
	tr := s.next(t, "truncated", 5*time.Second)
	var body struct{ Topics []string }
	if err := json.Unmarshal([]byte(tr.Data), &body); err != nil || len(body.Topics) != 1 || body.Topics[0] != "short" {
		t.Fatalf("truncated event %+v", tr)
	}
	if c := s.next(t, "", 5*time.Second); c.Comment != "keepalive" {
		t.Fatalf("comment %q", c.Comment)
	}

	status, raw, _ := call(t, context.Background(), http.MethodGet, r.URL+"/api/v1/sse?topics=short", nil, "Origin", "http://evil.example.org")
	if status != http.StatusForbidden || !strings.Contains(string(raw), "FORBIDDEN") {
		t.Fatalf("disallowed origin: %d %s", status, raw)
	}
	for _, q := range []string{"", "?topics=", "?topics=bad%20topic", "?topics=a&since=nope"} {
		if status, raw, _ := call(t, context.Background(), http.MethodGet, r.URL+"/api/v1/sse"+q, nil); status != http.StatusBadRequest {
			t.Errorf("GET /api/v1/sse%s: %d %s", q, status, raw)
		}
	}
	if g := gauge(t, r.URL, `relay_connections{transport="sse"}`); g != 1 {
		t.Errorf("sse connections gauge %v, want 1", g)
	}
	s.Close()
	relaytest.Eventually(t, 5*time.Second, "sse gauge back to 0", func() bool {
		return gauge(t, r.URL, `relay_connections{transport="sse"}`) == 0
	})
}

// TestSSEEpochChangeIsTruncated: an id from another incarnation of a
// topic's stream (a memory store's history is gone after a restart) resumes
// from the oldest retained message and reports the topic truncated.
func TestSSEEpochChangeIsTruncated(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{})
	id := mustPublish(t, r.URL, "epochs", map[string]any{"i": 0})
	// An id minted by an earlier stream incarnation: before this one's
	// first message, and its epoch tag cannot match.
	first, err := messages.ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	earlier := messages.ID{Ms: first.Ms - 1}
	s := openSSE(t, r.URL+"/api/v1/sse?topics=epochs", "Last-Event-ID", "v1;epochs="+earlier.String()+".deadbeef")
	sub := s.next(t, "subscribed", 5*time.Second)
	page, err := r.Store.Range(context.Background(), "epochs", messages.ID{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if page.Epoch == "" {
		t.Fatal("the store reports no stream epoch")
	}
	tr := s.next(t, "truncated", 5*time.Second)
	if !strings.Contains(tr.Data, "epochs") || !strings.Contains(sub.ID, "epochs=0-0.") {
		t.Fatalf("truncated %+v, subscribed id %q", tr, sub.ID)
	}
	if m := messageOf(t, s.next(t, "message", 5*time.Second)); m.MessageID != id {
		t.Fatalf("replay from the oldest: %+v", m)
	}
}

// TestSSESlowReaderDisconnected: an SSE reader that stops reading follows
// the slow-consumer policy (disconnect): its stream is ended, counted, and
// its connection freed, while a reading stream on the same topic gets
// everything.
func TestSSESlowReaderDisconnected(t *testing.T) {
	r := startConsumerRelay(t, relaytest.Options{
		Actors:  actors.Config{ConnectionQueueSize: 16, SlowConsumerPolicy: actors.PolicyDisconnect},
		Gateway: gateway.Config{WriteTimeout: time.Second},
	})
	url := r.URL + "/api/v1/sse?topics=slow"
	fast := openSSE(t, url)
	fast.next(t, "subscribed", 5*time.Second)

	// The slow reader: a raw connection with a small receive buffer that
	// reads nothing after the headers. The buffer is set before connect:
	// set after, the kernel drops what overflows it and the sender backs
	// off in retransmission timeouts of seconds.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/sse?topics=slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	relaytest.Eventually(t, 5*time.Second, "two SSE streams", func() bool {
		return gauge(t, r.URL, `relay_connections{transport="sse"}`) == 2
	})

	pad := strings.Repeat("x", 16000)
	const n = 400      // 6.4 MB: more than the socket buffers hold (tcp_wmem allows 4 MB)
	for i := range n { // in step with the fast reader, which never lags
		mustPublish(t, r.URL, "slow", map[string]any{"i": i, "pad": pad})
		if m := messageOf(t, fast.next(t, "message", 10*time.Second)); m.Payload["i"] != float64(i) {
			t.Fatalf("fast reader: message %d is %v", i, m.Payload["i"])
		}
	}
	relaytest.Eventually(t, 15*time.Second, "the slow stream to be ended", func() bool {
		return gauge(t, r.URL, `relay_connections{transport="sse"}`) == 1
	})
	if d := gauge(t, r.URL, "relay_slow_consumer_disconnects_total"); d < 1 {
		t.Fatalf("relay_slow_consumer_disconnects_total = %v", d)
	}
	// The slow client, reading at last, finds the stream ended.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("the slow stream did not end cleanly after %d bytes: %v", n, err)
	}
}
