package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
)

// FuzzPublishHandler drives POST /api/v1/messages in process with arbitrary
// bodies: every answer is one of the SPEC's statuses with a JSON body, and
// every message answered 201 is stored within the limits (UTF-8, nesting,
// number length, ttl), readable, and encodes to a UTF-8 JSON frame.
func FuzzPublishHandler(f *testing.F) {
	for _, s := range []string{
		`{"topic":"t","payload":{"a":1}}`,
		`{"topic":"t","payload":{"a":[1,{"b":"c"}]},"ttl":60,"metadata":{"k":"v"}}`,
		"{\"topic\":\"t\",\"payload\":{\"s\":\"\xff\"}}",
		`{"topic":"t","payload":` + strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70) + `}`,
		`{"topic":"t","payload":{"n":` + strings.Repeat("9", 120) + `}}`,
		`{"topic":"t","payload":{},"ttl":9223372037}`,
		`{"topic":"t","payload":{},"ttl":3601}`,
		`{"topic":"t","payload":{"x":"` + strings.Repeat("y", 3000) + `"}}`,
	} {
		f.Add([]byte(s))
	}
	r := relaytest.Start(f, relaytest.Options{Gateway: gateway.Config{MaxMessageSize: 2048, MaxTTL: time.Hour}})
	h := r.App.Gateway.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/messages", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("status %d with a body that is not JSON: %q", rec.Code, rec.Body.Bytes())
		}
		switch rec.Code {
		case http.StatusCreated:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
			if out["error"] == "" || out["request_id"] == "" || len(rec.Body.Bytes()) > 2048 {
				t.Fatalf("error body %q", rec.Body.Bytes())
			}
			return
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if !utf8.Valid(body) {
			t.Fatalf("201 for a body that is not UTF-8: %q", body)
		}
		topic, _ := out["topic"].(string)
		id, err := messages.ParseID(out["message_id"].(string))
		if err != nil {
			t.Fatal(err)
		}
		before := messages.ID{Ms: id.Ms, Seq: id.Seq - 1}
		if id.Seq == 0 {
			before = messages.ID{Ms: id.Ms - 1, Seq: ^uint64(0)}
		}
		page, err := r.Store.Range(context.Background(), topic, before, 1)
		if err != nil {
			t.Fatal(err)
		}
		var m *messages.Message
		for i := range page.Messages {
			if page.Messages[i].ID == id {
				m = &page.Messages[i]
			}
		}
		if m == nil {
			t.Fatalf("201 for %s but it is not stored", id)
		}
		if err := messages.CheckJSON(m.Payload, messages.MaxJSONDepth); err != nil {
			t.Fatalf("stored payload over the limits: %v", err)
		}
		if !m.ExpiresAt.IsZero() && (!m.ExpiresAt.After(m.Timestamp) || m.ExpiresAt.Sub(m.Timestamp) > time.Hour) {
			t.Fatalf("stored ttl %v", m.ExpiresAt.Sub(m.Timestamp))
		}
		frame := m.AppendFrame(nil)
		if !utf8.Valid(frame) || !json.Valid(frame) {
			t.Fatalf("frame %q", frame)
		}
	})
}
