package persistence

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/heaptest"
	"github.com/pulsar-relay/relay/internal/slab"
	"github.com/pulsar-relay/relay/messages"
)

// TestMsgLog drives a msgLog across chunk boundaries against a plain slice.
func TestMsgLog(t *testing.T) {
	var l msgLog
	var want []messages.Message
	check := func(step string) {
		t.Helper()
		if l.Len() != len(want) {
			t.Fatalf("%s: Len %d, want %d", step, l.Len(), len(want))
		}
		for i := range want {
			if got := l.At(i).id; got != want[i].ID {
				t.Fatalf("%s: At(%d) = %s, want %s", step, i, got, want[i].ID)
			}
		}
	}
	next := uint64(1)
	add := func(n int) {
		for range n {
			m := messages.Message{ID: messages.ID{Ms: next}}
			next++
			l.Append(&m)
			want = append(want, m)
		}
	}
	add(logChunk + 1)
	if c := cap(l.chunks[1]); c != logChunk {
		t.Fatalf("a chunk after the first was made with room for %d messages, want %d", c, logChunk)
	}
	add(3000 - logChunk - 1)
	check("append 3000")
	l.DropFront(1)
	want = want[1:]
	check("drop 1")
	l.DropFront(2500) // across two chunk boundaries
	want = want[2500:]
	check("drop 2500")
	add(5000)
	check("append 5000 more")
	if i := l.After(messages.ID{Ms: 4000}); l.At(i).id.Ms != 4001 {
		t.Fatalf("After(4000-0) found %s", l.At(i).id)
	}
	if i := l.From(messages.ID{Ms: 4000}); l.At(i).id.Ms != 4000 {
		t.Fatalf("From(4000-0) found %s", l.At(i).id)
	}
	if i := l.After(want[len(want)-1].ID); i != l.Len() {
		t.Fatalf("After(the last id) = %d, want Len %d", i, l.Len())
	}
	l.Filter(func(e *logEntry) bool { return e.id.Ms%2 == 0 })
	var even []messages.Message
	for _, m := range want {
		if m.ID.Ms%2 == 0 {
			even = append(even, m)
		}
	}
	want = even
	check("filter")
	l.DropFront(l.Len())
	want = nil
	check("drop all")
	if l.chunks != nil {
		t.Fatal("an empty log keeps its chunks")
	}
	add(10)
	check("append after empty")
}

