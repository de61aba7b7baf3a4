package persistence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/messages"
)

// testLogger sends the store's logs to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openValkey(t testing.TB, srv *valkeytest.Server, cfg ValkeyConfig) *ValkeyStore {
	t.Helper()
	cfg.Addrs = []string{srv.Addr()}
	if cfg.Password == "" {
		cfg.Password = srv.Password()
	}
	s, err := NewValkeyStore(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("NewValkeyStore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rawClient is a plain client for inspecting what the store wrote.
func rawClient(t *testing.T, srv *valkeytest.Server) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatalf("raw client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Each test gets its own server: one starts in a few tens of milliseconds.
func TestValkeyStoreConformance(t *testing.T) {
	runConformance(t, func(t *testing.T, limits Limits) Store {
		return openValkey(t, valkeytest.Start(t), ValkeyConfig{Limits: limits})
	})
}

func TestValkeyStoreNeedsAnAddress(t *testing.T) {
	if _, err := NewValkeyStore(context.Background(), ValkeyConfig{}, nil); err == nil {
		t.Fatal("NewValkeyStore without an address succeeded")
	}
}

// Closing a store that is still connecting in the background stops that
// loop; later calls fail with ErrUnavailable.
func TestValkeyStoreCloseWhileConnecting(t *testing.T) {
	srv := valkeytest.Start(t)
	srv.Stop()
	s := openValkey(t, srv, ValkeyConfig{Timeout: 200 * time.Millisecond})
	done := make(chan struct{})
	go func() { _ = s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while the store was connecting")
	}
	srv.Restart()
	if err := s.Ping(testCtx(t)); !errors.Is(err, messages.ErrUnavailable) || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Ping after Close = %v; want ErrUnavailable (closed)", err)
	}
}

func TestValkeyStoreLayout(t *testing.T) {
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{})
	ts := time.Date(2026, 11, 27, 1, 17, 27, 656581999, time.UTC)
	batch := []messages.Message{
		{Payload: []byte(`{"a":1}`), Timestamp: ts, Metadata: map[string]string{"k": "v"}, ExpiresAt: ts.Add(time.Hour)},
		{Payload: []byte(`{"b":2}`), Timestamp: ts},
	}
	appendAll(t, s, "lay.out_1-x", batch)

	raw := rawClient(t, srv)
	ctx := testCtx(t)
	entries, err := raw.Do(ctx, raw.B().Xrange().Key("topic:{lay.out_1-x}:stream").Start("-").End("+").Build()).AsXRange()
	if err != nil || len(entries) != 2 {
		t.Fatalf("XRANGE topic:{lay.out_1-x}:stream = %d entries, %v; want 2", len(entries), err)
	}
	for i, e := range entries {
		if e.ID != batch[i].ID.String() {
			t.Errorf("entry %d id %s, message id %s: the stream id must be the message id", i, e.ID, batch[i].ID)
		}
	}
	want0 := map[string]string{
		"payload":    `{"a":1}`,
		"timestamp":  "2026-11-27T01:17:27.656581Z",
		"metadata":   `{"k":"v"}`,
		"expires_at": "2026-11-27T02:17:27.656581Z",
	}
	want1 := map[string]string{"payload": `{"b":2}`, "timestamp": "2026-11-27T01:17:27.656581Z"}
	for i, want := range []map[string]string{want0, want1} {
		got := entries[i].FieldValues
		if len(got) != len(want) {
			t.Errorf("entry %d fields %v, want %v", i, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("entry %d field %s = %q, want %q", i, k, got[k], v)
			}
		}
	}
}

// openWithWrongTopic opens a store on a fresh server where topic "wrong"
// has a string where its stream should be, and returns a raw client too.
func openWithWrongTopic(t *testing.T) (*ValkeyStore, valkey.Client, context.Context) {
	t.Helper()
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{})
	raw := rawClient(t, srv)
	ctx := testCtx(t)
	if err := raw.Do(ctx, raw.B().Set().Key("topic:{wrong}:stream").Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	return s, raw, ctx
}

// A key that is not a stream makes the script's first XADD fail: nothing is
// stored, n is 0 and the error wraps ErrUnavailable with the server's reason.
func TestValkeyStoreAppendFailureIsHonest(t *testing.T) {
	s, _, ctx := openWithWrongTopic(t)
	batch := msgs(0, 3)
	n, err := s.Append(ctx, "wrong", batch)
	if n != 0 || !errors.Is(err, messages.ErrUnavailable) || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("Append onto a string key = %d, %v; want 0 and ErrUnavailable with WRONGTYPE", n, err)
	}
	for i := range batch {
		if !batch[i].ID.IsZero() {
			t.Errorf("message %d got id %s although nothing was stored", i, batch[i].ID)
		}
	}
}

