package persistence

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// trimSlack is how far above Limits.MaxMessages a topic may stay after
// trimming. Valkey trims with "MAXLEN ~", which only drops whole radix-tree
// nodes of the stream; a node holds at most stream-node-max-entries entries
// (default 100), so up to cap+99 entries remain. The memory store trims
// exactly and stays within any slack.
const trimSlack = 100

// openFunc opens an empty store with the given limits for one test; it
// registers its own cleanup.
type openFunc func(t *testing.T, limits Limits) Store

// runConformance checks the Store contract on the stores open returns.
// Every Store implementation runs it.
func runConformance(t *testing.T, open openFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open openFunc)
	}{
		{"AppendAssignsIncreasingIDs", testAppendAssignsIncreasingIDs},
		{"BatchAppend", testBatchAppend},
		{"EmptyBatch", testEmptyBatch},
		{"RangeAfterIsExclusive", testRangeAfterIsExclusive},
		{"RangePaging", testRangePaging},
		{"RangeMissingTopic", testRangeMissingTopic},
		{"RevRange", testRevRange},
		{"Tips", testTips},
		{"TTLHidesExpired", testTTLHidesExpired},
		{"TrimByCount", testTrimByCount},
		{"LimitsPerAppend", testLimitsPerAppend},
		{"LimitsHoldBetweenAppends", testLimitsHoldBetweenAppends},
		{"RetentionToForever", testRetentionToForever},
		{"TrimByAge", testTrimByAge},
		{"RetentionElapses", testRetentionElapses},
		{"TopicsAreIndependent", testTopicsAreIndependent},
		{"ConcurrentAppends", testConcurrentAppends},
		{"AppendAsync", testAppendAsync},
		{"RoundTrip", testRoundTrip},
		{"Ping", testPing},
		{"ClosedStoreIsUnavailable", testClosedStoreIsUnavailable},
		{"EpochTruncates", testEpochTruncates},
		{"QuietTopicDisappears", testQuietTopicDisappears},
		{"BoundedScan", testBoundedScan},
		{"IdempotentRepeat", testIdempotentRepeat},
		{"IdempotentRepeatInBatch", testIdempotentRepeatInBatch},
		{"IdempotentConflict", testIdempotentConflict},
		{"IdempotencyExpires", testIdempotencyExpires},
		{"IdempotentConcurrent", testIdempotentConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// eventually polls cond every 10 ms until it returns "" or d passes, then
// fails the test with cond's last complaint.
func eventually(t testing.TB, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitForMillisecondAfter returns once the wall clock (which the stores and
// the local Valkey servers also read to make ids) is past unix millisecond
// ms, so that the next append gets an id in a later millisecond.
func waitForMillisecondAfter(t testing.TB, ms uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for uint64(time.Now().UnixMilli()) <= ms {
		if time.Now().After(deadline) {
			t.Fatalf("the clock did not pass millisecond %d (now %d)", ms, time.Now().UnixMilli())
		}
		time.Sleep(time.Millisecond)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// msg returns a message accepted now with payload {"n":i}.
func msg(i int) messages.Message {
	return messages.Message{
		Payload:   []byte(fmt.Sprintf(`{"n":%d}`, i)),
		Timestamp: time.Now().UTC(),
	}
}

func msgs(from, n int) []messages.Message {
	out := make([]messages.Message, n)
	for i := range out {
		out[i] = msg(from + i)
	}
	return out
}

// appendAll appends batch and fails the test unless all of it was stored.
func appendAll(t *testing.T, s Store, topic string, batch []messages.Message) []messages.Message {
	t.Helper()
	n, err := s.Append(testCtx(t), topic, batch)
	if err != nil || n != len(batch) {
		t.Fatalf("Append(%q, %d messages) = %d, %v; want %d, nil", topic, len(batch), n, err, len(batch))
	}
	return batch
}

// appendEach appends n messages one call at a time.
func appendEach(t *testing.T, s Store, topic string, n int) []messages.Message {
	t.Helper()
	out := make([]messages.Message, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, appendAll(t, s, topic, []messages.Message{msg(i)})...)
	}
	return out
}

func idsOf(ms []messages.Message) []messages.ID {
	out := make([]messages.ID, len(ms))
	for i := range ms {
		out[i] = ms[i].ID
	}
	return out
}

func mustRange(t *testing.T, s Store, topic string, after messages.ID, limit int) Page {
	t.Helper()
	p, err := s.Range(testCtx(t), topic, after, limit)
	if err != nil {
		t.Fatalf("Range(%q, %s, %d): %v", topic, after, limit, err)
	}
	return p
}

func mustRevRange(t *testing.T, s Store, topic string, before messages.ID, limit int) []messages.Message {
	t.Helper()
	p, err := s.RevRange(testCtx(t), topic, before, limit)
	if err != nil {
		t.Fatalf("RevRange(%q, %s, %d): %v", topic, before, limit, err)
	}
	return p.Messages
}

func assertIDs(t *testing.T, what string, got []messages.Message, want []messages.ID) {
	t.Helper()
	g := idsOf(got)
	if len(g) != len(want) {
		t.Fatalf("%s: got %d messages %v, want %d %v", what, len(g), g, len(want), want)
	}
	for i := range g {
		if g[i] != want[i] {
			t.Fatalf("%s: message %d is %s, want %s (got %v, want %v)", what, i, g[i], want[i], g, want)
		}
	}
}

func assertIncreasing(t *testing.T, ids []messages.ID) {
	t.Helper()
	for i := 1; i < len(ids); i++ {
		if !ids[i-1].Less(ids[i]) {
			t.Fatalf("ids not strictly increasing at %d: %s then %s", i, ids[i-1], ids[i])
		}
	}
}

func reverse(ids []messages.ID) []messages.ID {
	out := make([]messages.ID, len(ids))
	for i := range ids {
		out[len(ids)-1-i] = ids[i]
	}
	return out
}

var idPattern = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

func testAppendAssignsIncreasingIDs(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	before := time.Now()
	got := appendEach(t, s, "ids", 20)
	after := time.Now()
	ids := idsOf(got)
	assertIncreasing(t, ids)
	for _, m := range got {
		if m.Topic != "ids" {
			t.Errorf("Append set Topic %q, want %q", m.Topic, "ids")
		}
		text := m.ID.String()
		if !idPattern.MatchString(text) {
			t.Errorf("id %q is not <ms>-<seq>", text)
		}
		if back, err := messages.ParseID(text); err != nil || back != m.ID {
			t.Errorf("ParseID(%q) = %v, %v; want %v", text, back, err, m.ID)
		}
		// The millisecond is a clock reading taken while appending (the
		// server's or the message's): allow for some clock difference.
		ms := time.UnixMilli(int64(m.ID.Ms))
		if ms.Before(before.Add(-time.Minute)) || ms.After(after.Add(time.Minute)) {
			t.Errorf("id %s: millisecond %s is far from the append time %s", m.ID, ms, before)
		}
	}
}

func testBatchAppend(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	batch := appendAll(t, s, "batch", msgs(0, 10))
	ids := idsOf(batch)
	for i, id := range ids {
		if id.IsZero() {
			t.Fatalf("message %d has no id after Append", i)
		}
	}
	assertIncreasing(t, ids)
	more := appendAll(t, s, "batch", msgs(10, 5))
	if !ids[len(ids)-1].Less(more[0].ID) {
		t.Fatalf("second batch starts at %s, not after %s", more[0].ID, ids[len(ids)-1])
	}
	all := append(ids, idsOf(more)...)
	assertIDs(t, "Range after batches", mustRange(t, s, "batch", messages.ID{}, 100).Messages, all)
}

func testEmptyBatch(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	n, err := s.Append(testCtx(t), "empty", nil)
	if n != 0 || err != nil {
		t.Fatalf("Append(nil) = %d, %v; want 0, nil", n, err)
	}
}

func testRangeAfterIsExclusive(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	// Two batches in different milliseconds, so that ids[4] and ids[5] are
	// not adjacent and there is a point between them that is not an id.
	ids := idsOf(appendAll(t, s, "range", msgs(0, 5)))
	waitForMillisecondAfter(t, ids[4].Ms)
	ids = append(ids, idsOf(appendAll(t, s, "range", msgs(5, 5)))...)

	assertIDs(t, "after zero", mustRange(t, s, "range", messages.ID{}, 100).Messages, ids)
	assertIDs(t, "after ids[3], limit 3", mustRange(t, s, "range", ids[3], 3).Messages, ids[4:7])
	assertIDs(t, "after ids[8]", mustRange(t, s, "range", ids[8], 100).Messages, ids[9:])
	assertIDs(t, "after newest", mustRange(t, s, "range", ids[9], 100).Messages, nil)
	assertIDs(t, "limit 1", mustRange(t, s, "range", messages.ID{}, 1).Messages, ids[:1])
	// A point between two ids (not itself an id) starts at the next one.
	between := ids[4].Next()
	if !between.Less(ids[5]) {
		t.Fatalf("no point between ids[4] %s and ids[5] %s: the second batch shares the first's millisecond", ids[4], ids[5])
	}
	assertIDs(t, "after a non-id point", mustRange(t, s, "range", between, 100).Messages, ids[5:])
	if p := mustRange(t, s, "range", ids[2], 100); p.Truncated {
		t.Errorf("Range after a retained id reports Truncated with nothing trimmed")
	}
	if p := mustRange(t, s, "range", messages.ID{}, 100); p.Truncated {
		t.Errorf("Range after zero reports Truncated with nothing trimmed")
	}
}

func testRangePaging(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	ids := idsOf(appendAll(t, s, "paging", msgs(0, 23)))
	var got []messages.ID
	cursor := messages.ID{}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatalf("paging did not end")
		}
		p := mustRange(t, s, "paging", cursor, 5)
		if len(p.Messages) == 0 {
			break
		}
		if len(p.Messages) > 5 {
			t.Fatalf("page of %d messages, limit 5", len(p.Messages))
		}
		got = append(got, idsOf(p.Messages)...)
		cursor = p.Messages[len(p.Messages)-1].ID
	}
	if len(got) != len(ids) {
		t.Fatalf("paged %d messages, want %d", len(got), len(ids))
	}
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("paged id %d = %s, want %s", i, got[i], ids[i])
		}
	}
}

func testRangeMissingTopic(t *testing.T, open openFunc) {
	s := open(t, Limits{MaxMessages: 10, Retention: time.Hour})
	p := mustRange(t, s, "nothing-here", messages.ID{}, 10)
	if len(p.Messages) != 0 || p.Truncated {
		t.Fatalf("Range of a missing topic = %+v; want empty, not truncated", p)
	}
	if ms := mustRevRange(t, s, "nothing-here", messages.ID{}, 10); len(ms) != 0 {
		t.Fatalf("RevRange of a missing topic = %d messages", len(ms))
	}
}

func testRevRange(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	ids := idsOf(appendAll(t, s, "rev", msgs(0, 10)))
	rev := reverse(ids)

	assertIDs(t, "newest 3", mustRevRange(t, s, "rev", messages.ID{}, 3), rev[:3])
	assertIDs(t, "all", mustRevRange(t, s, "rev", messages.ID{}, 100), rev)
	assertIDs(t, "before ids[5]", mustRevRange(t, s, "rev", ids[5], 100), reverse(ids[:5]))
	assertIDs(t, "before ids[5], limit 2", mustRevRange(t, s, "rev", ids[5], 2), []messages.ID{ids[4], ids[3]})
	assertIDs(t, "before oldest", mustRevRange(t, s, "rev", ids[0], 100), nil)
}

func mustTip(t *testing.T, s Store, topic string) Tip {
	t.Helper()
	tips, err := s.Tips(testCtx(t), []string{topic})
	if err != nil {
		t.Fatalf("Tips(%q): %v", topic, err)
	}
	return tips[topic]
}

func testTips(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	ctx := testCtx(t)
	if tip := mustTip(t, s, "last"); tip != (Tip{}) {
		t.Fatalf("Tip of an empty topic = %+v; want zero", tip)
	}
	ids := idsOf(appendAll(t, s, "last", msgs(0, 3)))
	tip := mustTip(t, s, "last")
	if tip.Last != ids[2] || tip.Epoch == "" {
		t.Fatalf("Tip = %+v; want last %s and an epoch", tip, ids[2])
	}
	if p := mustRange(t, s, "last", messages.ID{}, 10); p.Epoch != tip.Epoch {
		t.Errorf("Range epoch %q, Tips epoch %q: one stream, one epoch", p.Epoch, tip.Epoch)
	}
	more := appendAll(t, s, "last", msgs(3, 1))
	other := appendAll(t, s, "other", msgs(4, 1))
	tips, err := s.Tips(ctx, []string{"last", "other", "none"})
	if err != nil {
		t.Fatalf("Tips: %v", err)
	}
	if tips["last"] != (Tip{Last: more[0].ID, Epoch: tip.Epoch}) {
		t.Errorf("Tip after another append = %+v; want %s in epoch %s", tips["last"], more[0].ID, tip.Epoch)
	}
	if tips["other"].Last != other[0].ID || tips["other"].Epoch == "" || tips["other"].Epoch == tip.Epoch {
		t.Errorf("Tip(other) = %+v; want %s with its own epoch", tips["other"], other[0].ID)
	}
	if tips["none"] != (Tip{}) {
		t.Errorf("Tip of a topic never written = %+v; want zero", tips["none"])
	}
}

// A resume point older than the stream's first id refers to history that
// is gone (another incarnation): Truncated. The zero id is "from the start".
func testEpochTruncates(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	ids := idsOf(appendAll(t, s, "epoch", msgs(0, 3)))
	old := messages.ID{Ms: 1}
	p := mustRange(t, s, "epoch", old, 10)
	if !p.Truncated {
		t.Errorf("Range after an id before the stream began: Truncated not set")
	}
	assertIDs(t, "Range after an id before the stream began", p.Messages, ids)
	if p := mustRange(t, s, "epoch", messages.ID{}, 10); p.Truncated || p.Epoch == "" {
		t.Errorf("Range after zero: Truncated=%v epoch %q; want false and an epoch", p.Truncated, p.Epoch)
	}
	if p := mustRange(t, s, "epoch", ids[0], 10); p.Truncated {
		t.Errorf("Range after the first id reports Truncated")
	}
	// No stream at all: the history a non-zero point referred to is gone.
	if p := mustRange(t, s, "no-stream", old, 10); !p.Truncated || len(p.Messages) != 0 || p.Epoch != "" {
		t.Errorf("Range of a missing topic after %s = %+v; want empty, Truncated, no epoch", old, p)
	}
}

// One call looks at a bounded number of entries: behind a long run of
// expired messages, Range and RevRange return a short page with Next, and
// following Next reaches the live messages.
func testBoundedScan(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	const expired = 2*MinScan + 500
	live := appendAll(t, s, "scan", msgs(0, 1))[0]
	for i := 0; i < expired; i += 500 {
		batch := msgs(i, 500)
		for j := range batch {
			batch[j].ExpiresAt = time.Now().Add(-time.Second)
		}
		appendAll(t, s, "scan", batch)
	}
	newest := appendAll(t, s, "scan", msgs(0, 1))[0]

	var got []messages.ID
	after, calls := live.ID, 0
	for ; calls < 10; calls++ {
		p := mustRange(t, s, "scan", after, 10)
		got = append(got, idsOf(p.Messages)...)
		if p.Next.IsZero() {
			break
		}
		if len(p.Messages) >= 10 {
			t.Fatalf("a full page carries Next %s", p.Next)
		}
		if !after.Less(p.Next) {
			t.Fatalf("Next %s does not move past %s", p.Next, after)
		}
		after = p.Next
	}
	if calls < 2 {
		t.Errorf("Range scanned %d expired entries in one call; want at most %d per call", expired, scanBudget(10))
	}
	assertIDs(t, "Range following Next", messagesOf(got), []messages.ID{newest.ID})

	got, calls = nil, 0
	before := newest.ID
	for ; calls < 10; calls++ {
		p, err := s.RevRange(testCtx(t), "scan", before, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, idsOf(p.Messages)...)
		if p.Next.IsZero() {
			break
		}
		before = p.Next
	}
	if calls < 2 {
		t.Errorf("RevRange scanned %d expired entries in one call", expired)
	}
	assertIDs(t, "RevRange following Next", messagesOf(got), []messages.ID{live.ID})
}

// Retention applies to a topic nobody writes to: once its messages are
// past the retention the topic itself goes (memory: the sweeper; Valkey: the
// stream's expiry), and a resume point on it reports Truncated.
func testQuietTopicDisappears(t *testing.T, open openFunc) {
	s := open(t, Limits{Retention: 300 * time.Millisecond})
	ids := idsOf(appendAll(t, s, "quiet", msgs(0, 3)))
	eventually(t, 10*time.Second, func() string {
		if tip := mustTip(t, s, "quiet"); tip != (Tip{}) {
			return fmt.Sprintf("the quiet topic is still there: %+v", tip)
		}
		return ""
	})
	if p := mustRange(t, s, "quiet", ids[0], 10); !p.Truncated || len(p.Messages) != 0 {
		t.Errorf("Range after an id of a vanished topic = %+v; want empty, Truncated", p)
	}
	// A new append starts afresh, with ids after the old ones: a reader's
	// resume point names no new message.
	again := appendAll(t, s, "quiet", msgs(3, 1))
	assertIDs(t, "after the topic came back", mustRange(t, s, "quiet", messages.ID{}, 10).Messages, idsOf(again))
	assertIDs(t, "after the old incarnation's last id", mustRange(t, s, "quiet", ids[2], 10).Messages, idsOf(again))
}

func messagesOf(ids []messages.ID) []messages.Message {
	out := make([]messages.Message, len(ids))
	for i := range ids {
		out[i].ID = ids[i]
	}
	return out
}

func testTTLHidesExpired(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	now := time.Now().UTC()
	batch := msgs(0, 4)
	batch[1].ExpiresAt = now.Add(-time.Second) // already expired
	batch[2].ExpiresAt = now.Add(time.Second)  // expires soon
	batch[3].ExpiresAt = now.Add(time.Hour)
	ids := idsOf(appendAll(t, s, "ttl", batch))

	assertIDs(t, "Range with one expired", mustRange(t, s, "ttl", messages.ID{}, 100).Messages,
		[]messages.ID{ids[0], ids[2], ids[3]})
	assertIDs(t, "RevRange with one expired", mustRevRange(t, s, "ttl", messages.ID{}, 100),
		[]messages.ID{ids[3], ids[2], ids[0]})
	// The limit counts returned messages, not skipped ones.
	assertIDs(t, "Range limit 2 across an expired one", mustRange(t, s, "ttl", messages.ID{}, 2).Messages,
		[]messages.ID{ids[0], ids[2]})

	eventually(t, 5*time.Second, func() string {
		got := idsOf(mustRange(t, s, "ttl", messages.ID{}, 100).Messages)
		if len(got) != 2 || got[0] != ids[0] || got[1] != ids[3] {
			return fmt.Sprintf("Range = %v, want %v once the 1 s ttl passed", got, []messages.ID{ids[0], ids[3]})
		}
		return ""
	})
	assertIDs(t, "RevRange after the ttl", mustRevRange(t, s, "ttl", messages.ID{}, 100), []messages.ID{ids[3], ids[0]})
	if p := mustRange(t, s, "ttl", messages.ID{}, 100); p.Truncated {
		t.Errorf("expiry alone reported as Truncated")
	}
}

func testTrimByCount(t *testing.T, open openFunc) {
	const limit = 10
	s := open(t, Limits{MaxMessages: limit})
	var ids []messages.ID
	for i := 0; i < 30; i++ {
		ids = append(ids, idsOf(appendAll(t, s, "trim", msgs(i*10, 10)))...)
	}
	p := mustRange(t, s, "trim", messages.ID{}, 1000)
	got := idsOf(p.Messages)
	if len(got) < limit || len(got) > limit+trimSlack {
		t.Fatalf("after 300 appends with MaxMessages %d the topic holds %d messages, want %d..%d",
			limit, len(got), limit, limit+trimSlack)
	}
	// What is kept is the newest, contiguous up to the last append.
	assertIDs(t, "retained messages", p.Messages, ids[len(ids)-len(got):])
	if !p.Truncated {
		t.Errorf("Range after zero with messages trimmed: Truncated not set")
	}
	if p := mustRange(t, s, "trim", ids[0], 1000); !p.Truncated || len(p.Messages) != len(got) {
		t.Errorf("Range after the first (trimmed) id: Truncated=%v, %d messages; want true, %d", p.Truncated, len(p.Messages), len(got))
	}
	oldestKept := ids[len(ids)-len(got)]
	if p := mustRange(t, s, "trim", oldestKept, 1000); p.Truncated || len(p.Messages) != len(got)-1 {
		t.Errorf("Range after the oldest kept id: Truncated=%v, %d messages; want false, %d", p.Truncated, len(p.Messages), len(got)-1)
	}
	if p := mustRange(t, s, "trim", ids[len(ids)-5], 1000); p.Truncated {
		t.Errorf("Range after a recent id reports Truncated although nothing after it was trimmed")
	}
	if tip := mustTip(t, s, "trim"); tip.Last != ids[len(ids)-1] {
		t.Errorf("Tip after trimming = %+v; want last %s", tip, ids[len(ids)-1])
	}
	assertIDs(t, "RevRange newest 3", mustRevRange(t, s, "trim", messages.ID{}, 3), reverse(ids[len(ids)-3:]))
}

func testTrimByAge(t *testing.T, open openFunc) {
	s := open(t, Limits{Retention: time.Hour})
	old := msgs(0, 3)
	for i := range old {
		old[i].Timestamp = time.Now().UTC().Add(-2 * time.Hour)
	}
	oldIDs := idsOf(appendAll(t, s, "age", old))
	newIDs := idsOf(appendAll(t, s, "age", msgs(3, 3)))

	p := mustRange(t, s, "age", messages.ID{}, 100)
	assertIDs(t, "Range after zero", p.Messages, newIDs)
	if !p.Truncated {
		t.Errorf("Range after zero with out-of-retention messages: Truncated not set")
	}
	p = mustRange(t, s, "age", oldIDs[0], 100)
	assertIDs(t, "Range after the first old id", p.Messages, newIDs)
	if !p.Truncated {
		t.Errorf("Range after an id whose successors aged out: Truncated not set")
	}
	p = mustRange(t, s, "age", oldIDs[2], 100)
	assertIDs(t, "Range after the last old id", p.Messages, newIDs)
	if p.Truncated {
		t.Errorf("Range after the last old id reports Truncated although nothing after it aged out")
	}
	assertIDs(t, "RevRange", mustRevRange(t, s, "age", messages.ID{}, 100), reverse(newIDs))
}

func testRetentionElapses(t *testing.T, open openFunc) {
	s := open(t, Limits{Retention: time.Second})
	ids := idsOf(appendAll(t, s, "elapse", msgs(0, 3)))
	assertIDs(t, "Range right after append", mustRange(t, s, "elapse", messages.ID{}, 100).Messages, ids)
	eventually(t, 5*time.Second, func() string {
		p := mustRange(t, s, "elapse", messages.ID{}, 100)
		rev := mustRevRange(t, s, "elapse", messages.ID{}, 100)
		if len(p.Messages) != 0 || len(rev) != 0 {
			return fmt.Sprintf("Range has %d and RevRange %d messages past a 1 s retention", len(p.Messages), len(rev))
		}
		return ""
	})
}

func testTopicsAreIndependent(t *testing.T, open openFunc) {
	s := open(t, Limits{MaxMessages: 5})
	a := idsOf(appendAll(t, s, "topic-a", msgs(0, 3)))
	var b []messages.ID
	for i := 0; i < 20; i++ { // trims topic-b, never topic-a
		b = append(b, idsOf(appendAll(t, s, "topic-b", msgs(i*10, 10)))...)
	}
	p := mustRange(t, s, "topic-a", messages.ID{}, 100)
	assertIDs(t, "topic-a", p.Messages, a)
	if p.Truncated {
		t.Errorf("topic-a reports Truncated after topic-b was trimmed")
	}
	for _, m := range p.Messages {
		if m.Topic != "topic-a" {
			t.Errorf("Range(topic-a) returned a message of topic %q", m.Topic)
		}
	}
	if tip := mustTip(t, s, "topic-a"); tip.Last != a[2] {
		t.Errorf("Tip(topic-a) = %+v; want %s", tip, a[2])
	}
	if tip := mustTip(t, s, "topic-b"); tip.Last != b[len(b)-1] {
		t.Errorf("Tip(topic-b) = %+v; want %s", tip, b[len(b)-1])
	}
	if ms := mustRevRange(t, s, "topic-b", messages.ID{}, 1); len(ms) != 1 || ms[0].ID != b[len(b)-1] || ms[0].Topic != "topic-b" {
		t.Errorf("RevRange(topic-b, 1) = %v, want %s", idsOf(ms), b[len(b)-1])
	}
}

func testConcurrentAppends(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	const writers, calls, per = 8, 25, 2
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		all  []messages.ID
		errs = make(chan error, writers)
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []messages.ID
			for c := 0; c < calls; c++ {
				batch := msgs(w*1000+c*per, per)
				n, err := s.Append(context.Background(), "busy", batch)
				if err != nil || n != per {
					errs <- fmt.Errorf("writer %d: Append = %d, %v", w, n, err)
					return
				}
				mine = append(mine, idsOf(batch)...)
			}
			for i := 1; i < len(mine); i++ {
				if !mine[i-1].Less(mine[i]) {
					errs <- fmt.Errorf("writer %d: ids not increasing: %s then %s", w, mine[i-1], mine[i])
					return
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make(map[messages.ID]bool, len(all))
	for _, id := range all {
		if seen[id] {
			t.Fatalf("id %s assigned twice", id)
		}
		seen[id] = true
	}
	got := idsOf(mustRange(t, s, "busy", messages.ID{}, 10000).Messages)
	if len(got) != writers*calls*per {
		t.Fatalf("Range returned %d messages, want %d", len(got), writers*calls*per)
	}
	assertIncreasing(t, got)
	for _, id := range got {
		if !seen[id] {
			t.Fatalf("Range returned id %s that no Append reported", id)
		}
	}
}

func testRoundTrip(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	ts := time.Date(2026, 11, 27, 1, 17, 27, 656581789, time.UTC)
	exp := time.Date(2099, 1, 2, 3, 4, 5, 123456789, time.UTC)
	in := []messages.Message{
		{
			Payload:   []byte(`{"text":"h\u00e9llo \"q\" \\ <>&\u2028","emoji":"😀","n":1.5e3,"nested":{"a":[1,null,true,{}]}}`),
			Timestamp: ts,
			Metadata:  map[string]string{"source": "galaxy", "weird key": "a\"b\nc", "unicode": "日本", "": "empty key"},
			ExpiresAt: exp,
		},
		{Payload: []byte(`{}`), Timestamp: ts.Add(time.Millisecond)},
	}
	want := []messages.Message{in[0], in[1]}
	want[0].Metadata = maps.Clone(in[0].Metadata)
	appendAll(t, s, "roundtrip", in)

	check := func(what string, got []messages.Message) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d messages, want %d", what, len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.ID != in[i].ID || g.Topic != "roundtrip" {
				t.Errorf("%s %d: id %s topic %q, want %s %q", what, i, g.ID, g.Topic, in[i].ID, "roundtrip")
			}
			if string(g.Payload) != string(w.Payload) {
				t.Errorf("%s %d: payload %s, want %s", what, i, g.Payload, w.Payload)
			}
			if !maps.Equal(g.Metadata, w.Metadata) {
				t.Errorf("%s %d: metadata %v, want %v", what, i, g.Metadata, w.Metadata)
			}
			// Timestamps round-trip to the microsecond (the wire precision).
			if !g.Timestamp.Truncate(time.Microsecond).Equal(w.Timestamp.Truncate(time.Microsecond)) {
				t.Errorf("%s %d: timestamp %s, want %s", what, i, g.Timestamp.Format(time.RFC3339Nano), w.Timestamp.Format(time.RFC3339Nano))
			}
			if !g.ExpiresAt.Truncate(time.Microsecond).Equal(w.ExpiresAt.Truncate(time.Microsecond)) {
				t.Errorf("%s %d: expires_at %s, want %s", what, i, g.ExpiresAt, w.ExpiresAt)
			}
			if g.Timestamp.Location() != time.UTC {
				t.Errorf("%s %d: timestamp in %s, want UTC", what, i, g.Timestamp.Location())
			}
		}
	}
	check("Range", mustRange(t, s, "roundtrip", messages.ID{}, 10).Messages)
	rev := mustRevRange(t, s, "roundtrip", messages.ID{}, 10)
	if len(rev) == 2 {
		rev[0], rev[1] = rev[1], rev[0]
	}
	check("RevRange", rev)
}

func testPing(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping on an open store: %v", err)
	}
}

func testClosedStoreIsUnavailable(t *testing.T, open openFunc) {
	s := open(t, Limits{})
	appendAll(t, s, "closing", msgs(0, 1))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n, err := s.Append(testCtx(t), "closing", msgs(1, 1)); n != 0 || !errors.Is(err, messages.ErrUnavailable) {
		t.Errorf("Append after Close = %d, %v; want 0, ErrUnavailable", n, err)
	}
	if err := s.Ping(testCtx(t)); err == nil {
		t.Errorf("Ping after Close succeeded")
	}
}