// BenchmarkMemoryStoreAppend: one message per Append onto one topic, as a
// topic actor under load writes (the store's part of a publish).
func BenchmarkMemoryStoreAppend(b *testing.B) {
	s := NewMemoryStore(Limits{})
	defer s.Close()
	batch := make([]messages.Message, 1)
	b.ReportAllocs()
	for b.Loop() {
		batch[0] = messages.Message{Payload: []byte(`{"a":1}`)}
		if _, err := s.Append(b.Context(), "bench", batch); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMsgLogEntries: what a log gives back is what was appended, whatever
// the caller does with its buffers afterwards: a small payload is copied
// (a publish's body buffer may be reused), a reader cannot append into a
// neighbour's bytes, and times come back equal, in UTC.
func TestMsgLogEntries(t *testing.T) {
	var l msgLog
	body := []byte(`{"topic":"t","payload":{"a":1}}`)
	at := bytes.Index(body, []byte(`{"a"`))
	payload := body[at : at+7]
	ts := time.Date(2026, 12, 3, 7, 30, 0, 123456789, time.FixedZone("X", 3600))
	in := messages.Message{
		ID: messages.ID{Ms: 1}, Payload: payload, Timestamp: ts,
		Metadata: map[string]string{"k": "v"}, ExpiresAt: ts.Add(time.Minute),
		IdempotencyKey: "key", RequestHash: "hash",
	}
	l.Append(&in)
	second := messages.Message{ID: messages.ID{Ms: 2}, Payload: []byte(`{"b":2}`), Timestamp: ts}
	l.Append(&second)
	copy(body, bytes.Repeat([]byte("x"), len(body))) // the caller reuses its buffer

	got := l.At(0).message("t")
	if string(got.Payload) != `{"a":1}` {
		t.Fatalf("payload after the caller reused its buffer: %s", got.Payload)
	}
	_ = append(got.Payload, `garbage`...) // a careless reader
	if p := l.At(1).message("t").Payload; string(p) != `{"b":2}` {
		t.Fatalf("an append to one payload wrote into the next: %s", p)
	}
	if !got.Timestamp.Equal(ts) || got.Timestamp.Location() != time.UTC {
		t.Errorf("Timestamp = %v, want %v in UTC", got.Timestamp, ts)
	}
	if !got.ExpiresAt.Equal(in.ExpiresAt) {
		t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, in.ExpiresAt)
	}
	if !l.At(1).message("t").ExpiresAt.IsZero() {
		t.Errorf("a message without ttl came back with ExpiresAt set")
	}
	if got.Topic != "t" || got.ID != in.ID || got.Metadata["k"] != "v" {
		t.Errorf("message = %+v", got)
	}
	if got.IdempotencyKey != "" || got.RequestHash != "" {
		t.Errorf("idempotency fields stored with the message: %q %q", got.IdempotencyKey, got.RequestHash)
	}
	if l.At(0).expired(ts.Add(time.Minute).UnixNano()-1) || !l.At(0).expired(ts.Add(time.Minute).UnixNano()) {
		t.Errorf("expired does not turn at ExpiresAt")
	}

	large := bytes.Repeat([]byte("y"), slab.MaxCopy+1)
	large[0], large[len(large)-1] = '{', '}'
	l.Append(&messages.Message{ID: messages.ID{Ms: 3}, Payload: large, Timestamp: ts})
	if p := l.At(2).payload; &p[0] != &large[0] {
		t.Errorf("a large payload was copied; the log keeps the caller's")
	}
	if l.Bytes() != topicOverhead+msgBytes(&in)+msgBytes(&second)+int64(msgOverhead+len(large)) {
		t.Errorf("Bytes = %d", l.Bytes())
	}
}

// TestMemoryStoreHeapPerMessage: what one more stored message adds to the
// heap, each payload cut out of its own request-sized buffer as a publish
// hands it over: 282 bytes when the store kept messages.Message values
// and the request bodies, 192 with 64-byte entries still keeping the
// bodies, 152 now that it copies the payload into its blocks
// (bench/NOTES.md, item 55).
func TestMemoryStoreHeapPerMessage(t *testing.T) {
	const n = 20000
	s := NewMemoryStore(Limits{})
	defer s.Close()
	ctx := context.Background()
	batch := make([]messages.Message, 1)
	per := heaptest.PerOp(n, func(i int) {
		batch[0] = messages.Message{Payload: heaptest.RequestPayload(), Timestamp: time.Unix(0, int64(i)+1)}
		if _, err := s.Append(ctx, "heap", batch); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f heap bytes per stored message (payload %d)", per, heaptest.PayloadLen)
	if per > 180 {
		t.Errorf("%.0f heap bytes per stored message of a %d-byte payload, want at most 180", per, heaptest.PayloadLen)
	}
}

// TestMsgLogBlocksFollowWhatItHolds: a busy log copies payloads into
// blocks of slab.MaxBlock bytes; trimmed down to a message, its next block
// is small again (the log hands its Bytes to slab.Copy), so blocks never
// hold much more than the log is counted for.
func TestMsgLogBlocksFollowWhatItHolds(t *testing.T) {
	var l msgLog
	p := []byte(`{"pad":"` + strings.Repeat("x", 90) + `"}`)
	id := uint64(0)
	add := func() {
		id++
		l.Append(&messages.Message{ID: messages.ID{Ms: id}, Payload: p, Timestamp: time.Now()})
	}
	for range 2000 {
		add()
	}
	if l.slab.Room() != slab.MaxBlock {
		t.Fatalf("a log of 2000 messages appends into a block of %d bytes, want %d", l.slab.Room(), slab.MaxBlock)
	}
	l.DropFront(l.Len() - 1)
	for l.slab.Room() == slab.MaxBlock {
		if id > 4000 {
			t.Fatal("the large block never filled")
		}
		add()
		l.DropFront(1)
	}
	if l.slab.Room() > 2*slab.MinBlock || int64(l.slab.Room()) > l.Bytes() {
		t.Fatalf("holding %d bytes (%d messages), the log made a block of %d", l.Bytes(), l.Len(), l.slab.Room())
	}
}

// msgBytes is what the log counts m for once stored.
func msgBytes(m *messages.Message) int64 { return entryBytes(len(m.Payload), m.Metadata) }

// TestMemoryStoreCountsWhatATopicTakes: a topic holding one small message
// takes its map entry, its state and its log's first chunk and block
// besides the message: the byte budget (Bytes) counts at least what the
// heap keeps, so that many topics of a message each cannot hold several
// times RELAY_MEMORY_STORE_BYTES.
func TestMemoryStoreCountsWhatATopicTakes(t *testing.T) {
	s := NewMemoryStore(Limits{})
	defer s.Close()
	ctx := context.Background()
	const n = 20_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("topic-%06d", i)
	}
	batch := make([]messages.Message, 1)
	before := s.Bytes()
	per := heaptest.PerOp(n, func(i int) {
		batch[0] = messages.Message{Payload: heaptest.RequestPayload(), Timestamp: time.Unix(0, int64(i)+1)}
		if _, err := s.Append(ctx, names[i], batch); err != nil {
			t.Fatal(err)
		}
	})
	counted := float64(s.Bytes()-before) / n
	t.Logf("%.0f heap bytes per one-message topic, %.0f counted", per, counted)
	if counted < per {
		t.Errorf("a one-message topic keeps %.0f heap bytes but is counted for %.0f", per, counted)
	}
}
