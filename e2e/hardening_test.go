package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/metrics"
	"github.com/pulsar-relay/relay/persistence"
)

// Tests of issue 15 (hardening) items 4, 5, 8, 9, 10 and 12, and of the 405
// of issue 9: each asserts the refusal or the bound through the relay's
// answers and its own metrics, never through wall time.

// hardenStart starts a relay with metrics and the given gateway settings.
func hardenStart(t *testing.T, gw gateway.Config) (*relaytest.Relay, *metrics.Registry) {
	t.Helper()
	reg := metrics.New(10)
	return relaytest.Start(t, relaytest.Options{Gateway: gw, Metrics: reg}), reg
}

// hardenMetric sums the samples of the metric family name whose labels
// include want.
func hardenMetric(t *testing.T, reg *metrics.Registry, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for k, v := range want {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// hardenPage is one history page.
type hardenPage struct {
	Messages []struct {
		MessageID string          `json:"message_id"`
		Payload   json.RawMessage `json:"payload"`
	} `json:"messages"`
	NextCursor *string `json:"next_cursor"`
}

// hardenHistory fetches one history page.
func hardenHistory(t *testing.T, r *relaytest.Relay, topic, query string) (int, hardenPage) {
	t.Helper()
	var page hardenPage
	resp, err := relaytest.HTTPClient.Get(r.URL + "/api/v1/topics/" + topic + "/messages" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatalf("history of %s: body is not JSON: %v", topic, err)
	}
	return resp.StatusCode, page
}

func hardenPublish(t *testing.T, r *relaytest.Relay, body string) (int, map[string]any) {
	t.Helper()
	return r.Post("/api/v1/messages", "application/json", []byte(body))
}

// Item 8: a payload or metadata that is not UTF-8 is refused, not stored
// and never reaches a subscriber.
func TestHardeningInvalidUTF8Refused(t *testing.T) {
	r, _ := hardenStart(t, gateway.Config{})
	for name, body := range map[string]string{
		"payload":            "{\"topic\":\"utf\",\"payload\":{\"m\":\"caf\xe9\"}}",
		"payload key":        "{\"topic\":\"utf\",\"payload\":{\"\xff\":1}}",
		"metadata value":     "{\"topic\":\"utf\",\"payload\":{},\"metadata\":{\"k\":\"\xc3\x28\"}}",
		"UTF-16 surrogate":   "{\"topic\":\"utf\",\"payload\":{\"m\":\"\xed\xa0\x80\"}}",
		"truncated sequence": "{\"topic\":\"utf\",\"payload\":{\"m\":\"\xe6\x97\"}}",
	} {
		status, resp := hardenPublish(t, r, body)
		if status != http.StatusBadRequest || resp["error"] != "INVALID_REQUEST" {
			t.Errorf("%s: got %d %v, want 400 INVALID_REQUEST", name, status, resp)
		}
	}
	// Valid non-ASCII text is of course accepted, and history stays JSON.
	r.MustPublish("utf", map[string]any{"m": "café 東京 🎉"})
	status, page := hardenHistory(t, r, "utf", "")
	if status != http.StatusOK || len(page.Messages) != 1 {
		t.Fatalf("history: %d, %d messages, want the one valid message only", status, len(page.Messages))
	}
}

// Item 9: a ttl past the retention, or one that overflowed time.Duration,
// is refused; a ttl within it is stored and readable.
func TestHardeningTTLBounded(t *testing.T) {
	r, _ := hardenStart(t, gateway.Config{MaxTTL: time.Hour})
	for _, ttl := range []string{"3601", "9223372037", "9223372036854775807"} {
		status, resp := hardenPublish(t, r, `{"topic":"ttl","payload":{},"ttl":`+ttl+`}`)
		if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(resp["message"]), "ttl") {
			t.Errorf("ttl %s: got %d %v, want 400 naming ttl", ttl, status, resp)
		}
	}
	if status, resp := hardenPublish(t, r, `{"topic":"ttl","payload":{"kept":true},"ttl":3600}`); status != http.StatusCreated {
		t.Fatalf("ttl 3600: got %d %v, want 201", status, resp)
	}
	if _, page := hardenHistory(t, r, "ttl", ""); len(page.Messages) != 1 {
		t.Fatalf("the message with ttl = retention is not readable: %d messages", len(page.Messages))
	}
}

// Item 10: nesting deeper than 64 levels and number literals over 100
// characters are refused; at the limits they are stored.
func TestHardeningHostileJSONRefused(t *testing.T) {
	r, _ := hardenStart(t, gateway.Config{})
	nest := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	for name, tc := range map[string]struct {
		payload string
		status  int
	}{
		"depth 64":              {nest(64), http.StatusCreated},
		"depth 65":              {nest(65), http.StatusBadRequest},
		"depth 9000":            {nest(9000), http.StatusBadRequest},
		"arrays 65 deep":        {`{"a":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`, http.StatusBadRequest},
		"100-digit number":      {`{"n":` + strings.Repeat("7", 100) + `}`, http.StatusCreated},
		"101-digit number":      {`{"n":` + strings.Repeat("7", 101) + `}`, http.StatusBadRequest},
		"100,000-digit number":  {`{"n":` + strings.Repeat("7", 100_000) + `}`, http.StatusBadRequest},
		"long exponent":         {`{"n":1e` + strings.Repeat("0", 200) + `}`, http.StatusBadRequest},
		"digits in text are ok": {`{"s":"` + strings.Repeat("7", 10_000) + `"}`, http.StatusCreated},
	} {
		status, resp := hardenPublish(t, r, `{"topic":"json","payload":`+tc.payload+`}`)
		if status != tc.status {
			t.Errorf("%s: got %d %v, want %d", name, status, resp, tc.status)
		}
	}
}

// Item 4: a history page stops at the byte cap with a next_cursor, and the
// cursor walks the rest; the cut is counted.
func TestHardeningHistoryCappedByBytes(t *testing.T) {
	r, reg := hardenStart(t, gateway.Config{HistoryMaxBytes: 64 << 10})
	big := strings.Repeat("x", 20<<10)
	var ids []string
	for i := range 10 {
		ids = append(ids, r.MustPublish("hist", map[string]any{"i": i, "pad": big}))
	}
	var got []string
	cursor, pages := "", 0
	for {
		q := "?limit=1000"
		if cursor != "" {
			q += "&after=" + cursor
		}
		status, page := hardenHistory(t, r, "hist", q)
		if status != http.StatusOK {
			t.Fatalf("history: %d", status)
		}
		pages++
		var size int
		for _, m := range page.Messages {
			got = append(got, m.MessageID)
			size += len(m.Payload)
		}
		if size > 64<<10 {
			t.Fatalf("page of %d payload bytes, over the 64 KiB cap", size)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
		if pages > 20 {
			t.Fatal("history does not end")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("walked %v, want %v", got, ids)
	}
	if pages < 4 {
		t.Fatalf("%d pages for 200 KiB under a 64 KiB cap", pages)
	}
	if n := hardenMetric(t, reg, "relay_limit_hits_total", map[string]string{"reason": "history_bytes"}); n < 1 {
		t.Fatalf("relay_limit_hits_total{reason=history_bytes} = %v", n)
	}
	// Newest first is capped the same way.
	if _, page := hardenHistory(t, r, "hist", "?order=desc&limit=1000"); page.NextCursor == nil || len(page.Messages) == 0 || len(page.Messages) >= 10 {
		t.Fatalf("desc page: %d messages, next %v", len(page.Messages), page.NextCursor)
	}
}

// Item 4: a bulk body over RELAY_MAX_BULK_SIZE is refused with 413 before it
// is read; an item over the message size is rejected alone, echoing its
// topic (item 12).
func TestHardeningBulkCapped(t *testing.T) {
	r, _ := hardenStart(t, gateway.Config{MaxBulkSize: 64 << 10, MaxMessageSize: 16 << 10})
	item := `{"topic":"bulk","payload":{"pad":"` + strings.Repeat("x", 10<<10) + `"}}`
	items := make([]string, 7) // 70 KiB
	for i := range items {
		items[i] = item
	}
	status, resp := r.Post("/api/v1/messages/bulk", "application/json", []byte(`{"messages":[`+strings.Join(items, ",")+`]}`))
	if status != http.StatusRequestEntityTooLarge || resp["error"] != "PAYLOAD_TOO_LARGE" {
		t.Fatalf("70 KiB bulk under a 64 KiB cap: %d %v", status, resp)
	}
	bigItem := `{"topic":"too.big","payload":{"pad":"` + strings.Repeat("x", 20<<10) + `"}}`
	badUTF8 := "{\"topic\":\"bad.text\",\"payload\":{\"m\":\"\xff\"}}"
	status, resp = r.Post("/api/v1/messages/bulk", "application/json", []byte(`{"messages":[`+item+`,`+bigItem+`,`+badUTF8+`]}`))
	if status != http.StatusMultiStatus {
		t.Fatalf("bulk: %d %v", status, resp)
	}
	results := resp["results"].([]any)
	for i, want := range []struct{ topic, status string }{{"bulk", "accepted"}, {"too.big", "rejected"}, {"bad.text", "rejected"}} {
		res := results[i].(map[string]any)
		if res["topic"] != want.topic || res["status"] != want.status {
			t.Errorf("item %d: %v, want topic %s %s", i, res, want.topic, want.status)
		}
	}
}

// Item 4: a client that never reads its response does not hold the
// handler: the write deadline ends it, and the request is counted as ended.
func TestHardeningResponseWriteDeadline(t *testing.T) {
	r, reg := hardenStart(t, gateway.Config{HTTPWriteTimeout: 300 * time.Millisecond, HistoryMaxBytes: 64 << 20})
	// Stored directly: a 1 MB publish under -race can take longer than
	// this test's short write deadline.
	payload := json.RawMessage(`{"pad":"` + strings.Repeat("x", 1000<<10) + `"}`)
	batch := make([]messages.Message, 12)
	for i := range batch {
		batch[i] = messages.Message{Topic: "slow.reader", Payload: payload, Timestamp: time.Now()}
	}
	if n, err := r.Store.Append(context.Background(), "slow.reader", batch); n != len(batch) || err != nil {
		t.Fatalf("append: %d %v", n, err)
	}
	// A small receive buffer so the ~12 MB answer cannot sit in the kernel.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/topics/slow.reader/messages?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
	route := map[string]string{"route": "/api/v1/topics/{topic}/messages"}
	relaytest.Eventually(t, 10*time.Second, "the history handler to end without the client reading", func() bool {
		return hardenMetric(t, reg, "relay_http_requests_total", route) >= 1
	})
}

// Item 5: a body trickled slower than RELAY_HTTP_READ_TIMEOUT is cut: the
// client gets an answer and the connection is closed.
func TestHardeningSlowBodyCut(t *testing.T) {
	r, _ := hardenStart(t, gateway.Config{HTTPReadTimeout: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	// A safety net only: the relay must answer long before.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a trickled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "INVALID_REQUEST") {
		t.Fatalf("trickled body: %d %s, want 400", resp.StatusCode, body)
	}
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection still open after a timed-out body: %v", err)
	}
}

// Item 5: over RELAY_MAX_HTTP_CONNECTIONS a new connection is refused at
// once with 503; WebSockets do not count; a freed slot serves again.
func TestHardeningHTTPConnectionCap(t *testing.T) {
	r, reg := hardenStart(t, gateway.Config{MaxHTTPConnections: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// WebSockets are upgraded out of the count.
	for range 3 {
		c := r.Dial(ctx)
		c.Subscribe(ctx, map[string]any{"topics": []string{"cap"}})
	}
	addr := strings.TrimPrefix(r.URL, "http://")
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	relaytest.Eventually(t, 10*time.Second, "3 HTTP connections held", func() bool {
		return hardenMetric(t, reg, "relay_http_connections", nil) == 3
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("over the cap: %v, want a 503", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"SERVICE_UNAVAILABLE"`) {
		t.Fatalf("over the cap: %d %s", resp.StatusCode, body)
	}
	if n := hardenMetric(t, reg, "relay_http_connections_refused_total", nil); n != 1 {
		t.Fatalf("relay_http_connections_refused_total = %v", n)
	}
	held[0].Close()
	relaytest.Eventually(t, 10*time.Second, "a freed slot", func() bool {
		return hardenMetric(t, reg, "relay_http_connections", nil) == 2
	})
	relaytest.HTTPClient.CloseIdleConnections()
	resp, err = relaytest.HTTPClient.Get(r.URL + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/health after a slot was freed: %v %v", resp, err)
	}
	resp.Body.Close()
}

// Item 5: one client IP address holds at most
// RELAY_MAX_HTTP_CONNECTIONS_PER_CLIENT of them: another client still gets
// in.
func TestHardeningHTTPConnectionCapPerClient(t *testing.T) {
	r, reg := hardenStart(t, gateway.Config{MaxHTTPConnections: 10, MaxHTTPConnectionsPerClient: 2})
	addr := strings.TrimPrefix(r.URL, "http://")
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	relaytest.Eventually(t, 10*time.Second, "2 connections held", func() bool {
		return hardenMetric(t, reg, "relay_http_connections", nil) == 2
	})
	get := func(from string) (*http.Response, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
		return c.Get(r.URL + "/health")
	}
	resp, err := get("127.0.0.1")
	if err != nil {
		t.Fatalf("third connection from the same client: %v, want a 503", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection from the same client: %d, want 503", resp.StatusCode)
	}
	resp, err = get("127.0.0.2")
	if err != nil {
		t.Fatalf("another client: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another client: %d, want 200", resp.StatusCode)
	}
	if n := hardenMetric(t, reg, "relay_http_connections_refused_total", nil); n != 1 {
		t.Fatalf("relay_http_connections_refused_total = %v", n)
	}
}

// Item 5: request bodies in flight share one budget: over it a publish is
// refused with 503 at once.
func TestHardeningBodyBudget(t *testing.T) {
	r, reg := hardenStart(t, gateway.Config{MaxMessageSize: 64 << 10, MaxBulkSize: 64 << 10, MaxBodyBytesInFlight: 100 << 10})
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Holds 60 KiB of the 100 KiB budget while it trickles.
	fmt.Fprintf(conn, "POST /api/v1/messages/bulk HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", 60<<10)
	relaytest.Eventually(t, 10*time.Second, "the trickled body's reservation", func() bool {
		return hardenMetric(t, reg, "relay_http_body_bytes_in_flight", nil) == 60<<10
	})
	body := `{"topic":"budget","payload":{"pad":"` + strings.Repeat("x", 50<<10) + `"}}`
	status, resp := r.Post("/api/v1/messages", "application/json", []byte(body))
	if status != http.StatusServiceUnavailable || resp["error"] != "SERVICE_UNAVAILABLE" {
		t.Fatalf("over the body budget: %d %v", status, resp)
	}
	if n := hardenMetric(t, reg, "relay_limit_hits_total", map[string]string{"reason": "body_budget"}); n != 1 {
		t.Fatalf("relay_limit_hits_total{reason=body_budget} = %v", n)
	}
	r.MustPublish("budget", map[string]any{"small": true}) // within the budget
}

// Item 12 and the 405 of issue 9: the smaller refusals use the SPEC's
// error body, and error texts do not echo the client's input at length.
func TestHardeningSmallerRefusals(t *testing.T) {
	r, _ := hardenStart(t, gateway.Config{MaxConnections: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	do := func(method, path string, hdr map[string]string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, r.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := relaytest.HTTPClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp, body
	}
	t.Run("405 with Allow", func(t *testing.T) {
		for _, tc := range []struct{ method, path, allow string }{
			{http.MethodPut, "/api/v1/messages", "POST"},
			{http.MethodGet, "/api/v1/messages/bulk", "POST"},
			{http.MethodDelete, "/health", "GET, HEAD"},
			{http.MethodPost, "/api/v1/topics/t/messages", "GET"},
			{http.MethodPost, "/ws", "GET"},
			{"BREW", "/ready", "GET, HEAD"},
		} {
			resp, body := do(tc.method, tc.path, nil)
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow ||
				body["error"] != "METHOD_NOT_ALLOWED" || body["request_id"] == "" {
				t.Errorf("%s %s: %d Allow %q %v, want 405 Allow %q METHOD_NOT_ALLOWED", tc.method, tc.path,
					resp.StatusCode, resp.Header.Get("Allow"), body, tc.allow)
			}
		}
		if resp, body := do("BREW", "/nowhere", nil); resp.StatusCode != http.StatusNotFound || body["error"] != "NOT_FOUND" {
			t.Errorf("unknown method on an unknown path: %d %v", resp.StatusCode, body)
		}
	})
	t.Run("HEAD /health", func(t *testing.T) {
		if resp, _ := do(http.MethodHead, "/health", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD /health: %d", resp.StatusCode)
		}
	})
	t.Run("/ws without upgrade is a JSON 426", func(t *testing.T) {
		resp, body := do(http.MethodGet, "/ws", nil)
		if resp.StatusCode != http.StatusUpgradeRequired || body["error"] != "INVALID_REQUEST" || body["request_id"] == "" {
			t.Errorf("got %d %v", resp.StatusCode, body)
		}
	})
	t.Run("/ws from a foreign origin is a JSON 403", func(t *testing.T) {
		_, resp, err := websocket.Dial(ctx, r.WSURL, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
		if err == nil {
			t.Fatal("upgrade from a foreign origin accepted")
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusForbidden || body["error"] != "FORBIDDEN" {
			t.Errorf("got %d %v", resp.StatusCode, body)
		}
	})
	t.Run("over the WebSocket limit the upgrade is a JSON 503", func(t *testing.T) {
		c := r.Dial(ctx)
		c.Subscribe(ctx, map[string]any{"topics": []string{"x"}})
		_, resp, err := websocket.Dial(ctx, r.WSURL, nil)
		if err == nil {
			t.Fatal("second WebSocket accepted over a limit of 1")
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusServiceUnavailable || body["error"] != "SERVICE_UNAVAILABLE" {
			t.Errorf("got %d %v", resp.StatusCode, body)
		}
		// Error frames quote at most a short prefix of what was sent.
		if err := c.Conn.Write(ctx, websocket.MessageText, []byte(`{"type":"`+strings.Repeat("é", 100_000)+`"}`)); err != nil {
			t.Fatal(err)
		}
		f := c.MustRead(ctx)
		if f.Type != "error" || f.Code != "UNKNOWN_MESSAGE_TYPE" || len(f.Message) > 400 {
			t.Errorf("error frame of %d bytes: %.100s", len(f.Message), f.Message)
		}
	})
	t.Run("a refused item of a bulk echoes its topic", func(t *testing.T) {
		status, resp := r.Post("/api/v1/messages/bulk", "application/json", []byte(`{"messages":[{"topic":"named","payload":[1]}]}`))
		res := resp["results"].([]any)[0].(map[string]any)
		if status != http.StatusMultiStatus || res["topic"] != "named" || res["status"] != "rejected" {
			t.Errorf("got %d %v", status, res)
		}
	})
}

// Item 12: a store failure reaches the client as its sentinel, never with
// the store's address or dial error.
func TestHardeningStoreDetailsStayInTheLog(t *testing.T) {
	store := &hardenFailingStore{Store: persistence.NewMemoryStore(persistence.Limits{})}
	r := relaytest.Start(t, relaytest.Options{Store: store})
	for _, path := range []string{"/api/v1/topics/t/messages", "/ready"} {
		resp, err := relaytest.HTTPClient.Get(r.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(body), "10.9.8.7") || strings.Contains(string(body), "refused") {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}

type hardenFailingStore struct{ persistence.Store }

var hardenErrDial = errors.New("valkey: dial tcp 10.9.8.7:6379: connect: connection refused")

func (f *hardenFailingStore) Range(context.Context, string, messages.ID, int) (persistence.Page, error) {
	return persistence.Page{}, fmt.Errorf("range: %w: %w", messages.ErrUnavailable, hardenErrDial)
}

func (f *hardenFailingStore) Ping(context.Context) error {
	return fmt.Errorf("ping: %w: %w", messages.ErrUnavailable, hardenErrDial)
}

// Item 4 and 5: the per-request deadlines do not reach a WebSocket: the
// upgrade lifts them from the hijacked socket, so a connection outlives
// them in both directions.
func TestHardeningWebSocketOutlivesHTTPDeadlines(t *testing.T) {
	const deadline = 200 * time.Millisecond
	r, _ := hardenStart(t, gateway.Config{HTTPReadTimeout: deadline, HTTPWriteTimeout: deadline})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := r.Dial(ctx)
	c.Subscribe(ctx, map[string]any{"topics": []string{"long.lived"}})
	// Time itself is what is tested: the deadlines must have passed.
	time.Sleep(5 * deadline)
	id := r.MustPublish("long.lived", map[string]any{"n": 1})
	if f := c.MustRead(ctx); f.MessageID != id {
		t.Fatalf("after the HTTP deadlines: got %+v, want message %s", f, id)
	}
	c.Send(ctx, map[string]any{"type": "ping"})
	if f := c.MustRead(ctx); f.Type != "pong" {
		t.Fatalf("after the HTTP deadlines: got %+v, want pong", f)
	}
}
