package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// messageID pulls the id out of a message frame without a full decode (the
// fast readers must keep up with 20,000 messages under the race detector).
func messageID(frame []byte) string {
	const key = `"message_id":"`
	i := bytes.Index(frame, []byte(key))
	if i < 0 {
		return ""
	}
	rest := frame[i+len(key):]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

// readN reads n message frames and returns their ids.
func (w *rawWS) readN(n int) ([]string, error) {
	ids := make([]string, 0, n)
	return w.readIDs(ids, func(ids []string, _ []byte) bool { return len(ids) >= n })
}

// readIDs reads frames, appending each message's id to ids, until done says
// so after a message (given the ids so far and the frame), the connection
// closes (an error naming the close code) or a read fails.
func (w *rawWS) readIDs(ids []string, done func(ids []string, frame []byte) bool) ([]string, error) {
	if done(ids, nil) {
		return ids, nil
	}
	for {
		op, data, err := w.readFrame()
		if err != nil {
			return ids, err
		}
		if op == 8 {
			return ids, fmt.Errorf("closed with %d", closeCode(data))
		}
		if id := messageID(data); id != "" {
			ids = append(ids, id)
			if done(ids, data) {
				return ids, nil
			}
		}
	}
}

// publishFast publishes total messages of about size bytes from 8
// publishers as fast as they go; it returns the acked ids in store order.
func publishFast(t *testing.T, r *relaytest.Relay, topic string, total, size int) []string {
	t.Helper()
	pad := strings.Repeat("x", size)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(total); i = next.Add(1) {
				r.MustPublish(topic, map[string]any{"i": i, "pad": pad})
			}
		}()
	}
	wg.Wait()
	return storedAfter(t, r.Store, topic, "")
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

const heapCeiling = 200 << 20

