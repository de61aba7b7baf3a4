package gateway_test

import (
	"bufio"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
)

// TestRequestIDEchoedOverTheWire: a client's X-Request-ID comes back on the
// answer whatever the case of the header's name on the wire (the relay
// reads net/http's canonical key); one over 128 bytes, or none, is
// replaced by a relay-made id. Raw HTTP/1.1 over a real socket, so the
// header's spelling is what the test wrote.
func TestRequestIDEchoedOverTheWire(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	publish := func(header string) string {
		t.Helper()
		body := `{"topic":"reqid","payload":{"n":1}}`
		req := "POST /api/v1/messages HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n" +
			header + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("publish with %q: status %d", header, resp.StatusCode)
		}
		return resp.Header.Get("X-Request-ID")
	}
	made := regexp.MustCompile(`^[0-9a-f]{16}$`)
	long := strings.Repeat("a", 129)
	for _, c := range []struct {
		header, want string // want "": a relay-made id
	}{
		{"X-Request-ID: client-1\r\n", "client-1"},
		{"x-request-id: client-2\r\n", "client-2"},
		{"X-REQUEST-ID: client-3\r\n", "client-3"},
		{"X-Request-Id: " + long[:128] + "\r\n", long[:128]},
		{"X-Request-ID: " + long + "\r\n", ""},
		{"", ""},
	} {
		got := publish(c.header)
		if c.want != "" && got != c.want || c.want == "" && !made.MatchString(got) {
			t.Errorf("sent %q: answer's X-Request-ID %q, want %q (\"\": 16 hex digits)", c.header, got, c.want)
		}
	}
}
