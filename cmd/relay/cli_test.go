package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/app"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// cliRun is one in-process run of a client subcommand.
type cliRun struct {
	stdout, stderr *syncBuffer
	exit           chan int
	cancel         context.CancelFunc
}

func noEnv(string) (string, bool) { return "", false }

// startCLI runs cmd (e.g. subscribeCmd) with args in the background.
func startCLI(t *testing.T, cmd func(context.Context, []string, cliIO) int, stdin io.Reader, args ...string) *cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	r := &cliRun{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exit: make(chan int, 1), cancel: cancel}
	go func() {
		r.exit <- cmd(ctx, args, cliIO{stdin: stdin, stdout: r.stdout, stderr: r.stderr, env: noEnv})
	}()
	t.Cleanup(func() {
		cancel()
		<-r.exit
	})
	return r
}

// wait returns the exit status, failing the test after 30 s.
func (r *cliRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.exit:
		r.exit <- code // for the cleanup
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("command did not finish; stderr:\n%s", r.stderr.String())
		return -1
	}
}

// runCLI runs cmd to completion.
func runCLI(t *testing.T, cmd func(context.Context, []string, cliIO) int, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	r := startCLI(t, cmd, stdin, args...)
	code := r.wait(t)
	return code, r.stdout.String(), r.stderr.String()
}

// printed decodes the JSON lines a subscribe printed; each must be a
// stored message and nothing else.
func printed(t *testing.T, out string) []storedMessage {
	t.Helper()
	var msgs []storedMessage
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &keys); err != nil {
			t.Fatalf("output line is not JSON: %q", line)
		}
		for _, k := range []string{"message_id", "topic", "payload", "timestamp", "metadata"} {
			if _, ok := keys[k]; !ok || len(keys) != 5 {
				t.Fatalf("output line is not a stored message: %q", line)
			}
		}
		var m storedMessage
		_ = json.Unmarshal([]byte(line), &m)
		msgs = append(msgs, m)
	}
	return msgs
}

func countLines(s string) int { return strings.Count(s, "\n") }

// publisher publishes {"n":i} to topic until stopped (at most max messages),
// recording the ids in order.
type publisher struct {
	mu   sync.Mutex
	ids  []string
	err  error
	stop chan struct{}
	done chan struct{}
}