func TestSlowConsumer(t *testing.T) {
	for _, policy := range []actors.SlowConsumerPolicy{actors.PolicyDisconnect, actors.PolicyDropOldest} {
		t.Run(string(policy), func(t *testing.T) {
			relaytest.CheckLeaks(t)
			counters := &relaytest.Counters{}
			r := relaytest.Start(t, relaytest.Options{
				Actors: actors.Config{SlowConsumerPolicy: policy, Observer: counters},
				// A peer that reads nothing at all is dropped after WriteTimeout,
				// or when it misses a pong, whatever the policy; this test's slow
				// reader waits longer than those.
				Gateway: gateway.Config{WriteTimeout: 5 * time.Minute, PingInterval: 5 * time.Minute},
			})
			const topic, total = "flood", 20_000
			publishedAll := make(chan struct{})
			var lastID atomicString
			// The slow subscriber: a bare socket with a small receive buffer
			// that reads nothing while the flood runs.
			slow, err := dialRaw(r.WSURL, 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			defer slow.conn.Close()
			if err := slow.writeText([]byte(`{"type":"subscribe","topics":["flood"]}`)); err != nil {
				t.Fatal(err)
			}
			// The 19 that keep up read through bare sockets too: a full
			// WebSocket client per reader costs more CPU than the relay under
			// the race detector (99 of them took minutes on a loaded 2-core
			// machine; 19 show the same isolation).
			fast := make([]*rawWS, 19)
			for i := range fast {
				if fast[i], err = dialRaw(r.WSURL, 0); err != nil {
					t.Fatal(err)
				}
				defer fast[i].conn.Close()
				_ = fast[i].writeText([]byte(`{"type":"subscribe","topics":["flood"]}`))
				if _, p, err := fast[i].readFrame(); err != nil || !bytes.Contains(p, []byte(`"subscribed"`)) {
					t.Fatalf("subscribe: %s %v", p, err)
				}
			}
			got := make([][]string, len(fast))
			errs := make(chan error, len(fast))
			var wg sync.WaitGroup
			for i, c := range fast {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = c.conn.SetReadDeadline(time.Now().Add(4 * time.Minute))
					ids, err := c.readN(total)
					got[i] = ids
					if err != nil {
						errs <- fmt.Errorf("fast subscriber %d after %d messages: %w", i, len(ids), err)
					}
				}()
			}
			// The slow subscriber starts reading once the flood is over: it
			// gets what was in flight, then (under "disconnect") the 4008
			// close frame, written as soon as the stuck write returned.
			slowDone := make(chan struct{})
			var slowIDs []string
			var readErr error
			closeCodeSeen := 0
			go func() {
				defer close(slowDone)
				<-publishedAll
				_ = slow.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
				for {
					op, data, err := slow.readFrame()
					if err != nil {
						readErr = err
						return
					}
					if op == 8 {
						closeCodeSeen = closeCode(data)
						return
					}
					if id := messageID(data); id != "" {
						slowIDs = append(slowIDs, id)
						if id == lastID.Load() {
							return
						}
					}
				}
			}()
			start := time.Now()
			want := publishFast(t, r, topic, total, 100)
			lastID.Store(want[len(want)-1])
			close(publishedAll)
			wg.Wait()
			t.Logf("published and fanned out in %v", time.Since(start))
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for i := range got {
				if fmt.Sprint(got[i]) != fmt.Sprint(want) {
					t.Fatalf("fast subscriber %d: %d messages, not the %d published in order", i, len(got[i]), len(want))
				}
			}
			if h := heapInUse(); h > heapCeiling {
				t.Fatalf("heap in use %d MB, over the %d MB ceiling", h>>20, heapCeiling>>20)
			}

			<-slowDone
			if !isSubsequence(slowIDs, want) {
				t.Fatalf("slow subscriber got ids out of order or repeated")
			}
			switch policy {
			case actors.PolicyDisconnect:
				if closeCodeSeen != 4008 {
					t.Fatalf("slow subscriber ended with close code %d (read error %v), want close 4008", closeCodeSeen, readErr)
				}
				if counters.SlowDisconnects.Load() != 1 {
					t.Fatalf("slow-consumer disconnects = %d, want 1", counters.SlowDisconnects.Load())
				}
			case actors.PolicyDropOldest:
				if readErr != nil || closeCodeSeen != 0 {
					t.Fatalf("slow subscriber under drop-oldest was closed: %v, close code %d", readErr, closeCodeSeen)
				}
				if dropped := counters.Drops.Load(); dropped == 0 || int(dropped)+len(slowIDs) != total {
					t.Fatalf("dropped %d + received %d != %d published", dropped, len(slowIDs), total)
				}
			}
			t.Logf("%s: slow subscriber received %d of %d, dropped %d", policy, len(slowIDs), total, counters.Drops.Load())
		})
	}
}

type atomicString struct{ v atomic.Value }

func (a *atomicString) Store(s string) { a.v.Store(s) }
func (a *atomicString) Load() string {
	s, _ := a.v.Load().(string)
	return s
}

// isSubsequence reports whether got appears in want in order, each once.
func isSubsequence(got, want []string) bool {
	j := 0
	for _, g := range got {
		for j < len(want) && want[j] != g {
			j++
		}
		if j == len(want) {
			return false
		}
		j++
	}
	return true
}

