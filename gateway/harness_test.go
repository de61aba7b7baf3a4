package gateway_test

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
	"github.com/pulsar-relay/relay/persistence"
)

// relay is the real wiring (store, actor system, topic manager, gateway,
// http.Server) on 127.0.0.1:0.
type relay struct {
	t     testing.TB
	URL   string
	WSURL string
	Mgr   *actors.TopicManager
	Store persistence.Store
	close func()
}

type relayOptions struct {
	store   persistence.Store
	actors  actors.Config
	gateway gateway.Config
}

func testLogger() *slog.Logger {
	if os.Getenv("RELAY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startRelay(t testing.TB, opts relayOptions) *relay {
	t.Helper()
	if opts.store == nil {
		opts.store = persistence.NewMemoryStore(persistence.Limits{})
	}
	log := testLogger()
	system := actors.NewActorSystem(log)
	mgr := actors.NewTopicManager(system, opts.store, opts.actors, log)
	gw := gateway.New(opts.gateway, mgr, opts.store, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gw.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	r := &relay{t: t, URL: "http://" + ln.Addr().String(), WSURL: "ws://" + ln.Addr().String() + "/ws", Mgr: mgr, Store: opts.store}
	closed := false
	r.close = func() {
		if closed {
			return
		}
		closed = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Drain()
		_ = srv.Shutdown(ctx)
		<-done
		gw.Close(ctx)
		mgr.Shutdown(ctx)
		system.Shutdown()
		_ = opts.store.Close()
	}
	t.Cleanup(r.close)
	return r
}

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}

// publish posts one message and returns the status and decoded body.
func (r *relay) publish(topic string, payload any) (int, map[string]any) {
	r.t.Helper()
	body, _ := json.Marshal(map[string]any{"topic": topic, "payload": payload})
	return r.post("/api/v1/messages", "application/json", body)
}

func (r *relay) post(path, contentType string, body []byte) (int, map[string]any) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.URL+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		r.t.Errorf("POST %s: %v", path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// mustPublish publishes and fails the test unless it got 201; it returns
// the message id.
func (r *relay) mustPublish(topic string, payload any) string {
	r.t.Helper()
	status, body := r.publish(topic, payload)
	if status != http.StatusCreated {
		r.t.Fatalf("publish to %s: status %d body %v", topic, status, body)
	}
	return body["message_id"].(string)
}

// client is a WebSocket test client.
type client struct {
	t testing.TB
	c *websocket.Conn
}

func (r *relay) dial(ctx context.Context) *client {
	r.t.Helper()
	c, _, err := websocket.Dial(ctx, r.WSURL, nil)
	if err != nil {
		r.t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(-1)
	cl := &client{t: r.t, c: c}
	r.t.Cleanup(func() { c.CloseNow() })
	return cl
}

func (c *client) send(ctx context.Context, v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	if err := c.c.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("ws write: %v", err)
	}
}

// frame is any server frame.
type frame struct {
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

func (c *client) read(ctx context.Context) (frame, error) {
	_, data, err := c.c.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		return frame{}, fmt.Errorf("bad frame %q: %w", data, err)
	}
	return f, nil
}

func (c *client) mustRead(ctx context.Context) frame {
	c.t.Helper()
	f, err := c.read(ctx)
	if err != nil {
		c.t.Fatalf("ws read: %v", err)
	}
	return f
}

// subscribe sends a subscribe frame and waits for "subscribed".
func (c *client) subscribe(ctx context.Context, sub map[string]any) frame {
	c.t.Helper()
	sub["type"] = "subscribe"
	c.send(ctx, sub)
	f := c.mustRead(ctx)
	if f.Type != "subscribed" {
		c.t.Fatalf("want subscribed, got %+v", f)
	}
	return f
}

// eventually polls fn until it returns true or d passes.
func eventually(t testing.TB, d time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closeStatus(err error) int { return int(websocket.CloseStatus(err)) }