// Retention trims on write (XTRIM MINID ~), not only hides on read.
func TestValkeyStoreTrimsByAgeOnWrite(t *testing.T) {
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{Limits: Limits{Retention: 300 * time.Millisecond}})
	raw := rawClient(t, srv)
	for i := 0; i < 5; i++ {
		appendAll(t, s, "aging", msgs(i*50, 50))
	}
	eventually(t, 5*time.Second, func() string {
		appendAll(t, s, "aging", msgs(1000, 1)) // each append trims
		n, err := raw.Do(testCtx(t), raw.B().Xlen().Key("topic:{aging}:stream").Build()).AsInt64()
		if err != nil {
			return err.Error()
		}
		if n > 1+trimSlack {
			return fmt.Sprintf("stream still holds %d entries", n)
		}
		return ""
	})
	if p := mustRange(t, s, "aging", messages.ID{}, 1000); !p.Truncated {
		t.Errorf("Range after zero once old entries were trimmed: Truncated not set")
	}
}

func TestValkeyStoreWrongPasswordFailsAtOnce(t *testing.T) {
	srv := valkeytest.Start(t, valkeytest.WithPassword("right"))
	// "At once" is checked against a timeout far longer than the bound, so
	// a store that waits for the timeout (retrying the refused login) fails
	// clearly and a slow machine does not.
	const timeout = 60 * time.Second
	for _, tc := range []struct{ password, want string }{
		{"wrong", "WRONGPASS"},
		{"", "NOAUTH"},
	} {
		start := time.Now()
		s, err := NewValkeyStore(context.Background(), ValkeyConfig{
			Addrs: []string{srv.Addr()}, Password: tc.password, Timeout: timeout,
		}, testLogger(t))
		if err == nil {
			s.Close()
			t.Fatalf("password %q: NewValkeyStore succeeded", tc.password)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("password %q: error %q does not mention %s", tc.password, err, tc.want)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("password %q: the error took %s, timeout %s; want it well before the timeout", tc.password, d, timeout)
		}
	}
	s := openValkey(t, srv, ValkeyConfig{Password: "right"})
	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping with the right password: %v", err)
	}
}

// Valkey down at start-up: the store comes up, answers ErrUnavailable within
// the timeout, reports why in Ping, and works once Valkey is up, without a
// new store.
func TestValkeyStoreStartsWhileValkeyDown(t *testing.T) {
	srv := valkeytest.Start(t)
	srv.Stop()
	const timeout = 500 * time.Millisecond
	start := time.Now()
	s := openValkey(t, srv, ValkeyConfig{Timeout: timeout})
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("NewValkeyStore with Valkey down took %s", d)
	}

	start = time.Now()
	n, err := s.Append(testCtx(t), "down", msgs(0, 1))
	if n != 0 || !errors.Is(err, messages.ErrUnavailable) {
		t.Fatalf("Append with Valkey down = %d, %v; want 0, ErrUnavailable", n, err)
	}
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("Append with Valkey down took %s, timeout %s", d, timeout)
	}
	if _, err := s.Range(testCtx(t), "down", messages.ID{}, 10); !errors.Is(err, messages.ErrUnavailable) {
		t.Errorf("Range with Valkey down: %v; want ErrUnavailable", err)
	}
	err = s.Ping(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "not connected") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Ping with Valkey down = %v; want the reason (not connected, connection refused)", err)
	}

	srv.Restart()
	eventually(t, 10*time.Second, func() string {
		if err := s.Ping(testCtx(t)); err != nil {
			return "Ping: " + err.Error()
		}
		return ""
	})
	appendAll(t, s, "down", msgs(0, 2))
	if got := mustRange(t, s, "down", messages.ID{}, 10).Messages; len(got) != 2 {
		t.Fatalf("Range after Valkey came up: %d messages, want 2", len(got))
	}
}

