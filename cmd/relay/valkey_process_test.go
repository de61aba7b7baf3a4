package main

// Process tests of the real binary on a real Valkey-compatible server
// (issue 3, acceptance 2). The server comes from valkeytest: skipped without
// one, failed with RELAY_REQUIRE_VALKEY=1.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/messages"
)

// vkClient is the HTTP client of these tests; its idle connections are
// closed at the end of each test.
func vkClient(t *testing.T) *http.Client {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

type vkStored struct {
	MessageID string          `json:"message_id"`
	Topic     string          `json:"topic"`
	Payload   json.RawMessage `json:"payload"`
}

// vkPublish posts one message and returns the status and the message id.
func vkPublish(c *http.Client, addr, topic string, payload any) (int, string, error) {
	body, _ := json.Marshal(map[string]any{"topic": topic, "payload": payload})
	resp, err := c.Post("http://"+addr+"/api/v1/messages", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var out struct {
		MessageID string `json:"message_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.MessageID, err
}

// vkStop sends SIGTERM and wants exit status 0 within 10 s.
func vkStop(t *testing.T, p *relayProcess) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("relay exit after SIGTERM: %v; logs:\n%s", err, p.logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("relay did not exit within 10 s of SIGTERM; logs:\n%s", p.logs.String())
	}
}

// TestProcessValkeyDurableAcrossRestart (acceptance 2): publish 10,000
// messages through the binary with RELAY_VALKEY_ADDR, stop it with SIGTERM
// (exit 0), start a new one on the same Valkey: history pages (limit 1000,
// after=next_cursor) return all 10,000 in id order with their payloads, and a
// WebSocket subscriber resuming from the 5,000th id gets exactly the last
// 5,000, in order, then the next live message and nothing else.
func TestProcessValkeyDurableAcrossRestart(t *testing.T) {
	srv := valkeytest.Start(t)
	const (
		topic   = "durable"
		total   = 10_000
		workers = 32
	)
	env := []string{"RELAY_VALKEY_ADDR=" + srv.Addr()}
	p := startProcess(t, env...)
	client := vkClient(t)
	began := time.Now()

	// payloadOf: acknowledged id -> the payload it was published with.
	payloadOf := make(map[string]string, total)
	var mu sync.Mutex
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > total || failed.Load() != nil {
					return
				}
				payload := fmt.Sprintf(`{"n":%d}`, i)
				status, id, err := vkPublish(client, p.addr, topic, json.RawMessage(payload))
				if err != nil || status != http.StatusCreated || id == "" {
					failed.Store(fmt.Sprintf("publish %d: status %d id %q err %v", i, status, id, err))
					return
				}
				mu.Lock()
				payloadOf[id] = payload
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatalf("%v; logs:\n%s", f, p.logs.String())
	}
	if len(payloadOf) != total {
		t.Fatalf("%d distinct ids acknowledged, want %d", len(payloadOf), total)
	}
	acked := make([]messages.ID, 0, total)
	for s := range payloadOf {
		id, err := messages.ParseID(s)
		if err != nil {
			t.Fatalf("acknowledged id %q: %v", s, err)
		}
		acked = append(acked, id)
	}
	slices.SortFunc(acked, messages.ID.Compare)
	want := make([]string, total)
	for i, id := range acked {
		want[i] = id.String()
	}

	t.Logf("published %d in %v", total, time.Since(began))
	vkStop(t, p)
	client.CloseIdleConnections()
	p2 := startProcess(t, env...)
	began = time.Now()

	// History, page by page.
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		if page > total/1000+1 {
			t.Fatalf("history: more pages than %d messages need", total)
		}
		url := "http://" + p2.addr + "/api/v1/topics/" + topic + "/messages?limit=1000"
		if cursor != "" {
			url += "&after=" + cursor
		}
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Messages   []vkStored `json:"messages"`
			NextCursor *string    `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
		}
		for _, m := range body.Messages {
			if m.Topic != topic || payloadOf[m.MessageID] != string(m.Payload) {
				t.Fatalf("history message %s: topic %q payload %s, published %q", m.MessageID, m.Topic, m.Payload, payloadOf[m.MessageID])
			}
			got = append(got, m.MessageID)
		}
		if body.NextCursor == nil {
			break
		}
		if len(body.Messages) != 1000 {
			t.Fatalf("history page %d: %d messages with a next_cursor", page, len(body.Messages))
		}
		cursor = *body.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Fatalf("history after the restart: %d ids, want the %d acknowledged in id order (%s)", len(got), len(want), firstDiff(got, want))
	}

	t.Logf("history read in %v", time.Since(began))

	// Resume over WebSocket from the 5,000th id.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+p2.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	from := want[total/2-1]
	sub, _ := json.Marshal(map[string]any{"type": "subscribe", "topics": []string{topic}, "since": map[string]string{topic: from}})
	if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
		t.Fatal(err)
	}
	type frame struct {
		Type      string          `json:"type"`
		MessageID string          `json:"message_id"`
		Topic     string          `json:"topic"`
		Payload   json.RawMessage `json:"payload"`
		Truncated []string        `json:"truncated"`
	}
	read := func() frame {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a missing frame fails here, not at the deadline
		defer cancel()
		_, data, err := c.Read(rctx)
		if err != nil {
			t.Fatalf("ws read: %v", err)
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("frame %s: %v", data, err)
		}
		return f
	}
	if f := read(); f.Type != "subscribed" || len(f.Truncated) != 0 {
		t.Fatalf("want subscribed without truncated topics, got %+v", f)
	}
	var replay []string
	for range total / 2 {
		f := read()
		if f.Type != "message" || f.Topic != topic || payloadOf[f.MessageID] != string(f.Payload) {
			t.Fatalf("after %d replayed: frame %+v (published payload %q)", len(replay), f, payloadOf[f.MessageID])
		}
		replay = append(replay, f.MessageID)
	}
	if !slices.Equal(replay, want[total/2:]) {
		t.Fatalf("resume from the 5,000th id %s: %s", from, firstDiff(replay, want[total/2:]))
	}
	// Nothing else was replayed: the next frame is a message published now,
	// and the new relay's id continues the stream.
	status, marker, err := vkPublish(client, p2.addr, topic, map[string]any{"marker": true})
	if err != nil || status != http.StatusCreated {
		t.Fatalf("marker publish: %d %v", status, err)
	}
	if f := read(); f.MessageID != marker {
		t.Fatalf("after the replay got %+v, want the marker %s", f, marker)
	}
	if m, err := messages.ParseID(marker); err != nil || !acked[total-1].Less(m) {
		t.Fatalf("marker id %s is not after the last id before the restart %s", marker, acked[total-1])
	}
	vkStop(t, p2)
}