// TestFloodIsRefusedQuickly: far more publishers than one topic with a small
// queue and a slow store can absorb: every publish is answered (201, or 503
// instead of waiting), memory stays bounded, and nothing acknowledged is lost.
//
// "Quickly" is "at once rather than after the publish timeout": the timeout
// is a minute and every answer must come within a quarter of it, a bound no
// scheduling delay on a loaded machine reaches but a publish that waits out
// the timeout does. The publishers use their own HTTP client, whose timeout
// is past the publish timeout, so such a wait shows as a slow answer, not as
// a client error.
func TestFloodIsRefusedQuickly(t *testing.T) {
	relaytest.CheckLeaks(t)
	const publishTimeout, answerBound = time.Minute, 15 * time.Second
	store := relaytest.NewFaultyStore(nil)
	r := relaytest.Start(t, relaytest.Options{Store: store, Actors: actors.Config{TopicMailboxSize: 16, MaxBatch: 8},
		Gateway: gateway.Config{PublishTimeout: publishTimeout}})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 2 * publishTimeout}
	t.Cleanup(hc.CloseIdleConnections) // before the relay's shutdown (LIFO)
	publish := func(topic string, payload any) (int, map[string]any) {
		b, _ := json.Marshal(map[string]any{"topic": topic, "payload": payload})
		resp, err := hc.Post(r.URL+"/api/v1/messages", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Errorf("publish: %v", err)
			return 0, nil
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	store.Stall(2 * time.Millisecond) // at most ~8 messages per 2 ms get stored
	const topic = "hot"
	var mu sync.Mutex
	acked := map[string]bool{}
	var accepted, refused atomic.Int64
	var slowest atomic.Int64
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
				start := time.Now()
				status, body := publish(topic, map[string]any{"i": i})
				d := int64(time.Since(start))
				for m := slowest.Load(); d > m && !slowest.CompareAndSwap(m, d); m = slowest.Load() {
				}
				switch status {
				case http.StatusCreated:
					accepted.Add(1)
					mu.Lock()
					acked[body["message_id"].(string)] = true
					mu.Unlock()
				case http.StatusServiceUnavailable:
					refused.Add(1)
					if body["error"] != "SERVICE_UNAVAILABLE" {
						t.Errorf("refusal body %v", body)
					}
				default:
					t.Errorf("publish: %d %v", status, body)
				}
			}
		}()
	}
	wg.Wait()
	if refused.Load() == 0 || accepted.Load() == 0 {
		t.Fatalf("accepted %d refused %d: the flood should see both", accepted.Load(), refused.Load())
	}
	if s := time.Duration(slowest.Load()); s > answerBound {
		t.Fatalf("slowest answer took %v, want every answer within %v (the publish timeout is %v: a publish must be refused, not wait)", s, answerBound, publishTimeout)
	}
	if h := heapInUse(); h > heapCeiling {
		t.Fatalf("heap in use %d MB", h>>20)
	}
	stored := storedAfter(t, r.Store, topic, "")
	inStore := map[string]bool{}
	for _, id := range stored {
		inStore[id] = true
	}
	for id := range acked {
		if !inStore[id] {
			t.Fatalf("acknowledged message %s is not in the store", id)
		}
	}
	t.Logf("accepted %d, refused %d, slowest answer %v", accepted.Load(), refused.Load(), time.Duration(slowest.Load()))
}