func startPublisher(url, topic string, maxN int) *publisher {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; i < maxN; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			body := fmt.Sprintf(`{"topic":%q,"payload":{"n":%d}}`, topic, i)
			resp, err := http.Post(url+"/api/v1/messages", "application/json", strings.NewReader(body))
			if err != nil {
				p.fail(err)
				return
			}
			var out struct {
				MessageID string `json:"message_id"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				p.fail(fmt.Errorf("publish %d: status %d", i, resp.StatusCode))
				return
			}
			p.mu.Lock()
			p.ids = append(p.ids, out.MessageID)
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *publisher) fail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

func (p *publisher) finish(t *testing.T) []string {
	t.Helper()
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		t.Fatalf("publisher: %v", p.err)
	}
	return append([]string(nil), p.ids...)
}

// TestCLISubscribeCursorFileExactlyOnce (acceptance 4): `relay subscribe
// --cursor-file` is stopped mid-stream while a publisher keeps publishing,
// then restarted; the two runs together print every message published after
// the first run started exactly once, in order, and none from before it
// (--from last).
func TestCLISubscribeCursorFileExactlyOnce(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	const topic = "jobs.cursor"
	for i := 0; i < 5; i++ {
		r.MustPublish(topic, map[string]any{"old": i})
	}
	cursor := filepath.Join(t.TempDir(), "cursor.json")
	args := []string{"--url", r.URL, "--cursor-file", cursor, "--from", "last", topic}

	run1 := startCLI(t, subscribeCmd, nil, args...)
	relaytest.Eventually(t, 10*time.Second, "the cursor file with the start point", func() bool {
		_, err := os.Stat(cursor)
		return err == nil
	})
	pub := startPublisher(r.URL, topic, 20000)
	relaytest.Eventually(t, 20*time.Second, "run 1 printing 100 messages", func() bool { return countLines(run1.stdout.String()) >= 100 })
	run1.cancel()
	if code := run1.wait(t); code != 0 {
		t.Fatalf("run 1 exit %d: %s", code, run1.stderr.String())
	}
	stoppedAt := pub.count()
	relaytest.Eventually(t, 20*time.Second, "100 publishes while no subscriber runs", func() bool { return pub.count() >= stoppedAt+100 })

	run2 := startCLI(t, subscribeCmd, nil, args...)
	relaytest.Eventually(t, 20*time.Second, "run 2 printing 100 messages", func() bool { return countLines(run2.stdout.String()) >= 100 })
	ids := pub.finish(t)
	last := ids[len(ids)-1]
	relaytest.Eventually(t, 20*time.Second, "run 2 printing the last published message", func() bool {
		return strings.Contains(run2.stdout.String(), `"message_id":"`+last+`"`)
	})
	run2.cancel()
	if code := run2.wait(t); code != 0 {
		t.Fatalf("run 2 exit %d: %s", code, run2.stderr.String())
	}

	out1, out2 := printed(t, run1.stdout.String()), printed(t, run2.stdout.String())
	got := make([]string, 0, len(out1)+len(out2))
	for _, m := range append(out1, out2...) {
		if m.Topic != topic || !bytes.HasPrefix(m.Payload, []byte(`{"n":`)) {
			t.Fatalf("unexpected message %+v (a message from before the first run?)", m)
		}
		got = append(got, m.MessageID)
	}
	if len(got) != len(ids) {
		t.Errorf("printed %d messages (%d + %d), published %d", len(got), len(out1), len(out2), len(ids))
	}
	for i := range min(len(got), len(ids)) {
		if got[i] != ids[i] {
			t.Fatalf("message %d: printed %s, published %s (run 1 printed %d)", i, got[i], ids[i], len(out1))
		}
	}
	data, _ := os.ReadFile(cursor)
	if !strings.Contains(string(data), `"`+topic+`":"`+last+`"`) {
		t.Errorf("cursor file %s does not name the last message %s", data, last)
	}
	t.Logf("run 1 printed %d, run 2 printed %d; %d published while stopped", len(out1), len(out2), pub.count()-stoppedAt)
}

// cutProxy forwards TCP to target and can cut every connection at once.
type cutProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	accept atomic.Int64
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.accept.Add(1)
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestCLISubscribeReconnects: the connection is cut twice mid-stream; the
// subscriber reconnects by itself and prints every message once, in order.
func TestCLISubscribeReconnects(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	proxy := startCutProxy(t, strings.TrimPrefix(r.URL, "http://"))
	const topic = "reconnect"
	sub := startCLI(t, subscribeCmd, nil, "--url", "http://"+proxy.ln.Addr().String(), "--from", "earliest", "--max-backoff", "200ms", topic)
	pub := startPublisher(r.URL, topic, 20000)
	for cut := 1; cut <= 2; cut++ {
		want := 100 * cut
		relaytest.Eventually(t, 20*time.Second, "printing before the cut", func() bool { return countLines(sub.stdout.String()) >= want })
		proxy.cut()
		relaytest.Eventually(t, 20*time.Second, "a reconnect", func() bool { return proxy.accept.Load() > int64(cut) })
	}
	relaytest.Eventually(t, 20*time.Second, "printing after the cuts", func() bool { return countLines(sub.stdout.String()) >= 400 })
	ids := pub.finish(t)
	last := ids[len(ids)-1]
	relaytest.Eventually(t, 20*time.Second, "the last message", func() bool {
		return strings.Contains(sub.stdout.String(), `"message_id":"`+last+`"`)
	})
	sub.cancel()
	if code := sub.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, sub.stderr.String())
	}
	got := printed(t, sub.stdout.String())
	if len(got) != len(ids) {
		t.Fatalf("printed %d, published %d; stderr:\n%s", len(got), len(ids), sub.stderr.String())
	}
	for i := range ids {
		if got[i].MessageID != ids[i] {
			t.Fatalf("message %d: printed %s, published %s", i, got[i].MessageID, ids[i])
		}
	}
	if !strings.Contains(sub.stderr.String(), "reconnecting") {
		t.Errorf("no reconnect notice on stderr: %q", sub.stderr.String())
	}
}

