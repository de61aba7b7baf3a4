package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeCentrifugo implements the subset of Centrifugo v6 the driver uses:
// connect and subscribe commands (replies batched with a ping), publications
// as pushes, every third one batched with a ping in the same frame, and
// POST /api/publish guarded by an API key.
type fakeCentrifugo struct {
	key   string
	mu    sync.Mutex
	subs  map[string][]*websocket.Conn
	n     int
	pongs atomic.Int64 // {} answers received from clients
}

func newFakeCentrifugo(t *testing.T, f *fakeCentrifugo) string {
	t.Helper()
	f.subs = map[string][]*websocket.Conn{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/publish", f.publish)
	mux.HandleFunc("POST /api/batch", f.batch)
	mux.HandleFunc("GET /connection/websocket", f.serveWS)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func (f *fakeCentrifugo) publish(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-API-Key") != f.key {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var body struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		fmt.Fprint(w, `{"error":{"code":107,"message":"bad request"}}`)
		return
	}
	fmt.Fprintf(w, `{"result":{"offset":%d,"epoch":"e"}}`, f.push(r.Context(), body.Channel, body.Data))
}

// batch answers /api/batch: channels with ':' are refused as unknown
// namespaces, like Centrifugo does.
func (f *fakeCentrifugo) batch(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-API-Key") != f.key {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var body struct {
		Commands []struct {
			Publish struct {
				Channel string          `json:"channel"`
				Data    json.RawMessage `json:"data"`
			} `json:"publish"`
		} `json:"commands"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		fmt.Fprint(w, `{"error":{"code":107,"message":"bad request"}}`)
		return
	}
	var replies []string
	for _, c := range body.Commands {
		if strings.Contains(c.Publish.Channel, ":") {
			replies = append(replies, `{"error":{"code":102,"message":"unknown channel"}}`)
			continue
		}
		replies = append(replies, fmt.Sprintf(`{"publish":{"offset":%d,"epoch":"e"}}`, f.push(r.Context(), c.Publish.Channel, c.Publish.Data)))
	}
	fmt.Fprintf(w, `{"replies":[%s]}`, strings.Join(replies, ","))
}

// push delivers one publication and returns its offset.
func (f *fakeCentrifugo) push(ctx context.Context, channel string, data json.RawMessage) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	frame := fmt.Appendf(nil, `{"push":{"channel":%q,"pub":{"data":%s,"offset":%d}}}`, channel, data, f.n)
	if f.n%3 == 0 {
		frame = append(frame, "\n{}"...)
	}
	for _, c := range f.subs[channel] {
		_ = c.Write(ctx, websocket.MessageText, frame)
	}
	return f.n
}

func (f *fakeCentrifugo) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		_, data, err := c.Read(context.Background())
		if err != nil {
			return
		}
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			if string(line) == "{}" {
				f.pongs.Add(1)
				continue
			}
			var cmd struct {
				ID        uint32 `json:"id"`
				Connect   *struct{}
				Subscribe *struct {
					Channel string `json:"channel"`
				}
			}
			if json.Unmarshal(line, &cmd) != nil {
				return
			}
			switch {
			case cmd.Connect != nil:
				_ = c.Write(r.Context(), websocket.MessageText, fmt.Appendf(nil, `{"id":%d,"connect":{"client":"c","version":"fake","ping":25,"pong":true}}`, cmd.ID))
			case cmd.Subscribe != nil:
				f.mu.Lock()
				f.subs[cmd.Subscribe.Channel] = append(f.subs[cmd.Subscribe.Channel], c)
				_ = c.Write(r.Context(), websocket.MessageText, fmt.Appendf(nil, "{}\n{\"id\":%d,\"subscribe\":{}}", cmd.ID))
				f.mu.Unlock()
			default:
				_ = c.Write(r.Context(), websocket.MessageText, fmt.Appendf(nil, `{"id":%d,"error":{"code":107,"message":"bad request"}}`, cmd.ID))
			}
		}
	}
}

func TestCentrifugoDriverAgainstFake(t *testing.T) {
	f := &fakeCentrifugo{key: "k"}
	addr := newFakeCentrifugo(t, f)
	cfg := testConfig(addr)
	cfg.Target, cfg.APIKey = TargetCentrifugo, "k"
	cfg.Subscribers, cfg.Topics, cfg.Publishers, cfg.Messages = 8, 2, 2, 90
	pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
	rep := runFake(t, cfg, newCentrifugoDriver(addr, "k", pub, ws))
	if !rep.Clean || rep.Published != 90 || rep.Expected != 360 || rep.Delivered != 360 {
		t.Fatalf("report = %+v", rep)
	}
	// 8 pings with the subscribe replies, plus one per third publication per subscriber.
	// The last pongs may still be in flight when the report is made.
	deadline := time.Now().Add(5 * time.Second)
	for f.pongs.Load() < 8+4*(90/3) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := f.pongs.Load(); got < 8+4*(90/3) {
		t.Errorf("pongs = %d, want at least %d", got, 8+4*(90/3))
	}
}

func TestCentrifugoDriverWrongKey(t *testing.T) {
	f := &fakeCentrifugo{key: "k"}
	addr := newFakeCentrifugo(t, f)
	cfg := testConfig(addr)
	cfg.Target, cfg.APIKey = TargetCentrifugo, "wrong"
	cfg.Subscribers, cfg.Messages, cfg.Grace = 1, 5, 0
	pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
	rep := runFake(t, cfg, newCentrifugoDriver(addr, "wrong", pub, ws))
	if rep.Published != 0 || rep.PublishErrors != 5 || rep.Errors["publish status 401"] != 5 || rep.Clean {
		t.Fatalf("report = %+v", rep)
	}
}

func TestCentrifugoDriverBatch(t *testing.T) {
	f := &fakeCentrifugo{key: "k"}
	addr := newFakeCentrifugo(t, f)
	cfg := testConfig(addr)
	cfg.Target, cfg.APIKey = TargetCentrifugo, "k"
	cfg.Subscribers, cfg.Topics, cfg.Publishers, cfg.Messages, cfg.Bulk = 4, 2, 3, 100, 7
	pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
	rep := runFake(t, cfg, newCentrifugoDriver(addr, "k", pub, ws))
	if !rep.Clean || rep.Published != 100 || rep.Delivered != 200 || rep.Bulk != 7 {
		t.Fatalf("report = %+v", rep)
	}
	// A refused command is counted per item.
	d := newCentrifugoDriver(addr, "k", pub, ws)
	b := &batch{topics: []string{"ok-0", "bad:0"}, payloads: [][]byte{[]byte(`{}`), []byte(`{}`)}}
	if err := d.publishBatch(t.Context(), b); err != nil || !b.ok[0] || b.ok[1] {
		t.Fatalf("publishBatch = %v, ok %v; want [true false]", err, b.ok)
	}
}