// TestConnectionLimit: with MaxConnections=100 the 101st upgrade is refused
// with 503 and succeeds once a connection closes.
func TestConnectionLimit(t *testing.T) {
	relaytest.CheckLeaks(t)
	r := relaytest.Start(t, relaytest.Options{Gateway: gateway.Config{MaxConnections: 100}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := make([]*relaytest.Client, 100)
	for i := range clients {
		clients[i] = r.Dial(ctx)
	}
	_, resp, err := websocket.Dial(ctx, r.WSURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("101st connection: err %v resp %v, want a 503 refusal", err, resp)
	}
	clients[0].Conn.Close(websocket.StatusNormalClosure, "")
	relaytest.Eventually(t, 5*time.Second, "a free connection slot", func() bool {
		c, _, err := websocket.Dial(ctx, r.WSURL, nil)
		if err != nil {
			return false
		}
		c.CloseNow()
		return true
	})
}

// TestSlowConsumerOnAQuietTopic: a quiet topic writes to its subscribers
// inside no-block stretches: with a few, on its own goroutine (the
// publisher's); with more than 8, in shares on the dispatcher, each share's
// subscribers one after another. So a subscriber that reads nothing must
// not make those writes block: every publish is answered, and every
// subscriber that reads gets every message in order. With a few, the one
// that reads nothing is disconnected as a slow consumer once its queue is
// full (a blocking write would have stalled the publishes first). With
// many, it keeps dropping its oldest frames and stays connected, so a
// blocking write would hold up the rest of its share until WriteTimeout (5
// minutes here), past the readers' deadline.
func TestSlowConsumerOnAQuietTopic(t *testing.T) {
	for _, tc := range []struct {
		name    string
		readers int
		policy  actors.SlowConsumerPolicy
	}{{"few subscribers", 1, actors.PolicyDisconnect}, {"wide", 9, actors.PolicyDropOldest}} {
		t.Run(tc.name, func(t *testing.T) { slowConsumerOnAQuietTopic(t, tc.readers, tc.policy) })
	}
}

func slowConsumerOnAQuietTopic(t *testing.T, readers int, policy actors.SlowConsumerPolicy) {
	relaytest.CheckLeaks(t)
	counters := &relaytest.Counters{}
	r := relaytest.Start(t, relaytest.Options{
		Actors: actors.Config{SlowConsumerPolicy: policy, Observer: counters,
			ConnectionQueueBytes: 1 << 20},
		Gateway: gateway.Config{WriteTimeout: 5 * time.Minute, PingInterval: 5 * time.Minute},
	})
	const topic = "quiet"
	sub := func(rcvbuf int) *rawWS {
		c, err := dialRaw(r.WSURL, rcvbuf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.conn.Close() })
		if err := c.writeText([]byte(`{"type":"subscribe","topics":["quiet"]}`)); err != nil {
			t.Fatal(err)
		}
		if _, p, err := c.readFrame(); err != nil || !bytes.Contains(p, []byte(`"subscribed"`)) {
			t.Fatalf("subscribe: %s %v", p, err)
		}
		return c
	}
	_ = sub(16 << 10) // the slow one, first in its share: reads nothing from here on
	fast := make([]*rawWS, readers)
	for i := range fast {
		fast[i] = sub(0)
	}

	// Each publish 2 ms after the one before (the topic stays quiet), 16 KB
	// each: the slow socket's buffers fill within a few dozen, its outbox
	// (1 MB here) within a hundred.
	const total = 400
	pad := strings.Repeat("x", 16<<10)
	ids := make(chan string, total)
	failed := make(chan error, 1)
	go func() {
		defer close(ids)
		for i := range total {
			time.Sleep(2 * time.Millisecond)
			status, body := r.Publish(topic, map[string]any{"i": i, "pad": pad})
			if status != http.StatusCreated {
				failed <- fmt.Errorf("publish %d: status %d %v", i, status, body)
				return
			}
			ids <- body["message_id"].(string)
		}
	}()
	got := make(chan []string, readers)
	for _, f := range fast {
		go func() {
			_ = f.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
			read, err := f.readN(total)
			if err != nil {
				t.Errorf("a reading subscriber after %d messages: %v", len(read), err)
			}
			got <- read
		}()
	}
	var want []string
	deadline := time.After(2 * time.Minute) // far beyond 400 x 2 ms; short of WriteTimeout
	for done := false; !done; {
		select {
		case id, ok := <-ids:
			if !ok {
				done = true
				break
			}
			want = append(want, id)
		case err := <-failed:
			t.Fatal(err)
		case <-deadline:
			t.Fatalf("publishing stalled after %d of %d: a write to the subscriber that reads nothing blocked its topic", len(want), total)
		}
	}
	select {
	case err := <-failed:
		t.Fatal(err)
	default:
	}
	for range readers {
		if read := <-got; fmt.Sprint(read) != fmt.Sprint(want) {
			t.Fatalf("a reading subscriber: %d messages, not the %d published in order", len(read), len(want))
		}
	}
	if policy == actors.PolicyDropOldest {
		// 6.4 MB for a 1 MB queue: it dropped (reported when its blocked
		// flush ends) and stayed connected, its socket full throughout.
		if n := counters.SlowDisconnects.Load(); n != 0 {
			t.Fatalf("%d slow-consumer disconnects under drop-oldest, want 0", n)
		}
		return
	}
	relaytest.Eventually(t, 30*time.Second, "the slow subscriber disconnected", func() bool {
		return counters.SlowDisconnects.Load() == 1
	})
}