// TestCLIPublishStdinThousandLines (acceptance 4): 1,000 JSON lines on
// stdin are stored as 1,000 messages, in order, with the printed ids.
func TestCLIPublishStdinThousandLines(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	var in strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&in, "{\"line\": %d, \"text\": \"hello %d\"}\n", i, i)
		if i == 500 {
			in.WriteString("\n") // blank lines are skipped
		}
	}
	code, out, errOut := runCLI(t, publishCmd, strings.NewReader(in.String()), "--url", r.URL, "--meta", "source=cli", "jobs.bulk")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	ids := strings.Fields(out)
	if len(ids) != 1000 {
		t.Fatalf("printed %d ids", len(ids))
	}
	status, body := getJSON(t, r.URL+"/api/v1/topics/jobs.bulk/messages?limit=1000")
	if status != 200 {
		t.Fatalf("history: %d", status)
	}
	var hist struct {
		Messages []storedMessage `json:"messages"`
	}
	_ = json.Unmarshal(body, &hist)
	if len(hist.Messages) != 1000 {
		t.Fatalf("history holds %d messages, want 1000", len(hist.Messages))
	}
	for i, m := range hist.Messages {
		if m.MessageID != ids[i] || string(m.Payload) != fmt.Sprintf(`{"line":%d,"text":"hello %d"}`, i, i) || string(m.Metadata) != `{"source":"cli"}` {
			t.Fatalf("message %d: %+v, printed id %s", i, m, ids[i])
		}
	}
}

func getJSON(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestCLIPublishOne(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	code, out, errOut := runCLI(t, publishCmd, nil, "jobs.one", `{"a": 1}`, "--url", r.URL, "--ttl", "60")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	if _, err := messages.ParseID(id); err != nil {
		t.Fatalf("printed %q", out)
	}
	_, body := getJSON(t, r.URL+"/api/v1/topics/jobs.one/messages")
	if !strings.Contains(string(body), `"message_id":"`+id+`","topic":"jobs.one","payload":{"a":1}`) {
		t.Fatalf("history: %s", body)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"jobs.one", `[1]`}, "payload must be a JSON object"},
		{[]string{"bad/topic", `{}`}, "[A-Za-z0-9._-]"},
		{[]string{}, "want TOPIC"},
		{[]string{"t", "{}", "--meta", "novalue"}, "KEY=VALUE"},
	} {
		code, _, errOut := runCLI(t, publishCmd, nil, append(c.args, "--url", r.URL)...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}

// TestCLIPublishRefusals: a line that is not a JSON object stops the run
// with exit 2 naming the line; a message the relay refuses (too large)
// exits 1 naming the line and the relay's code; the ids of stored messages
// are still printed.
func TestCLIPublishRefusals(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{Gateway: gateway.Config{MaxMessageSize: 200}})
	code, out, errOut := runCLI(t, publishCmd, strings.NewReader("{\"a\":1}\nnot json\n{\"a\":2}\n"), "--url", r.URL, "t1")
	if code != 2 || !strings.Contains(errOut, "stdin line 2") || out != "" {
		t.Fatalf("bad line: exit %d, out %q, stderr %q", code, out, errOut)
	}
	big := `{"x":"` + strings.Repeat("y", 300) + `"}`
	code, out, errOut = runCLI(t, publishCmd, strings.NewReader("{\"a\":1}\n"+big+"\n{\"a\":3}\n"), "--url", r.URL, "t2")
	if code != 1 || !strings.Contains(errOut, "stdin line 2 refused: payload too large") || len(strings.Fields(out)) != 2 {
		t.Fatalf("refused line: exit %d, out %q, stderr %q", code, out, errOut)
	}
}