// TestProcessValkeyStartsWhileValkeyDown: the binary starts with Valkey
// unreachable: it serves /health (200), reports not ready (503) and answers
// publishes with 503, then connects by itself once Valkey is up.
func TestProcessValkeyStartsWhileValkeyDown(t *testing.T) {
	srv := valkeytest.Start(t)
	srv.Stop()
	p := startProcess(t, "RELAY_VALKEY_ADDR="+srv.Addr(), "RELAY_STORE_TIMEOUT=1s")
	client := vkClient(t)
	get := func(path string) int {
		resp, err := client.Get("http://" + p.addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/ready"); st != http.StatusServiceUnavailable {
		t.Fatalf("/ready with Valkey down: %d, want 503", st)
	}
	start := time.Now()
	if status, _, err := vkPublish(client, p.addr, "early", map[string]any{}); err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("publish with Valkey down: %d %v, want 503", status, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("publish with Valkey down took %v", d)
	}

	srv.Restart()
	deadline := time.Now().Add(20 * time.Second)
	for get("/ready") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("relay not ready 20 s after Valkey came up; logs:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling /ready
	}
	if status, _, err := vkPublish(client, p.addr, "early", map[string]any{}); err != nil || status != http.StatusCreated {
		t.Fatalf("publish once Valkey is up: %d %v, want 201", status, err)
	}
	vkStop(t, p)
}

// firstDiff describes where two id lists first differ.
func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at %d: got %s, want %s", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("got %d, want %d", len(got), len(want))
}

// TestProcessValkeyBadCredentialsStopStartup: a password Valkey rejects (or
// none when one is required) stops the relay at start-up with exit status 1
// and a message that says why, instead of serving without a store; the right
// password serves.
func TestProcessValkeyBadCredentialsStopStartup(t *testing.T) {
	srv := valkeytest.Start(t, valkeytest.WithPassword("s3cret"))
	bin, err := buildRelay()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, password, want string }{
		{"wrong password", "wrong", "WRONGPASS"},
		{"no password", "", "NOAUTH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve")
			cmd.Dir = t.TempDir()
			cmd.Env = append(os.Environ(), "RELAY_HTTP_ADDR="+freeAddr(t), "RELAY_LOG_FORMAT=json",
				"RELAY_VALKEY_ADDR="+srv.Addr(), "RELAY_VALKEY_PASSWORD="+tc.password)
			out, err := cmd.CombinedOutput()
			exit, ok := err.(*exec.ExitError)
			if !ok || exit.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
				t.Fatalf("got %v, output %q; want exit status 1 naming %s", err, out, tc.want)
			}
		})
	}
	p := startProcess(t, "RELAY_VALKEY_ADDR="+srv.Addr(), "RELAY_VALKEY_PASSWORD=s3cret")
	client := vkClient(t)
	if status, _, err := vkPublish(client, p.addr, "authed", map[string]any{}); err != nil || status != http.StatusCreated {
		t.Fatalf("publish with the right password: %d %v", status, err)
	}
	vkStop(t, p)
}
