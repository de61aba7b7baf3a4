package persistence

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/messages"
)

// feedEvent is one handler call.
type feedEvent struct {
	notice *Notice
	up     *bool
	err    error
}

// chanHandler records handler calls; it never blocks the feed (a full
// buffer fails the test).
type chanHandler struct {
	t  *testing.T
	ch chan feedEvent
}

// listen opens a feed of s with a fresh chanHandler; the caller closes
// the feed (before its store).
func listen(t *testing.T, s *ValkeyStore) (*chanHandler, Feed) {
	t.Helper()
	h := newChanHandler(t)
	feed, err := s.NewFeed(h)
	if err != nil {
		t.Fatal(err)
	}
	return h, feed
}

func newChanHandler(t *testing.T) *chanHandler {
	return &chanHandler{t: t, ch: make(chan feedEvent, 1024)}
}

func (h *chanHandler) OnNotice(n Notice) {
	select {
	case h.ch <- feedEvent{notice: &n}:
	default:
		h.t.Error("feed handler: buffer full")
	}
}

func (h *chanHandler) OnLink(up bool, err error) {
	select {
	case h.ch <- feedEvent{up: &up, err: err}:
	default:
		h.t.Error("feed handler: buffer full")
	}
}

func (h *chanHandler) next(what string) feedEvent {
	h.t.Helper()
	select {
	case e := <-h.ch:
		return e
	case <-time.After(10 * time.Second):
		h.t.Fatalf("%s: nothing from the feed within 10 s", what)
		return feedEvent{}
	}
}

func (h *chanHandler) link(want bool) {
	h.t.Helper()
	e := h.next(fmt.Sprintf("OnLink(%v)", want))
	if e.up == nil || *e.up != want {
		h.t.Fatalf("got %+v, want OnLink(%v)", e, want)
	}
}

func (h *chanHandler) notice(what string) Notice {
	h.t.Helper()
	e := h.next(what)
	if e.notice == nil {
		h.t.Fatalf("%s: got OnLink(%v, %v), want a notice", what, *e.up, e.err)
	}
	return *e.notice
}

func TestValkeyFeedAnnouncesAppends(t *testing.T) {
	srv := valkeytest.Start(t)
	a := openValkey(t, srv, ValkeyConfig{})
	b := openValkey(t, srv, ValkeyConfig{})
	h, feed := listen(t, b)
	defer feed.Close()
	h.link(true)
	if !feed.Up() {
		t.Fatal("Up() is false after OnLink(true)")
	}
	if err := feed.Subscribe("news"); err != nil {
		t.Fatal(err)
	}

	// Every combination of the optional fields: none, metadata, expiry, both.
	batch := msgs(0, 4)
	batch[1].Metadata = map[string]string{"k": "v \"q\""}
	batch[2].ExpiresAt = time.Now().Add(time.Hour).UTC()
	batch[3].Metadata = map[string]string{"k": "w"}
	batch[3].ExpiresAt = time.Now().Add(2 * time.Hour).UTC()
	stored := appendAll(t, a, "news", batch)
	n := h.notice("first append")
	tip := mustTip(t, a, "news")
	if n.Topic != "news" || n.Epoch != tip.Epoch || !n.Prev.IsZero() || n.Last != stored[3].ID {
		t.Fatalf("notice %+v; want topic news, epoch %s, no prev, last %s", n, tip.Epoch, stored[3].ID)
	}
	assertIDs(t, "notice messages", n.Messages, idsOf(stored))
	for i, m := range n.Messages {
		w := stored[i]
		if string(m.Payload) != string(w.Payload) || m.Topic != "news" || len(m.Metadata) != len(w.Metadata) ||
			m.Metadata["k"] != w.Metadata["k"] || !m.Timestamp.Equal(w.Timestamp.Truncate(time.Microsecond)) ||
			!m.ExpiresAt.Equal(w.ExpiresAt.Truncate(time.Microsecond)) {
			t.Errorf("notice message %d = %+v, want %+v", i, m, w)
		}
	}

	// The next notice continues the first; a repeat stores and announces
	// nothing; a large batch is announced without its messages.
	keyedMsg := appendAll(t, a, "news", []messages.Message{keyed(3, "k", "h")})[0]
	n = h.notice("second append")
	if n.Prev != stored[3].ID || n.Last != keyedMsg.ID || len(n.Messages) != 1 {
		t.Fatalf("second notice %+v; want prev %s, last %s, 1 message", n, stored[3].ID, keyedMsg.ID)
	}
	appendAll(t, a, "news", []messages.Message{keyed(4, "k", "h")}) // a repeat
	big := msgs(5, 2)
	big[0].Payload = []byte(`{"x":"` + strings.Repeat("a", NoticeInlineMax) + `"}`)
	bigStored := appendAll(t, a, "news", big)
	n = h.notice("large append")
	if n.Prev != keyedMsg.ID || n.Last != bigStored[1].ID || n.Messages != nil {
		t.Fatalf("notice of a large batch %+v; want prev %s, last %s, no messages", n, keyedMsg.ID, bigStored[1].ID)
	}
}