// A Valkey crash (SIGKILL) and restart: acknowledged writes survive in the
// AOF and the same store reconnects by itself. appendfsync always makes the
// durability part deterministic; everysec may lose up to a second.
func TestValkeyStoreReconnectsAfterRestart(t *testing.T) {
	srv := valkeytest.Start(t, valkeytest.WithArgs("--appendfsync", "always"))
	const timeout = 500 * time.Millisecond
	s := openValkey(t, srv, ValkeyConfig{Timeout: timeout})
	before := idsOf(appendAll(t, s, "crash", msgs(0, 5)))

	srv.Kill()
	start := time.Now()
	if n, err := s.Append(testCtx(t), "crash", msgs(5, 1)); n != 0 || !errors.Is(err, messages.ErrUnavailable) {
		t.Fatalf("Append with Valkey killed = %d, %v; want 0, ErrUnavailable", n, err)
	}
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("Append with Valkey killed took %s, timeout %s", d, timeout)
	}
	if err := s.Ping(testCtx(t)); err == nil {
		t.Errorf("Ping with Valkey killed succeeded")
	}

	srv.Restart()
	eventually(t, 10*time.Second, func() string {
		if err := s.Ping(testCtx(t)); err != nil {
			return "Ping: " + err.Error()
		}
		return ""
	})
	assertIDs(t, "messages after the crash", mustRange(t, s, "crash", messages.ID{}, 100).Messages, before)
	after := appendAll(t, s, "crash", msgs(5, 1))
	if !before[len(before)-1].Less(after[0].ID) {
		t.Errorf("id after restart %s is not after %s", after[0].ID, before[len(before)-1])
	}
}

// A stalled Valkey (SIGSTOP) must not hang callers: every operation gives up
// with ErrUnavailable after the timeout, and the store recovers when Valkey
// does.
func TestValkeyStoreStalledValkeyTimesOut(t *testing.T) {
	srv := valkeytest.Start(t)
	const timeout = 300 * time.Millisecond
	s := openValkey(t, srv, ValkeyConfig{Timeout: timeout})
	appendAll(t, s, "stall", msgs(0, 1))

	srv.Pause()
	ops := map[string]func() error{
		"Append": func() error { _, err := s.Append(context.Background(), "stall", msgs(1, 1)); return err },
		"Range":  func() error { _, err := s.Range(context.Background(), "stall", messages.ID{}, 10); return err },
		"Tips":   func() error { _, err := s.Tips(context.Background(), []string{"stall"}); return err },
		"Ping":   func() error { return s.Ping(context.Background()) },
	}
	// Liveness, not timing: without the timeout a call against a stalled
	// Valkey never returns, so a bound several seconds past the timeout
	// catches that and leaves a slow machine plenty of room.
	const bound = timeout + 5*time.Second
	for name, op := range ops {
		res := make(chan error, 1)
		go func() { res <- op() }()
		select {
		case err := <-res:
			if !errors.Is(err, messages.ErrUnavailable) {
				t.Errorf("%s against a stalled Valkey: %v; want ErrUnavailable", name, err)
			}
		case <-time.After(bound):
			t.Errorf("%s against a stalled Valkey did not return within %s, timeout %s", name, bound, timeout)
		}
	}
	srv.Resume()
	eventually(t, 10*time.Second, func() string {
		if _, err := s.Append(context.Background(), "stall", msgs(2, 1)); err != nil {
			return "Append: " + err.Error()
		}
		return ""
	})
}

