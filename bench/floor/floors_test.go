package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/messages"
)

// One test body over both Valkey-backed floors, on a real Valkey-compatible
// server and real sockets: what `relay bench` relies on when it measures
// them. Every publish is answered 201 with the id Valkey gave it, and a
// subscriber gets every message of its topic once, in stream order, with
// that id and its payload; a subscriber of another topic gets none of them.
func TestValkeyFloorsStoreAndDeliver(t *testing.T) {
	srv := valkeytest.Start(t)
	for _, kind := range []string{"valkey", "actor"} {
		t.Run(kind, func(t *testing.T) {
			vk, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true, AlwaysPipelining: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(vk.Close)
			var publish, subscribe http.HandlerFunc
			switch kind {
			case "valkey":
				f := &valkeyFloor{vk: vk, subs: map[string][]*floorSub{}}
				subscribeFloor(vk, f.deliver)
				publish, subscribe = f.publish, f.subscribe
			case "actor":
				f := newActorFloor(vk)
				subscribeFloor(vk, f.notice)
				publish, subscribe = f.publish, f.subscribe
			}
			ts := httptest.NewServer(floorRoutes(publish, subscribe))
			t.Cleanup(ts.Close)

			topic, other := "floor-test-"+kind, "floor-other-"+kind
			sub := dialFloor(t, ts.URL, topic)
			quiet := dialFloor(t, ts.URL, other)

			const publishers, each = 4, 10
			var mu sync.Mutex
			answered := map[string]int{} // id -> seq
			var wg sync.WaitGroup
			for p := range publishers {
				wg.Go(func() {
					for i := range each {
						seq := p*each + i
						id, err := publishFloor(ts.URL, topic, seq)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						answered[id] = seq
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			if len(answered) != publishers*each {
				t.Fatalf("%d distinct ids answered for %d publishes", len(answered), publishers*each)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var last messages.ID
			for n := range publishers * each {
				_, b, err := sub.Read(ctx)
				if err != nil {
					t.Fatalf("after %d of %d messages: %v", n, publishers*each, err)
				}
				var m struct {
					Type, Topic string
					ID          string `json:"message_id"`
					Payload     struct{ Seq int }
				}
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatalf("frame %q: %v", b, err)
				}
				seq, ok := answered[m.ID]
				if m.Type != "message" || m.Topic != topic || !ok || m.Payload.Seq != seq {
					t.Fatalf("frame %s: want a message on %q with an answered id and its payload", b, topic)
				}
				delete(answered, m.ID) // a second copy of it fails the check above
				id, err := messages.ParseID(m.ID)
				if err != nil {
					t.Fatalf("message id %q is not a stream id: %v", m.ID, err)
				}
				if n > 0 && !last.Less(id) {
					t.Fatalf("id %s after %s: not in stream order", m.ID, last)
				}
				last = id
			}
			qctx, qcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer qcancel()
			if _, b, err := quiet.Read(qctx); err == nil {
				t.Fatalf("the subscriber of %q got %s", other, b)
			}
		})
	}
}

// dialFloor subscribes to topic on the floor at base and waits for the
// answer.
func dialFloor(t *testing.T, base, topic string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","topics":["`+topic+`"]}`)); err != nil {
		t.Fatal(err)
	}
	_, b, err := c.Read(ctx)
	if err != nil || !bytes.Contains(b, []byte(`"type":"subscribed"`)) {
		t.Fatalf("subscribe to %q: %s, %v", topic, b, err)
	}
	return c
}

// publishFloor publishes {"seq":seq} to topic and returns the id answered.
func publishFloor(base, topic string, seq int) (string, error) {
	body := fmt.Sprintf(`{"topic":%q,"payload":{"seq":%d}}`, topic, seq)
	resp, err := http.Post(base+"/api/v1/messages", "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var a struct {
		ID    string `json:"message_id"`
		Topic string
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusCreated || a.Topic != topic {
		return "", fmt.Errorf("publish %d: status %d, %+v, %v", seq, resp.StatusCode, a, err)
	}
	return a.ID, nil
}