// Relays on two databases of one server stay apart: pub/sub is not per
// database, so each database's notices go on channels of their own. A
// feed on database 0 heard database 3's appends before (and the relay
// delivered messages its store did not hold).
func TestValkeyFeedDatabasesApart(t *testing.T) {
	srv := valkeytest.Start(t)
	db0 := openValkey(t, srv, ValkeyConfig{})
	db3 := openValkey(t, srv, ValkeyConfig{DB: 3})
	h0, feed0 := listen(t, db0)
	defer feed0.Close()
	h3, feed3 := listen(t, db3)
	defer feed3.Close()
	h0.link(true)
	h3.link(true)
	for _, f := range []Feed{feed0, feed3} {
		if err := f.Subscribe("shared"); err != nil {
			t.Fatal(err)
		}
	}
	in3 := appendAll(t, db3, "shared", msgs(0, 1))
	if n := h3.notice("database 3's append on its own feed"); n.Last != in3[0].ID {
		t.Fatalf("database 3's feed heard %+v, want last %s", n, in3[0].ID)
	}
	in0 := appendAll(t, db0, "shared", msgs(1, 1))
	// Notices of one link arrive in order: database 0's feed hears its own
	// append first, or database 3's leaked into it.
	if n := h0.notice("database 0's append"); n.Last != in0[0].ID {
		t.Fatalf("database 0's feed heard %+v first, want its own append %s (database 3's append leaked)", n, in0[0].ID)
	}
	if err := feed3.Subscribe("marker"); err != nil {
		t.Fatal(err)
	}
	appendAll(t, db3, "marker", msgs(2, 1))
	if n := h3.notice("database 3's marker"); n.Topic != "marker" {
		t.Fatalf("database 3's feed heard %+v before its marker: database 0's append leaked", n)
	}
}

// Subscriptions are counted: the channel is left on the last Unsubscribe.
// Notices of one connection arrive in order, so a notice of another topic
// published later shows that nothing came for the left one.
func TestValkeyFeedReferenceCounts(t *testing.T) {
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{})
	h, feed := listen(t, s)
	defer feed.Close()
	h.link(true)
	for _, topic := range []string{"counted", "counted", "marker"} {
		if err := feed.Subscribe(topic); err != nil {
			t.Fatal(err)
		}
	}
	if err := feed.Unsubscribe("counted"); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, "counted", msgs(0, 1))
	if n := h.notice("one interest left"); n.Topic != "counted" {
		t.Fatalf("notice for %q, want counted", n.Topic)
	}
	if err := feed.Unsubscribe("counted"); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, "counted", msgs(1, 1))
	appendAll(t, s, "marker", msgs(2, 1))
	if n := h.notice("after the last Unsubscribe"); n.Topic != "marker" {
		t.Fatalf("notice for %q after its last Unsubscribe", n.Topic)
	}
}

