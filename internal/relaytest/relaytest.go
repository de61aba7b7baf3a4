// Package relaytest starts the real relay wiring (internal/app) on
// 127.0.0.1:0 for end-to-end tests and gives them small HTTP and WebSocket
// clients. Every relay it starts is shut down in the test's cleanup.
package relaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/app"
	"github.com/pulsar-relay/relay/metrics"
	"github.com/pulsar-relay/relay/persistence"
)

// Options configure a test relay; the zero value is the default relay on a
// fresh memory store.
type Options struct {
	Store   persistence.Store
	Actors  actors.Config
	Gateway gateway.Config
	Logger  *slog.Logger      // default: discard, or debug text on stderr with RELAY_TEST_LOG=1
	Metrics *metrics.Registry // default: none (no /metrics)
}

// Relay is a relay under test.
type Relay struct {
	t     testing.TB
	URL   string // http://127.0.0.1:port
	WSURL string // ws://127.0.0.1:port/ws
	Store persistence.Store
	App   *app.Relay
	once  bool
}

// Logger returns the logger tests use by default.
func Logger() *slog.Logger {
	if os.Getenv("RELAY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Start serves a relay on 127.0.0.1:0.
func Start(t testing.TB, opts Options) *Relay {
	t.Helper()
	if opts.Store == nil {
		opts.Store = persistence.NewMemoryStore(persistence.Limits{})
	}
	if opts.Logger == nil {
		opts.Logger = Logger()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := app.Start(app.Options{Store: opts.Store, Actors: opts.Actors, Gateway: opts.Gateway, Logger: opts.Logger, Metrics: opts.Metrics}, ln)
	r := &Relay{t: t, URL: "http://" + ln.Addr().String(), WSURL: "ws://" + ln.Addr().String() + "/ws", Store: opts.Store, App: a}
	t.Cleanup(r.Close)
	return r
}

// Close shuts the relay down gracefully (once; later calls do nothing).
func (r *Relay) Close() {
	if r.once {
		return
	}
	r.once = true
	// Close the client's idle connections first: the transport may have
	// dialed one it never used, and http.Server.Shutdown waits 5 s for a
	// connection that never sent a request.
	HTTPClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.App.Shutdown(ctx); err != nil {
		r.t.Errorf("shutdown: %v", err)
	}
	HTTPClient.CloseIdleConnections()
}

// HTTPClient is shared by the helpers; tests close its idle connections
// before leak checks.
var HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}

// Publish posts one message and returns the status and decoded body.
func (r *Relay) Publish(topic string, payload any) (int, map[string]any) {
	r.t.Helper()
	body, _ := json.Marshal(map[string]any{"topic": topic, "payload": payload})
	return r.Post("/api/v1/messages", "application/json", body)
}

// Post posts body with contentType (none when empty) and decodes the answer.
func (r *Relay) Post(path, contentType string, body []byte) (int, map[string]any) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.URL+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := HTTPClient.Do(req)
	if err != nil {
		r.t.Errorf("POST %s: %v", path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// MustPublish publishes and fails the test unless it got 201; it returns
// the message id.
func (r *Relay) MustPublish(topic string, payload any) string {
	r.t.Helper()
	status, body := r.Publish(topic, payload)
	if status != http.StatusCreated {
		r.t.Fatalf("publish to %s: status %d body %v", topic, status, body)
	}
	return body["message_id"].(string)
}

// Client is a WebSocket test client.
type Client struct {
	t    testing.TB
	Conn *websocket.Conn
}

// Dial opens a WebSocket to the relay; it is closed in the test's cleanup.
func (r *Relay) Dial(ctx context.Context) *Client {
	r.t.Helper()
	c, _, err := websocket.Dial(ctx, r.WSURL, nil)
	if err != nil {
		r.t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(-1)
	r.t.Cleanup(func() { c.CloseNow() })
	return &Client{t: r.t, Conn: c}
}

// Send writes v as a JSON text frame.
func (c *Client) Send(ctx context.Context, v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("ws write: %v", err)
	}
}

// Frame is any server frame.
type Frame struct {
	Type      string         `json:"type"`
	MessageID string         `json:"message_id"`
	Topic     string         `json:"topic"`
	Topics    []string       `json:"topics"`
	Truncated []string       `json:"truncated"`
	SessionID string         `json:"session_id"`
	Payload   map[string]any `json:"payload"`
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Timestamp string         `json:"timestamp"`
}

// Read reads one frame.
func (c *Client) Read(ctx context.Context) (Frame, error) {
	_, data, err := c.Conn.Read(ctx)
	if err != nil {
		return Frame{}, err
	}
	var f Frame
	if err := json.Unmarshal(data, &f); err != nil {
		return Frame{}, fmt.Errorf("bad frame %q: %w", data, err)
	}
	return f, nil
}

// MustRead reads one frame or fails the test.
func (c *Client) MustRead(ctx context.Context) Frame {
	c.t.Helper()
	f, err := c.Read(ctx)
	if err != nil {
		c.t.Fatalf("ws read: %v", err)
	}
	return f
}

// Subscribe sends a subscribe frame and waits for "subscribed".
func (c *Client) Subscribe(ctx context.Context, sub map[string]any) Frame {
	c.t.Helper()
	sub["type"] = "subscribe"
	c.Send(ctx, sub)
	f := c.MustRead(ctx)
	if f.Type != "subscribed" {
		c.t.Fatalf("want subscribed, got %+v", f)
	}
	return f
}

// Eventually polls fn until it returns true or d passes.
func Eventually(t testing.TB, d time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// CloseStatus is the WebSocket close code in err, or -1.
func CloseStatus(err error) int { return int(websocket.CloseStatus(err)) }
