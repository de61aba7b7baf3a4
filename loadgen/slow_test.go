package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// slowEndServer accepts relay subscriptions, sends frames message frames on
// topic, and then ends the connection as end says: "4008" (close frame with
// 4008), "eof" (TCP closed without a close frame) or "open" (stays open until
// the test ends).
//
// ended receives once per connection when the server has written all its
// frames; it ends the connection as end says right after.
func slowEndServer(t *testing.T, topic string, frames int, end string) (addr string, ended <-chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	endedc := make(chan struct{}, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := c.Read(ctx); err != nil {
			return
		}
		_ = c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"subscribed","topics":[%q]}`, topic))
		for i := range frames {
			p := appendPayload(nil, payload{Seq: uint64(i), Pub: 0}, 100)
			if c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"message","topic":%q,"payload":%s}`, topic, p)) != nil {
				return
			}
		}
		endedc <- struct{}{}
		switch end {
		case "4008":
			_ = c.Close(4008, "slow consumer")
		case "eof":
			_ = c.CloseNow()
		case "open":
			select {
			case <-done:
			case <-ctx.Done():
			}
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return strings.TrimPrefix(srv.URL, "http://"), endedc
}

func TestSlowSubscriberOutcomes(t *testing.T) {
	for _, tc := range []struct{ end, want string }{
		{"4008", "closed 4008"},
		{"eof", slowClosedNoFrame},
		{"open", slowOpen},
	} {
		t.Run(tc.end, func(t *testing.T) {
			addr, ended := slowEndServer(t, "bench-1-0", 30, tc.end)
			s := connectSlow(context.Background(), addr, 2, "bench-1-0", "")
			if s.connected() != 2 {
				t.Fatalf("connected %d of 2: %v", s.connected(), s.errs.first)
			}
			// Let the server write its frames, unread, before probing.
			for range 2 {
				select {
				case <-ended:
				case <-time.After(10 * time.Second):
					t.Fatal("the server did not finish sending")
				}
			}
			// The probe ends with the connection (or after slowIdle, 1s, for
			// one left open), far inside its bound.
			const bound = 60 * time.Second
			start := time.Now()
			s.probe(bound)
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("probe took %s; bound %s, idle %s", took, bound, slowIdle)
			}
			if s.outcomes[tc.want] != 2 || len(s.outcomes) != 1 || s.frames != 60 {
				t.Fatalf("outcomes %v, frames %d; want %q: 2 and 60 frames", s.outcomes, s.frames, tc.want)
			}
		})
	}
}

func TestSlowSubscriberProbeIsBounded(t *testing.T) {
	// An idle far longer than the bound, so that a probe that ignored the
	// bound (and waited for the idle) is told apart from a slow machine.
	old := slowIdle
	slowIdle = 30 * time.Second
	t.Cleanup(func() { slowIdle = old })
	addr, _ := slowEndServer(t, "bench-1-0", 0, "open")
	s := connectSlow(context.Background(), addr, 1, "bench-1-0", "")
	if s.connected() != 1 {
		t.Fatalf("connected %d of 1: %v", s.connected(), s.errs.first)
	}
	start := time.Now()
	s.probe(100 * time.Millisecond)
	// Well under both the idle and the 10s the server keeps the connection.
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("probe bounded by 100ms took %s (idle %s)", took, slowIdle)
	}
	if s.outcomes[slowOpen] != 1 {
		t.Fatalf("outcomes %v", s.outcomes)
	}
}

func TestSlowSubscriberConnectFails(t *testing.T) {
	s := connectSlow(context.Background(), "127.0.0.1:1", 3, "t", "")
	if s.connected() != 0 || s.outcomes[slowConnectFailed] != 3 {
		t.Fatalf("connected %d, outcomes %v", s.connected(), s.outcomes)
	}
	s.probe(time.Second)
	s.closeAll()
}

// End to end against the fake relay: the slow subscriber is on topic 0, gets
// everything there (the fake never closes it), and is in no figure.
func TestRunWithSlowSubscribers(t *testing.T) {
	f := &fakeRelay{}
	addr := newFakeRelay(t, f)
	cfg := testConfig(addr)
	cfg.Subscribers, cfg.Topics, cfg.Publishers, cfg.Messages, cfg.SlowSubs = 4, 2, 2, 40, 1
	cfg.SlowProbe = 3 * time.Second
	pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
	rep := runFake(t, cfg, newRelayDriver(addr, pub, ws))
	if f.ws.Load() != 5 {
		t.Fatalf("fake saw %d WebSockets, want 4 + 1 slow", f.ws.Load())
	}
	// 20 messages per topic, 2 fleet subscribers per topic.
	if !rep.Clean || rep.Expected != 80 || rep.Delivered != 80 {
		t.Fatalf("fleet figures include the slow subscriber or are wrong: %+v", rep)
	}
	if rep.SlowSubscribers != 1 || rep.SlowConnected != 1 || rep.SlowOutcomes[slowOpen] != 1 || rep.SlowFramesRead != 20 {
		t.Fatalf("slow: asked %d, connected %d, outcomes %v, frames %d; want 1, 1, open: 1, 20",
			rep.SlowSubscribers, rep.SlowConnected, rep.SlowOutcomes, rep.SlowFramesRead)
	}
	b, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(b), `"slow_outcomes":{"open":1}`) {
		t.Fatalf("JSON: %v %s", err, b)
	}
	var table strings.Builder
	if err := rep.writeTable(&table); err != nil || !strings.Contains(table.String(), "ended: open: 1; 20 frames read") {
		t.Fatalf("table: %v\n%s", err, table.String())
	}
}

func TestSlowSubscribersFlags(t *testing.T) {
	c, err := parseFlags([]string{"--slow-subscribers", "2", "--allow-refusals"}, io.Discard, time.Now(), 1)
	if err != nil || c.SlowSubs != 2 || !c.AllowRefusals || c.SlowProbe != 10*time.Second {
		t.Fatalf("parseFlags = %+v, %v", c, err)
	}
	for _, args := range [][]string{
		{"--slow-subscribers", "1001"},
		{"--slow-subscribers", "-1"},
		{"--slow-subscribers", "1", "--target", "centrifugo", "--api-key", "k"},
		{"--slow-probe", "0s"},
	} {
		if _, err := parseFlags(args, io.Discard, time.Now(), 1); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}