// A pub/sub connection killed from the server's side: OnLink(false), then
// OnLink(true) once the feed has made a new one and subscribed again, and
// notices flow again.
func TestValkeyFeedLinkLossAndBack(t *testing.T) {
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{Timeout: time.Second})
	raw := rawClient(t, srv)
	h, feed := listen(t, s)
	defer feed.Close()
	h.link(true)
	if err := feed.Subscribe("wedge"); err != nil {
		t.Fatal(err)
	}
	killed, err := raw.Do(testCtx(t), raw.B().ClientKill().TypePubsub().Build()).AsInt64()
	if err != nil || killed != 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v; want 1 connection killed", killed, err)
	}
	h.link(false)
	h.link(true)
	stored := appendAll(t, s, "wedge", msgs(0, 1))
	if n := h.notice("after the link came back"); n.Last != stored[0].ID {
		t.Fatalf("notice %+v, want last %s", n, stored[0].ID)
	}

	// Valkey itself goes away and comes back.
	srv.Stop()
	h.link(false)
	srv.Restart()
	h.link(true)
	stored = appendAll(t, s, "wedge", msgs(1, 1))
	if n := h.notice("after a restart"); n.Last != stored[0].ID {
		t.Fatalf("notice %+v, want last %s", n, stored[0].ID)
	}
	if err := feed.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoFeedGoroutines(t)
}

