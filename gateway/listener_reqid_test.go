package gateway_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// TestListenerRefusalEchoesRequestID: over RELAY_MAX_HTTP_CONNECTIONS the
// canned 503 carries the client's X-Request-ID, in its header and its body,
// under the rule the request-id middleware echoes by (any case of the
// name, blanks trimmed, 1 to 128 bytes); otherwise, or with none, a fresh
// id. A value that would break the header (a CR inside it) is not echoed.
// Raw HTTP/1.1 over real sockets, one connection held so that each other
// is refused.
func TestListenerRefusalEchoesRequestID(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{Gateway: gateway.Config{MaxHTTPConnections: 1}})
	addr := strings.TrimPrefix(r.URL, "http://")

	// The held connection: served once and kept alive, so it is certainly
	// counted before any other is dialed.
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_ = held.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(held, "GET /health HTTP/1.1\r\nHost: relay\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(held), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("held connection: status %d", resp.StatusCode)
	}

	refused := func(header string) (string, string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: relay\r\n"+header+"\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("sent %q: %v, want the canned 503", header, err)
		}
		defer resp.Body.Close()
		var body struct {
			Error     string `json:"error"`
			RequestID string `json:"request_id"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("sent %q: body: %v", header, err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || body.Error != "SERVICE_UNAVAILABLE" {
			t.Fatalf("sent %q: %d %q, want 503 SERVICE_UNAVAILABLE", header, resp.StatusCode, body.Error)
		}
		if len(resp.Header.Values("X-Request-ID")) != 1 {
			t.Fatalf("sent %q: X-Request-ID headers %q, want one", header, resp.Header.Values("X-Request-ID"))
		}
		return resp.Header.Get("X-Request-ID"), body.RequestID
	}

	fresh := regexp.MustCompile(`^[0-9a-f]{16}$`)
	long := strings.Repeat("a", 129)
	for _, c := range []struct {
		header, want string // want "": a fresh id
	}{
		{"X-Request-ID: my-trace-123\r\n", "my-trace-123"},
		{"x-request-id:  \ttrace-lower \r\n", "trace-lower"},
		{"Accept: */*\r\nX-REQUEST-ID: has \"quote\" and \\ \r\nX-Request-ID: second\r\n", `has "quote" and \`},
		{"X-Request-ID: " + long[:128] + "\r\n", long[:128]},
		{"X-Request-ID: " + long + "\r\n", ""},
		{"X-Request-ID: \r\n", ""},
		{"X-Request-ID: a\rInjected: yes\r\n", ""},
		{"", ""},
	} {
		hdr, body := refused(c.header)
		if hdr != body {
			t.Errorf("sent %q: header id %q, body id %q, want the same", c.header, hdr, body)
		}
		if c.want != "" && hdr != c.want || c.want == "" && !fresh.MatchString(hdr) {
			t.Errorf("sent %q: X-Request-ID %q, want %q (\"\": a fresh id, 16 hex digits)", c.header, hdr, c.want)
		}
	}
}