// TestCLIPublishRetriesWithSameKey: a batch that fails with 503 or a cut
// connection is sent again with the same Idempotency-Key; each batch has its
// own key; a bulk item rejected as SERVICE_UNAVAILABLE is sent again alone.
func TestCLIPublishRetriesWithSameKey(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	var calls int
	srv := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body messages.BulkRequest
		_ = json.NewDecoder(req.Body).Decode(&body)
		mu.Lock()
		calls++
		n := calls
		keys = append(keys, req.Header.Get("Idempotency-Key"))
		mu.Unlock()
		switch n {
		case 1: // a 503 for the first batch
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"SERVICE_UNAVAILABLE","message":"retry later","request_id":"r1"}`))
			return
		case 2: // then the connection dies before an answer
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
		resp := messages.BulkResponse{}
		for i := range body.Messages {
			res := messages.BulkResult{Topic: "t", Status: "accepted", MessageID: fmt.Sprintf("%d-%d", n, i)}
			if n == 3 && i == 1 { // one item refused as unavailable
				res = messages.BulkResult{Topic: "t", Status: "rejected", Error: "SERVICE_UNAVAILABLE"}
			}
			resp.Results = append(resp.Results, res)
		}
		w.WriteHeader(http.StatusMultiStatus)
		_ = json.NewEncoder(w).Encode(resp)
	}))
	in := "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n{\"i\":3}\n"
	code, out, errOut := runCLI(t, publishCmd, strings.NewReader(in), "--url", srv, "--batch", "3", "t")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := strings.Fields(out); strings.Join(got, " ") != "3-0 4-0 3-2 5-0" {
		t.Fatalf("ids %v (stderr %s)", got, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 5 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] {
		t.Fatalf("keys %q: want the first batch's three tries under one key", keys)
	}
	if keys[3] != keys[0]+".r1" || keys[4] == keys[0] || keys[4] == "" || strings.HasPrefix(keys[4], keys[0]) {
		t.Fatalf("keys %q: want the item retry under its own key and the next batch under a new one", keys)
	}
}

// newTestServer serves h on 127.0.0.1 and returns its URL.
func newTestServer(t *testing.T, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestCLISubscribeWaitsForRelay: started before the relay is up, subscribe
// keeps trying, then prints what is published once it is.
func TestCLISubscribeWaitsForRelay(t *testing.T) {
	addr := freeAddr(t)
	sub := startCLI(t, subscribeCmd, nil, "--url", "http://"+addr, "--max-backoff", "100ms", "late")
	relaytest.Eventually(t, 10*time.Second, "a retry notice", func() bool { return strings.Contains(sub.stderr.String(), "retrying") })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	relay := app.Start(app.Options{Store: persistence.NewMemoryStore(persistence.Limits{}), Logger: relaytest.Logger()}, ln)
	t.Cleanup(func() {
		relaytest.HTTPClient.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = relay.Shutdown(ctx)
	})
	url := "http://" + addr
	relaytest.Eventually(t, 10*time.Second, "the subscription", func() bool {
		// Publish until the subscriber has one: it subscribes "after the
		// newest message" whenever it gets through.
		resp, err := http.Post(url+"/api/v1/messages", "application/json", strings.NewReader(`{"topic":"late","payload":{"k":1}}`))
		if err == nil {
			resp.Body.Close()
		}
		return countLines(sub.stdout.String()) >= 1
	})
	sub.cancel()
	if code := sub.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, sub.stderr.String())
	}
}

// TestCLISendsToken: --token (or RELAY_TOKEN) goes out as a bearer token
// on HTTP and on the WebSocket upgrade; a 401 ends the command with exit 1.
func TestCLISendsToken(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	srv := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"UNAUTHORIZED","message":"bad token","request_id":"x"}`))
	}))
	code, _, errOut := runCLI(t, publishCmd, nil, "--url", srv, "--token", "tok-1", "t", "{}")
	if code != 1 || !strings.Contains(errOut, "401 UNAUTHORIZED: bad token") {
		t.Fatalf("publish: exit %d %q", code, errOut)
	}
	var out, errBuf syncBuffer
	code = subscribeCmd(t.Context(), []string{"--url", srv, "--from", "earliest", "t"}, cliIO{stdout: &out, stderr: &errBuf,
		env: func(k string) (string, bool) { return "tok-2", k == "RELAY_TOKEN" }})
	if code != 1 || !strings.Contains(errBuf.String(), "refused with 401") {
		t.Fatalf("subscribe: exit %d %q", code, errBuf.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["/api/v1/messages"] != "Bearer tok-1" || seen["/ws"] != "Bearer tok-2" {
		t.Fatalf("authorization headers seen: %v", seen)
	}
}