// assertNoFeedGoroutines fails t if a feed goroutine outlived its Close.
// Close returns once every feed goroutine has called wg.Done, which each
// does in a deferred call: one may still be on its way out, its frame on
// the stack, for a moment after. So a goroutine fails the test only if it
// is still there a second later.
func assertNoFeedGoroutines(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(time.Second)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, fn := range []string{"(*feedLink).run", "(*valkeyFeed).setup"} {
			if strings.Contains(stacks, fn) {
				left = append(left, fn)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s still running a second after Close:\n%s", strings.Join(left, " and "), stacks)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDecodeNotice(t *testing.T) {
	good := `{"topic":"t","epoch":"e","prev":"1-0","last":"2-1","messages":[{"id":"2-0","timestamp":"2026-11-27T01:17:27.656581Z","payload":{"a":1}},{"id":"2-1","timestamp":"2026-11-27T01:17:27.656581Z","payload":{},"metadata":{"k":"v"},"expires_at":"2026-11-27T02:17:27.656581Z"}]}`
	n, err := DecodeNotice([]byte(good))
	if err != nil || n.Topic != "t" || n.Epoch != "e" || n.Prev != (messages.ID{Ms: 1}) || n.Last != (messages.ID{Ms: 2, Seq: 1}) ||
		len(n.Messages) != 2 || n.Messages[1].Metadata["k"] != "v" || n.Messages[1].ExpiresAt.IsZero() || string(n.Messages[0].Payload) != `{"a":1}` {
		t.Fatalf("DecodeNotice(good) = %+v, %v", n, err)
	}
	if n, err := DecodeNotice([]byte(`{"topic":"t","epoch":"e","prev":"0-0","last":"2-1"}`)); err != nil || n.Messages != nil {
		t.Fatalf("a notice without messages = %+v, %v; want nil Messages", n, err)
	}
	for _, bad := range []string{
		``, `[]`, `{"epoch":"e","prev":"0-0","last":"1-0"}`, `{"topic":"t","prev":"x","last":"1-0"}`,
		`{"topic":"t","prev":"0-0","last":"1-0","messages":[{"id":"2-0","timestamp":"2026-11-27T01:17:27Z","payload":{}}]}`,
		`{"topic":"t","prev":"0-0","last":"1-0","messages":[{"id":"1-0","timestamp":"yesterday","payload":{}}]}`,
	} {
		if _, err := DecodeNotice([]byte(bad)); err == nil {
			t.Errorf("DecodeNotice(%q) succeeded", bad)
		}
	}
}

func FuzzDecodeNotice(f *testing.F) {
	f.Add([]byte(`{"topic":"t","epoch":"e","prev":"1-0","last":"2-0","messages":[{"id":"2-0","timestamp":"2026-11-27T01:17:27.656581Z","payload":{}}]}`))
	f.Add([]byte(`{"topic":"t","epoch":"e","prev":"1-0","last":"2-1","messages":[{"id":"2-0","timestamp":"2026-11-27T01:17:27.656581Z","payload":{"s":"}\"]"}},{"id":"2-1","timestamp":"2026-11-27T01:17:27.656581Z","payload":{},"metadata":{"k":"v\\u003c"},"expires_at":"2026-11-27T02:17:27.656581Z"}]}`))
	f.Add([]byte(`{"topic":"t","epoch":"e","prev":"1-0","last":"2-1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// What the fast path accepts, encoding/json reads the same way.
		var fast, slow noticeJSON
		if fast.decodeFast(b) {
			if err := json.Unmarshal(b, &slow); err != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("fast and encoding/json differ on %q:\n%+v\n%+v (%v)", b, fast, slow, err)
			}
		}
		n, err := DecodeNotice(b)
		if err == nil && (n.Topic == "" || (len(n.Messages) > 0 && n.Messages[len(n.Messages)-1].ID != n.Last)) {
			t.Fatalf("DecodeNotice accepted %q as %+v", b, n)
		}
	})
}

// Appends racing from two stores (two relays) are announced once each, in
// stream order: every notice continues the one before it (Prev is the last
// Last), and their messages, end to end, are the stream.
func TestValkeyFeedNoticesChainInStreamOrder(t *testing.T) {
	srv := valkeytest.Start(t)
	a := openValkey(t, srv, ValkeyConfig{})
	b := openValkey(t, srv, ValkeyConfig{})
	h, feed := listen(t, b)
	defer feed.Close()
	h.link(true)
	if err := feed.Subscribe("chain"); err != nil {
		t.Fatal(err)
	}
	const writers, batches, per = 4, 40, 3
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := Store(a)
			if w%2 == 1 {
				s = b
			}
			for i := range batches {
				if n, err := s.Append(testCtx(t), "chain", msgs(w*1000+i*per, per)); n != per || err != nil {
					t.Errorf("writer %d: Append = %d, %v", w, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var got []messages.Message
	prev := messages.ID{}
	for range writers * batches {
		n := h.notice(fmt.Sprintf("notice after %d messages", len(got)))
		if n.Prev != prev {
			t.Fatalf("notice %s..%s does not continue %s", n.Prev, n.Last, prev)
		}
		got = append(got, n.Messages...)
		prev = n.Last
	}
	stream := mustRange(t, a, "chain", messages.ID{}, 1000).Messages
	assertIDs(t, "notices end to end", got, idsOf(stream))
}

// countingHandler counts notices per topic without ever blocking.
type countingHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHandler) OnNotice(n Notice) {
	h.mu.Lock()
	h.n[n.Topic]++
	h.mu.Unlock()
}

func (h *countingHandler) OnLink(bool, error) {}

func (h *countingHandler) count(topic string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[topic]
}

// Subscribing while notices stream in on the same connection neither stalls
// nor fails: a handler call never waits on the lock a Subscribe holds while
// it waits for its SSUBSCRIBE reply behind those notices.
func TestValkeyFeedSubscribeDuringAFlood(t *testing.T) {
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{Timeout: 2 * time.Second})
	h := &countingHandler{n: make(map[string]int)}
	feed, err := s.NewFeed(h)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	eventually(t, 10*time.Second, func() string {
		if !feed.Up() {
			return "feed not up"
		}
		return ""
	})
	if err := feed.Subscribe("flood"); err != nil {
		t.Fatal(err)
	}
	const floods = 3000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range floods {
			if _, err := s.Append(context.Background(), "flood", msgs(i, 1)); err != nil {
				t.Errorf("flood append: %v", err)
				return
			}
		}
	}()
	// Liveness only: the subscriptions must not be stuck behind the flood.
	// One generous deadline for all of them, no per-call timing.
	subscribed := make(chan error, 1)
	go func() {
		for i := range 100 {
			if err := feed.Subscribe(fmt.Sprintf("late-%d", i)); err != nil {
				subscribed <- err
				return
			}
		}
		subscribed <- nil
	}()
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("Subscribe during a flood: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("100 Subscribe calls during a flood did not finish within 30s")
	}
	<-done
	eventually(t, 10*time.Second, func() string {
		if n := h.count("flood"); n != floods {
			return fmt.Sprintf("%d of %d flood notices", n, floods)
		}
		return ""
	})
}

// BenchmarkDecodeNotice: a notice of one message as the append script
// writes it under ingest (the relay hears one per batch it or another
// relay appends).
func BenchmarkDecodeNotice(b *testing.B) {
	n := []byte(`{"topic":"bench-0","epoch":"5f0c2a9e1b7d4c33","prev":"1764590000000-41","last":"1764590000000-42","messages":[{"id":"1764590000000-42","timestamp":"2026-12-01T11:00:00.123456Z","payload":{"seq":1,"sent_ns":1732679000000000000,"pub":0,"pad":"0123456789abcdef0123456789abcdef"}}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeNotice(n); err != nil {
			b.Fatal(err)
		}
	}
}