func BenchmarkValkeyAppend(b *testing.B) {
	srv := valkeytest.Start(b)
	s := openValkey(b, srv, ValkeyConfig{Limits: Limits{MaxMessages: 100000, Retention: time.Hour}})
	payload := []byte(`{"event":"job-state","job_id":"a1b2c3","state":"running"}`)
	for _, size := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ctx := context.Background()
			batch := make([]messages.Message, size)
			b.ReportAllocs()
			for b.Loop() {
				now := time.Now()
				for i := range batch {
					batch[i] = messages.Message{Payload: payload, Timestamp: now}
				}
				if n, err := s.Append(ctx, "bench", batch); err != nil || n != size {
					b.Fatalf("Append = %d, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// The idempotency record lives in Valkey beside the stream, with the
// window as its expiry, so a second store (another relay, or this one after
// a restart) sees the key.
func TestValkeyStoreIdempotencyAcrossStores(t *testing.T) {
	srv := valkeytest.Start(t)
	a := openValkey(t, srv, ValkeyConfig{})
	b := openValkey(t, srv, ValkeyConfig{})
	first := appendAll(t, a, "shared", []messages.Message{keyed(0, "retry-me", "h")})[0]
	again := appendAll(t, b, "shared", []messages.Message{keyed(1, "retry-me", "h")})[0]
	assertRepeat(t, "repeat through another store", again, first, false)

	raw := rawClient(t, srv)
	key := "topic:{shared}:idem:" + idemHash("retry-me")
	pttl, err := raw.Do(testCtx(t), raw.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil || pttl <= 0 || pttl > messages.IdempotencyWindow.Milliseconds() {
		t.Fatalf("PTTL %s = %d, %v; want within the 10 min window", key, pttl, err)
	}
	n, err := raw.Do(testCtx(t), raw.B().Xlen().Key("topic:{shared}:stream").Build()).AsInt64()
	if err != nil || n != 1 {
		t.Fatalf("XLEN = %d, %v; want 1", n, err)
	}
}

// Deleting a stream ends its incarnation: the next append starts a new
// epoch, and a resume point from the old one is Truncated. A stream written
// before epochs existed is adopted without reporting loss.
func TestValkeyStoreEpochFollowsTheStream(t *testing.T) {
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{})
	raw := rawClient(t, srv)
	ctx := testCtx(t)
	old := appendAll(t, s, "reborn", msgs(0, 3))
	before := mustTip(t, s, "reborn")
	if err := raw.Do(ctx, raw.B().Del().Key("topic:{reborn}:stream").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if p := mustRange(t, s, "reborn", old[1].ID, 10); !p.Truncated || len(p.Messages) != 0 {
		t.Errorf("Range after an old id with the stream deleted = %+v; want Truncated", p)
	}
	fresh := appendAll(t, s, "reborn", msgs(3, 2))
	after := mustTip(t, s, "reborn")
	if after.Epoch == before.Epoch || after.Last != fresh[1].ID {
		t.Errorf("Tip after the stream was recreated = %+v (before %+v); want a new epoch and last %s", after, before, fresh[1].ID)
	}
	p := mustRange(t, s, "reborn", old[1].ID, 10)
	if !p.Truncated || p.Epoch != after.Epoch {
		t.Errorf("Range after an id of the old incarnation: Truncated=%v epoch %q; want true, %q", p.Truncated, p.Epoch, after.Epoch)
	}
	assertIDs(t, "Range after an old id", p.Messages, idsOf(fresh))

	// A stream without a meta hash (written by an older relay).
	id, err := raw.Do(ctx, raw.B().Xadd().Key("topic:{legacy}:stream").Id("*").FieldValue().
		FieldValue("payload", "{}").FieldValue("timestamp", messages.FormatTime(time.Now())).Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	legacyID, _ := messages.ParseID(id)
	appendAll(t, s, "legacy", msgs(0, 1))
	if p := mustRange(t, s, "legacy", legacyID, 10); p.Truncated || len(p.Messages) != 1 || p.Epoch == "" {
		t.Errorf("Range on an adopted stream = %+v; want 1 message, not Truncated, an epoch", p)
	}
}

// Every append sets the stream's and the meta hash's expiry to the
// retention plus margin; without a retention nothing expires.
func TestValkeyStoreStreamExpiry(t *testing.T) {
	srv := valkeytest.Start(t)
	raw := rawClient(t, srv)
	ctx := testCtx(t)
	pttl := func(key string) int64 {
		t.Helper()
		n, err := raw.Do(ctx, raw.B().Pttl().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatalf("PTTL %s: %v", key, err)
		}
		return n
	}
	s := openValkey(t, srv, ValkeyConfig{Limits: Limits{Retention: time.Hour}})
	appendAll(t, s, "expiring", msgs(0, 1))
	expiry, _ := streamExpiry(time.Hour)
	want := expiry.Milliseconds()
	for _, key := range []string{"topic:{expiring}:stream", "topic:{expiring}:meta"} {
		if got := pttl(key); got <= want-60_000 || got > want {
			t.Errorf("PTTL %s = %d ms, want about %d", key, got, want)
		}
	}
	forever := openValkey(t, srv, ValkeyConfig{})
	appendAll(t, forever, "forever", msgs(0, 1))
	for _, key := range []string{"topic:{forever}:stream", "topic:{forever}:meta"} {
		if got := pttl(key); got != -1 {
			t.Errorf("PTTL %s = %d without a retention, want -1 (no expiry)", key, got)
		}
	}
}

// WaitReplicas with no replica to confirm: the append is not acknowledged
// (ErrUnavailable, after the wait's timeout) although the master has it; a
// retry with the same Idempotency-Key stores nothing new.
func TestValkeyStoreWaitReplicasUnconfirmed(t *testing.T) {
	srv := valkeytest.Start(t)
	const timeout = 400 * time.Millisecond
	s := openValkey(t, srv, ValkeyConfig{WaitReplicas: 1, Timeout: timeout})
	batch := []messages.Message{keyed(0, "k", "h")}
	start := time.Now()
	n, err := s.Append(testCtx(t), "waiting", batch)
	if n != 0 || !errors.Is(err, messages.ErrUnavailable) || !strings.Contains(err.Error(), "WAIT") {
		t.Fatalf("Append with WaitReplicas 1 and no replica = %d, %v; want 0, ErrUnavailable (WAIT)", n, err)
	}
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("the unconfirmed append took %s, timeout %s", d, timeout)
	}
	stored := mustRange(t, s, "waiting", messages.ID{}, 10).Messages
	if len(stored) != 1 {
		t.Fatalf("the master holds %d messages, want 1", len(stored))
	}
	// A retry stores nothing new, and is not acknowledged either while no
	// replica confirms.
	retry := []messages.Message{keyed(1, "k", "h")}
	if n, err := s.Append(testCtx(t), "waiting", retry); n != 0 || !errors.Is(err, messages.ErrUnavailable) {
		t.Fatalf("retry = %d, %v; want 0, ErrUnavailable", n, err)
	}
	if got := mustRange(t, s, "waiting", messages.ID{}, 10).Messages; len(got) != 1 {
		t.Fatalf("after the retry the master holds %d messages, want 1", len(got))
	}
}

// Close waits for an AppendAsync under WaitReplicas, as for every other
// append: the client is not closed under it, and its caller is answered
// before Close returns.
func TestValkeyStoreCloseWaitsForWaitReplicasAppend(t *testing.T) {
	srv := valkeytest.Start(t)
	s, err := NewValkeyStore(context.Background(), ValkeyConfig{Addrs: []string{srv.Addr()}, Password: srv.Password(), WaitReplicas: 1, Timeout: time.Second}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var answered atomic.Bool
	s.AppendAsync(testCtx(t), "closing", []messages.Message{keyed(0, "k", "h")}, time.Time{}, func(int, error) { answered.Store(true) })
	time.Sleep(100 * time.Millisecond) // the script has run; WAIT waits for a replica
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !answered.Load() {
		t.Fatal("Close returned before the append under WaitReplicas was answered")
	}
}

// With a replica attached, WaitReplicas 1 acknowledges as usual.
func TestValkeyStoreWaitReplicasConfirmed(t *testing.T) {
	master := valkeytest.Start(t)
	host, port, _ := strings.Cut(master.Addr(), ":")
	valkeytest.Start(t, valkeytest.WithArgs("--replicaof", host, port))
	s := openValkey(t, master, ValkeyConfig{WaitReplicas: 1, Timeout: 2 * time.Second})
	eventually(t, 10*time.Second, func() string {
		if _, err := s.Append(testCtx(t), "warm-up", msgs(0, 1)); err != nil {
			return "the replica has not synced: " + err.Error()
		}
		return ""
	})
	for i := range 5 {
		appendAll(t, s, "sync", msgs(i, 3))
	}
	if got := len(mustRange(t, s, "sync", messages.ID{}, 100).Messages); got != 15 {
		t.Fatalf("%d messages stored, want 15", got)
	}
}

// TestValkeyStoreAppendAsyncRounds: batches queued together share a round
// (one pipeline) and each is answered as Append would answer it alone: a
// topic whose key has the wrong type fails with the server's reason while
// the others in its round are stored; after SCRIPT FLUSH (a restarted
// server) the round's EVALSHA is sent again as EVAL and stores.
func TestValkeyStoreAppendAsyncRounds(t *testing.T) {
	s, raw, ctx := openWithWrongTopic(t)
	for round, flush := range []bool{false, true} {
		if flush {
			if err := raw.Do(ctx, raw.B().ScriptFlush().Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
		type result struct {
			topic string
			batch []messages.Message
			n     int
			err   error
		}
		got := make(chan result, 3)
		for _, topic := range []string{"good-a", "wrong", "good-b"} {
			batch := msgs(round*2, 2)
			AppendAsync(s, ctx, topic, batch, time.Now().Add(5*time.Second), func(n int, err error) { got <- result{topic, batch, n, err} })
		}
		for range 3 {
			r := <-got
			if r.topic == "wrong" {
				if r.n != 0 || !errors.Is(r.err, messages.ErrUnavailable) || !strings.Contains(r.err.Error(), "WRONGTYPE") {
					t.Errorf("round %d: %s = %d, %v; want 0 and ErrUnavailable with WRONGTYPE", round, r.topic, r.n, r.err)
				}
				continue
			}
			if r.n != 2 || r.err != nil || r.batch[0].ID.IsZero() || !r.batch[0].ID.Less(r.batch[1].ID) {
				t.Errorf("round %d: %s = %d, %v, ids %s %s; want both stored", round, r.topic, r.n, r.err, r.batch[0].ID, r.batch[1].ID)
			}
		}
	}
	for _, topic := range []string{"good-a", "good-b"} {
		if got := len(mustRange(t, s, topic, messages.ID{}, 100).Messages); got != 4 {
			t.Errorf("%s holds %d messages, want 4", topic, got)
		}
	}
}

// TestValkeyStoreAppendAsyncExpiredBatch: in one round, a batch whose
// deadline passed while it waited, or whose context was canceled, is
// answered with ErrUnavailable and not sent, and does not cut short the
// batch of another topic beside it.
func TestValkeyStoreAppendAsyncExpiredBatch(t *testing.T) {
	s := openValkey(t, valkeytest.Start(t), ValkeyConfig{})
	ctx := testCtx(t)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	results := map[string]error{}
	counts := map[string]int{}
	var round []*appendCall
	for _, c := range []struct {
		topic    string
		ctx      context.Context
		deadline time.Time
		want     error
	}{
		{"late", ctx, time.Now().Add(-time.Second), context.DeadlineExceeded},
		{"canceled", canceled, time.Now().Add(5 * time.Second), context.Canceled},
		{"timely", ctx, time.Now().Add(5 * time.Second), nil},
	} {
		a, err := s.prepareAppend(c.ctx, c.topic, msgs(0, 2))
		if err != nil {
			t.Fatal(err)
		}
		a.ctx, a.deadline, a.done = c.ctx, c.deadline, func(n int, err error) { counts[c.topic], results[c.topic] = n, err }
		round = append(round, a)
		if c.want == nil {
			continue
		}
		defer func() {
			if err := results[c.topic]; counts[c.topic] != 0 || !errors.Is(err, messages.ErrUnavailable) || !errors.Is(err, c.want) {
				t.Errorf("%s batch = %d, %v; want 0 and ErrUnavailable wrapping %v", c.topic, counts[c.topic], err, c.want)
			}
			if n := len(mustRange(t, s, c.topic, messages.ID{}, 10).Messages); n != 0 {
				t.Errorf("the %s batch stored %d messages", c.topic, n)
			}
		}()
	}
	s.commit(round) // one round, as commitRounds would send it
	if counts["timely"] != 2 || results["timely"] != nil {
		t.Errorf("batch beside it = %d, %v; want 2, nil", counts["timely"], results["timely"])
	}
}

// A publish the relay gave up on (503) is not stored when the server gets
// to it later: a server stalled (SIGSTOP here; a long fork or a slow disk
// in production) ran the queued append when it resumed, so messages
// answered 503 were stored and delivered. The append script now refuses
// past the call's deadline, on the server's clock.
func TestValkeyAppendPastItsDeadlineStoresNothing(t *testing.T) {
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	appendAll(t, s, "late", msgs(0, 1)) // its reply tells the server's clock
	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	if _, err := s.Append(ctx, "late", msgs(1, 1)); !errors.Is(err, messages.ErrUnavailable) {
		t.Fatalf("append to a stalled server: %v; want ErrUnavailable", err)
	}
	done := make(chan error, 1)
	s.AppendAsync(ctx, "late", msgs(2, 1), time.Time{}, func(_ int, err error) { done <- err })
	if err := <-done; !errors.Is(err, messages.ErrUnavailable) {
		t.Fatalf("async append to a stalled server: %v; want ErrUnavailable", err)
	}
	srv.Resume()
	resumed = true
	time.Sleep(300 * time.Millisecond) // the server runs what was queued
	appendAll(t, s, "late", msgs(3, 1))
	page, err := s.Range(ctx, "late", messages.ID{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range page.Messages {
		got = append(got, string(m.Payload))
	}
	if len(got) != 2 {
		t.Fatalf("stored after the stall: %v; want the first and the last only (the two answered with errors were stored)", got)
	}
}

// The clock offset is the largest of the last minute: a reply from a
// server whose clock is behind (another node of a cluster, a replica
// promoted on another host) set one offset for the whole store, and every
// append to a server ahead of it was then refused as late.
func TestValkeyClockOffsetFromASlowerServerRefusesNothing(t *testing.T) {
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{})
	ctx := context.Background()
	appendAll(t, s, "a", msgs(0, 1)) // measures this server's offset
	for i := range 10 {
		now := time.Now()
		s.noteClock(now.UnixMilli()-3000, now, now.Add(time.Millisecond)) // a server 3 s behind
		if _, err := s.Append(ctx, "a", msgs(i+1, 1)); err != nil {
			t.Fatalf("append %d after a reply from a server 3 s behind: %v", i, err)
		}
	}
}

// The offset in force is the largest of the last one to two minutes, not
// the largest measured until it lapses to the first later sample: a peak
// measured 61 s ago, with this server's later samples just below it, gave
// way to one from a server 3 s behind, and this server's appends were
// refused as late.
func TestValkeyClockPeakOutlivesOneLaterSample(t *testing.T) {
	srv := valkeytest.Start(t)
	s := openValkey(t, srv, ValkeyConfig{})
	ctx := context.Background()
	now := time.Now()
	old := now.Add(-61 * time.Second)
	s.noteClock(old.Add(20*time.Millisecond).UnixMilli()+20, old, old.Add(40*time.Millisecond)) // this server, a high sample
	mid := now.Add(-30 * time.Second)
	s.noteClock(mid.UnixMilli()+19, mid, mid)                         // this server, just below
	s.noteClock(now.UnixMilli()-3000, now, now.Add(time.Millisecond)) // a server 3 s behind
	if _, err := s.Append(ctx, "a", msgs(0, 1)); err != nil {
		t.Fatalf("append to this server refused: %v (offset %d)", err, s.clockOffset.Load())
	}
}
