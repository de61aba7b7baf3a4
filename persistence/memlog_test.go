package persistence

import (
	"testing"

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
			if got := l.At(i).ID; got != want[i].ID {
				t.Fatalf("%s: At(%d) = %s, want %s", step, i, got, want[i].ID)
			}
		}
	}
	next := uint64(1)
	add := func(n int) {
		for range n {
			m := messages.Message{ID: messages.ID{Ms: next}}
			next++
			l.Append(m)
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
	if i := l.Search(func(m *messages.Message) bool { return m.ID.Ms > 4000 }); l.At(i).ID.Ms != 4001 {
		t.Fatalf("Search found %s", l.At(i).ID)
	}
	l.Filter(func(m *messages.Message) bool { return m.ID.Ms%2 == 0 })
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
