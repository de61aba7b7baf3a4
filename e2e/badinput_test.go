package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/messages"
)

// TestBadInput: every malformed request gets the SPEC status and error body;
// every malformed frame gets an error frame and the connection lives on.
func TestBadInput(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{Gateway: gateway.Config{MaxMessageSize: 4096}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	httpCases := []struct {
		name, contentType, body string
		status                  int
		code                    string
	}{
		{"invalid JSON", "application/json", `{"topic":`, 400, "INVALID_REQUEST"},
		{"body not an object", "application/json", `[1,2]`, 400, "INVALID_REQUEST"},
		{"payload not an object", "application/json", `{"topic":"t","payload":[1]}`, 400, "INVALID_REQUEST"},
		{"payload a string", "application/json", `{"topic":"t","payload":"hi"}`, 400, "INVALID_REQUEST"},
		{"payload missing", "application/json", `{"topic":"t"}`, 400, "INVALID_REQUEST"},
		{"payload null", "application/json", `{"topic":"t","payload":null}`, 400, "INVALID_REQUEST"},
		{"missing topic", "application/json", `{"payload":{}}`, 400, "INVALID_REQUEST"},
		{"bad topic characters", "application/json", `{"topic":"a/b","payload":{}}`, 400, "INVALID_REQUEST"},
		{"topic with space", "application/json", `{"topic":"a b","payload":{}}`, 400, "INVALID_REQUEST"},
		{"256-character topic", "application/json", `{"topic":"` + strings.Repeat("a", 256) + `","payload":{}}`, 400, "INVALID_REQUEST"},
		{"ttl zero", "application/json", `{"topic":"t","payload":{},"ttl":0}`, 400, "INVALID_REQUEST"},
		{"ttl negative", "application/json", `{"topic":"t","payload":{},"ttl":-5}`, 400, "INVALID_REQUEST"},
		{"ttl fractional", "application/json", `{"topic":"t","payload":{},"ttl":1.5}`, 400, "INVALID_REQUEST"},
		{"metadata non-string value", "application/json", `{"topic":"t","payload":{},"metadata":{"a":1}}`, 400, "INVALID_REQUEST"},
		{"metadata not an object", "application/json", `{"topic":"t","payload":{},"metadata":"x"}`, 400, "INVALID_REQUEST"},
		{"a number past a 64-bit float", "application/json", `{"topic":"t","payload":{"n":1e400}}`, 400, "INVALID_REQUEST"},
		{"body over the limit", "application/json", `{"topic":"t","payload":{"x":"` + strings.Repeat("x", 5000) + `"}}`, 413, "PAYLOAD_TOO_LARGE"},
		{"wrong content type", "text/plain", `{"topic":"t","payload":{}}`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"form content type", "application/x-www-form-urlencoded", `topic=t`, 415, "UNSUPPORTED_MEDIA_TYPE"},
	}
	for _, tc := range httpCases {
		t.Run("http/"+tc.name, func(t *testing.T) {
			status, body := r.Post("/api/v1/messages", tc.contentType, []byte(tc.body))
			if status != tc.status || body["error"] != tc.code || body["message"] == "" || body["request_id"] == "" {
				t.Fatalf("got %d %v, want %d with code %s, a message and a request_id", status, body, tc.status, tc.code)
			}
		})
	}
	for _, tc := range []struct{ name, path string }{
		{"history bad topic", "/api/v1/topics/a%20b/messages"},
		{"history bad limit", "/api/v1/topics/t/messages?limit=0"},
		{"history limit over max", "/api/v1/topics/t/messages?limit=1001"},
		{"history bad cursor", "/api/v1/topics/t/messages?after=nope"},
		{"history bad order", "/api/v1/topics/t/messages?order=up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := relaytest.HTTPClient.Get(r.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Request-ID") == "" {
				t.Fatalf("got %d, want 400 with X-Request-ID", resp.StatusCode)
			}
		})
	}

	c := r.Dial(ctx)
	wsCases := []struct{ name, frame, code string }{
		{"not JSON", `hello`, "INVALID_MESSAGE"},
		{"JSON array", `[1]`, "INVALID_MESSAGE"},
		{"no type", `{"topics":["a"]}`, "INVALID_MESSAGE"},
		{"unknown type", `{"type":"dance"}`, "UNKNOWN_MESSAGE_TYPE"},
		{"subscribe without topics", `{"type":"subscribe"}`, "SUBSCRIPTION_ERROR"},
		{"subscribe empty topics", `{"type":"subscribe","topics":[]}`, "SUBSCRIPTION_ERROR"},
		{"subscribe bad topic", `{"type":"subscribe","topics":["a/b"]}`, "SUBSCRIPTION_ERROR"},
		{"subscribe bad offset", `{"type":"subscribe","topics":["a"],"offset":"yesterday"}`, "SUBSCRIPTION_ERROR"},
		{"subscribe bad since", `{"type":"subscribe","topics":["a"],"since":{"a":"x-y"}}`, "SUBSCRIPTION_ERROR"},
		{"unsubscribe without topics", `{"type":"unsubscribe"}`, "SUBSCRIPTION_ERROR"},
	}
	for _, tc := range wsCases {
		t.Run("ws/"+tc.name, func(t *testing.T) {
			if err := c.Conn.Write(ctx, websocket.MessageText, []byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			f := c.MustRead(ctx)
			if f.Type != "error" || f.Code != tc.code || f.Message == "" {
				t.Fatalf("got %+v, want an error frame with code %s", f, tc.code)
			}
		})
	}
	// The connection lives on after all that.
	c.Send(ctx, map[string]any{"type": "ping"})
	if f := c.MustRead(ctx); f.Type != "pong" {
		t.Fatalf("connection did not survive bad frames: %+v", f)
	}

	t.Run("ws/frame over the limit closes 1009", func(t *testing.T) {
		big := r.Dial(ctx)
		_ = big.Conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","x":"`+strings.Repeat("x", 5000)+`"}`))
		_, err := big.Read(ctx)
		if st := websocket.CloseStatus(err); st != websocket.StatusMessageTooBig {
			t.Fatalf("got %v (status %d), want close 1009", err, st)
		}
	})
	t.Run("unknown route is a JSON 404", func(t *testing.T) {
		status, body := r.Post("/api/v1/nothing", "application/json", []byte(`{}`))
		if status != 404 || body["error"] != "NOT_FOUND" {
			t.Fatalf("got %d %v", status, body)
		}
	})
}

// TestLoneSurrogateStoredAsReplacement: a payload string escaping a lone
// UTF-16 surrogate (what Python's surrogateescape makes of undecodable
// bytes) is stored with U+FFFD in its place, which every reader reads;
// strict readers refuse the lone escape itself.
func TestLoneSurrogateStoredAsReplacement(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	status, body := r.Post("/api/v1/messages", "application/json", []byte(`{"topic":"sur","payload":{"s":"a\udc80b","pair":"\ud83c\udf89"}}`))
	if status != http.StatusCreated {
		t.Fatalf("publish: %d %v", status, body)
	}
	page, err := r.Store.Range(context.Background(), "sur", messages.ID{}, 10)
	if err != nil || len(page.Messages) != 1 {
		t.Fatalf("stored: %d messages, %v", len(page.Messages), err)
	}
	if got, want := string(page.Messages[0].Payload), `{"s":"a\ufffdb","pair":"\ud83c\udf89"}`; got != want {
		t.Fatalf("stored payload %s, want %s", got, want)
	}
}
