package gateway_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pulsar-relay/relay/internal/heaptest"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// TestPublishKeepsThePayloadNotTheBody: a large payload in a much larger
// body (whitespace padding; in a bulk request, its other items) is what the
// store and the hot ring keep, not the body (nor the item): they charge a message for its
// payload, so the heap a message holds must be about its payload, not the
// 128 KiB body it came in.
func TestPublishKeepsThePayloadNotTheBody(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	h := r.App.Gateway.Handler()
	payload := `{"pad":"` + strings.Repeat("x", 8<<10) + `"}`
	padding := strings.Repeat(" ", 128<<10)
	post := func(path, body string, want int) {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body.Bytes())
		}
	}
	for _, c := range []struct {
		name, path, body string
		status           int
	}{
		{"publish", "/api/v1/messages", `{"topic":"retain","payload":` + payload + padding + `}`, http.StatusCreated},
		{"bulk", "/api/v1/messages/bulk", `{"messages":[{"topic":"retain-bulk","payload":` + payload + `}` + padding + `]}`, http.StatusMultiStatus},
		{"bulk item", "/api/v1/messages/bulk", `{"messages":[{"topic":"retain-item","payload":` + payload + padding + `}]}`, http.StatusMultiStatus},
	} {
		per := heaptest.PerOp(100, func(int) { post(c.path, c.body, c.status) })
		if per > 2*float64(len(payload)) {
			t.Errorf("%s: %.0f bytes kept per message of a %d-byte payload in a %d-byte body", c.name, per, len(payload), len(c.body))
		}
		t.Logf("%s: %.0f bytes kept per message (payload %d, body %d)", c.name, per, len(payload), len(c.body))
	}
}
