package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
)

// fakeRelay implements the tiny subset of the relay's wire contract the load
// generator uses, with optional faults to check the accounting end to end.
// Every Nth publish (counting from 1) is refused with 503 (failEvery), or
// delivered twice to every subscriber (dupEvery), or not delivered to the
// topic's first subscriber (dropEvery). With leakRefused a refused publish
// is delivered all the same (a relay that stores what it answered 503). It
// counts what it did.
type fakeRelay struct {
	failEvery, dupEvery, dropEvery int
	leakRefused                    bool

	mu    sync.Mutex // serialises publishes: delivery in publish order per topic
	subs  map[string][]*websocket.Conn
	n     int
	dups  int // extra deliveries sent
	drops int // deliveries withheld (of acknowledged messages)
	acks  int
	ws    atomic.Int64
}

func newFakeRelay(t *testing.T, f *fakeRelay) string {
	t.Helper()
	f.subs = map[string][]*websocket.Conn{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/messages", f.publish)
	mux.HandleFunc("POST /api/v1/messages/bulk", f.publishBulk)
	mux.HandleFunc("GET /ws", f.serveWS)
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func (f *fakeRelay) publish(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Topic   string          `json:"topic"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Topic == "" || len(body.Payload) == 0 {
		http.Error(w, `{"error":"INVALID_REQUEST"}`, http.StatusBadRequest)
		return
	}
	id, ok := f.accept(r.Context(), body.Topic, body.Payload)
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"SERVICE_UNAVAILABLE","message":"fake"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"message_id":%q,"topic":%q,"timestamp":"2026-01-01T00:00:00Z"}`, id, body.Topic)
}

// publishBulk answers 207 with one result per message, in order.
func (f *fakeRelay) publishBulk(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Messages []struct {
			Topic   string          `json:"topic"`
			Payload json.RawMessage `json:"payload"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Messages) == 0 || len(body.Messages) > 100 {
		http.Error(w, `{"error":"INVALID_REQUEST"}`, http.StatusBadRequest)
		return
	}
	type result struct {
		MessageID string `json:"message_id,omitempty"`
		Topic     string `json:"topic"`
		Status    string `json:"status"`
		Error     string `json:"error,omitempty"`
	}
	var res []result
	for _, m := range body.Messages {
		if id, ok := f.accept(r.Context(), m.Topic, m.Payload); ok {
			res = append(res, result{MessageID: id, Topic: m.Topic, Status: "accepted"})
		} else {
			res = append(res, result{Topic: m.Topic, Status: "rejected", Error: "SERVICE_UNAVAILABLE"})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusMultiStatus)
	_ = json.NewEncoder(w).Encode(map[string]any{"results": res, "summary": map[string]int{"total": len(res)}})
}

// accept applies the configured faults to one message and, unless it is
// refused, delivers it to the topic's subscribers in publish order.
func (f *fakeRelay) accept(ctx context.Context, topic string, payload json.RawMessage) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	id := fmt.Sprintf("1700000000000-%d", f.n)
	frame := fmt.Appendf(nil, `{"type":"message","message_id":%q,"topic":%q,"payload":%s,"timestamp":"2026-01-01T00:00:00Z","metadata":{}}`,
		id, topic, payload)
	if f.failEvery > 0 && f.n%f.failEvery == 0 {
		if f.leakRefused {
			for _, c := range f.subs[topic] {
				_ = c.Write(ctx, websocket.MessageText, frame)
			}
		}
		return "", false
	}
	for i, c := range f.subs[topic] {
		if i == 0 && f.dropEvery > 0 && f.n%f.dropEvery == 0 {
			f.drops++
			continue
		}
		_ = c.Write(ctx, websocket.MessageText, frame)
		if f.dupEvery > 0 && f.n%f.dupEvery == 0 {
			_ = c.Write(ctx, websocket.MessageText, frame)
			f.dups++
		}
	}
	f.acks++
	return id, true
}

func (f *fakeRelay) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	f.ws.Add(1)
	defer c.CloseNow()
	for {
		_, data, err := c.Read(context.Background())
		if err != nil {
			return
		}
		var sub struct {
			Type   string   `json:"type"`
			Topics []string `json:"topics"`
		}
		if json.Unmarshal(data, &sub) != nil || sub.Type != "subscribe" {
			_ = c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"error","code":"INVALID_MESSAGE","message":"fake"}`))
			continue
		}
		f.mu.Lock()
		for _, t := range sub.Topics {
			f.subs[t] = append(f.subs[t], c)
		}
		// Reply under the lock so no message can precede "subscribed".
		_ = c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"pong","timestamp":"t"}`))
		_ = c.Write(r.Context(), websocket.MessageText, fmt.Appendf(nil, `{"type":"subscribed","topics":[%q],"session_id":"s","timestamp":"t"}`, sub.Topics[0]))
		f.mu.Unlock()
	}
}

func testConfig(addr string) Config {
	c, err := parseFlags([]string{"--addr", addr, "--quiet", "--grace", "3s"}, io.Discard, timeNow(), 1)
	if err != nil {
		panic(err)
	}
	return c
}

func runFake(t *testing.T, cfg Config, d driver) *Report {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	rep, err := run(context.Background(), cfg, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestRelayDriverAgainstFake(t *testing.T) {
	f := &fakeRelay{}
	addr := newFakeRelay(t, f)
	cfg := testConfig(addr)
	cfg.Subscribers, cfg.Topics, cfg.Publishers, cfg.Messages = 20, 3, 3, 300
	pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
	rep := runFake(t, cfg, newRelayDriver(addr, pub, ws))
	// 100 messages per topic; 7, 7 and 6 subscribers.
	if !rep.Clean || rep.Connected != 20 || rep.Published != 300 || rep.Expected != 2000 || rep.Delivered != 2000 {
		t.Fatalf("report not clean or counts wrong: %+v", rep)
	}
	if rep.LatencyP50Ms <= 0 || rep.LatencyMaxMs < rep.LatencyP99Ms || rep.DeliveriesPerS <= 0 || rep.PublishesPerS <= 0 {
		t.Fatalf("rates or latencies missing: %+v", rep)
	}
}

func TestRelayDriverCountsFaults(t *testing.T) {
	f := &fakeRelay{failEvery: 10, dupEvery: 7, dropEvery: 11}
	addr := newFakeRelay(t, f)
	cfg := testConfig(addr)
	cfg.Subscribers, cfg.Topics, cfg.Publishers, cfg.Messages = 6, 2, 4, 200
	cfg.Grace = 500e6
	pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
	rep := runFake(t, cfg, newRelayDriver(addr, pub, ws))
	f.mu.Lock()
	defer f.mu.Unlock()
	// The fake refuses with 503: refused, not failed.
	if rep.Refused != 20 || rep.PublishErrors != 0 || rep.Published != 180 || rep.Errors["refused 503"] != 20 {
		t.Errorf("refused %d, publish errors %d (%v), published %d; want 20, 0 and 180", rep.Refused, rep.PublishErrors, rep.Errors, rep.Published)
	}
	if rep.Duplicated != uint64(f.dups) || f.dups == 0 {
		t.Errorf("duplicated = %d, fake sent %d", rep.Duplicated, f.dups)
	}
	if rep.Lost != uint64(f.drops) || f.drops == 0 {
		t.Errorf("lost = %d, fake withheld %d", rep.Lost, f.drops)
	}
	if rep.Clean || rep.OutOfOrder != 0 {
		t.Errorf("clean = %v, out of order = %d; want false and 0", rep.Clean, rep.OutOfOrder)
	}
}

func TestRelayDriverRateAndDurationBounds(t *testing.T) {
	f := &fakeRelay{}
	addr := newFakeRelay(t, f)
	cfg := testConfig(addr)
	cfg.Subscribers, cfg.Topics, cfg.Publishers = 2, 1, 2
	cfg.Messages, cfg.Rate, cfg.Duration = 1_000_000, 100, 300e6 // far more than 0.3 s allows
	pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
	rep := runFake(t, cfg, newRelayDriver(addr, pub, ws))
	if rep.Published < 20 || rep.Published > 40 {
		t.Fatalf("published %d in a 0.3 s window at 100/s, want about 30", rep.Published)
	}
	if rep.PublishS > 1 {
		t.Fatalf("publish phase took %.2f s, bound was 0.3 s", rep.PublishS)
	}
	if !rep.Clean || rep.Delivered != 2*rep.Published {
		t.Fatalf("report = %+v", rep)
	}
}

func TestMainAgainstFakeWithServerStats(t *testing.T) {
	f := &fakeRelay{}
	addr := newFakeRelay(t, f)
	path := t.TempDir() + "/r.json"
	var out, errOut bytes.Buffer
	// The fake runs in this process, so our own pid stands in for the server's.
	code := Main(context.Background(), []string{
		"--addr", addr, "--subscribers", "10", "--topics", "2", "--messages", "100", "--publishers", "2",
		"--hold", "50ms", "--server-pid", fmt.Sprint(osGetpid()), "--format", "json", "--json", path, "--progress", "20ms",
		"--label", "fake", "--store-pid", fmt.Sprint(osGetpid()),
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("Main = %d, stderr: %s", code, errOut.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, out.String())
	}
	if !rep.Clean || rep.Label != "fake" || rep.Delivered != 500 || rep.RSSBeforeKB <= 0 || rep.HoldS < 0.05 {
		t.Fatalf("report = %+v", rep)
	}
	// The store, here this process too, is measured over the same phase.
	if rep.StorePID != osGetpid() || rep.StoreCPUS <= 0 || rep.StoreCPUUsPerPublish <= 0 || rep.LoadgenCPUUsPerPublish <= 0 {
		t.Fatalf("store and load generator CPU: pid %d, %.3f s, %.1f µs/publish, load generator %.1f µs/publish",
			rep.StorePID, rep.StoreCPUS, rep.StoreCPUUsPerPublish, rep.LoadgenCPUUsPerPublish)
	}
	saved, err := readReport(path)
	if err != nil || saved.Delivered != rep.Delivered {
		t.Fatalf("--json file: %v, %+v", err, saved)
	}
	if !strings.Contains(errOut.String(), "bench ") {
		t.Errorf("no progress on stderr: %q", errOut.String())
	}
	var table bytes.Buffer
	if err := rep.writeTable(&table); err != nil || !strings.Contains(table.String(), "lost / dup / out-of-order") {
		t.Fatalf("table: %v\n%s", err, table.String())
	}
}

func TestMainUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"--addr", "8.8.8.8:80"}, &out, &errOut); code != exitUsage {
		t.Fatalf("non-loopback addr: code %d, want %d", code, exitUsage)
	}
	if code := Main(context.Background(), []string{"-h"}, &out, &errOut); code != exitOK {
		t.Fatalf("-h: code %d, want 0", code)
	}
	// Nothing listens on port 1 of loopback: the run fails, it does not hang.
	code := Main(context.Background(), []string{"--addr", "127.0.0.1:1", "--subscribers", "2", "--quiet", "--connect-timeout", "2s"}, &out, &errOut)
	if code != exitFail {
		t.Fatalf("unreachable server: code %d, want %d; stderr %s", code, exitFail, errOut.String())
	}
}

func TestRelayDriverBulk(t *testing.T) {
	f := &fakeRelay{failEvery: 9}
	addr := newFakeRelay(t, f)
	cfg := testConfig(addr)
	cfg.Subscribers, cfg.Topics, cfg.Publishers, cfg.Messages, cfg.Bulk = 6, 3, 2, 250, 20
	cfg.Grace = 500e6
	pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
	rep := runFake(t, cfg, newRelayDriver(addr, pub, ws))
	// 250 messages, every 9th refused: 27 rejected items.
	if rep.Published != 223 || rep.PublishErrors != 27 || rep.Errors["publish bulk item rejected"] != 27 {
		t.Fatalf("published %d, errors %d %v; want 223 and 27", rep.Published, rep.PublishErrors, rep.Errors)
	}
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.OutOfOrder != 0 || rep.Delivered != rep.Expected || rep.Expected == 0 {
		t.Fatalf("report = %+v", rep)
	}
}

// TestRefusedButDeliveredIsUnclean: with refusals allowed, a run is clean
// when the refused publishes are not delivered, and not clean when they are
// (503 means not stored: a delivery of one is unexpected).
func TestRefusedButDeliveredIsUnclean(t *testing.T) {
	for _, leak := range []bool{false, true} {
		f := &fakeRelay{failEvery: 5, leakRefused: leak}
		addr := newFakeRelay(t, f)
		cfg := testConfig(addr)
		cfg.Subscribers, cfg.Topics, cfg.Publishers, cfg.Messages = 4, 1, 2, 100
		cfg.Grace, cfg.AllowRefusals = 500e6, true
		pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
		rep := runFake(t, cfg, newRelayDriver(addr, pub, ws))
		if rep.Refused != 20 {
			t.Fatalf("leak %v: refused %d, want 20", leak, rep.Refused)
		}
		// Some of the 80 may come after the run stopped waiting (it waits
		// for what was acknowledged): any is enough to make it unclean.
		if leak && (rep.Unexpected == 0 || rep.Unexpected > 80 || rep.Clean) {
			t.Errorf("refused but delivered: unexpected %d, clean %v; want 1..80 and false", rep.Unexpected, rep.Clean)
		}
		if !leak && (rep.Unexpected != 0 || !rep.Clean) {
			t.Errorf("refused and not delivered: unexpected %d, clean %v; want 0 and true", rep.Unexpected, rep.Clean)
		}
	}
}
