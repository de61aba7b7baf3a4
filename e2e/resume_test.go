package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// publishers runs n goroutines publishing to topic until stop is closed or
// each has published max messages; it returns a wait function.
func publishers(r *relaytest.Relay, topic string, n, max int, stop <-chan struct{}) (wait func() int64) {
	return relaytest.Publishers(n, max, stop, func(p, i int) bool {
		r.MustPublish(topic, map[string]any{"p": p, "i": i})
		return true
	})
}

// readUntil reads message frames of topic until it has seen want, and fails
// on anything out of order or repeated.
func readIDs(t *testing.T, ctx context.Context, c *relaytest.Client, n int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		f := c.MustRead(ctx)
		if f.Type != "message" {
			t.Fatalf("unexpected frame %+v", f)
		}
		ids = append(ids, f.MessageID)
	}
	return ids
}

func storedAfter(t *testing.T, s persistence.Store, topic, after string) []string {
	t.Helper()
	id := messages.ID{}
	if after != "" {
		var err error
		if id, err = messages.ParseID(after); err != nil {
			t.Fatal(err)
		}
	}
	var out []string
	for {
		page, err := s.Range(context.Background(), topic, id, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			out = append(out, m.ID.String())
			id = m.ID
		}
		if len(page.Messages) < 1000 {
			return out
		}
	}
}

func TestResumeWhilePublishing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ring   int    // hot ring size: tiny forces replay from the store
		resume string // "since" or "offset"
	}{
		{"ring/since", 0, "since"},
		{"ring/offset", 0, "offset"},
		{"store/since", 20, "since"},
		{"store/offset", 20, "offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := relaytest.Start(t, relaytest.Options{Actors: actors.Config{HotTierMaxMessages: tc.ring}})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const topic = "resume"
			first := r.Dial(ctx)
			first.Subscribe(ctx, map[string]any{"topics": []string{topic}})
			stop := make(chan struct{})
			wait := publishers(r, topic, 8, 400, stop)
			seen := readIDs(t, ctx, first, 100)
			last := seen[len(seen)-1]
			first.Conn.CloseNow()

			time.Sleep(20 * time.Millisecond) // let publishing run on while nobody listens
			again := r.Dial(ctx)
			sub := map[string]any{"topics": []string{topic}}
			if tc.resume == "since" {
				sub["since"] = map[string]string{topic: last}
			} else {
				sub["offset"] = last
			}
			if f := again.Subscribe(ctx, sub); len(f.Truncated) != 0 {
				t.Fatalf("nothing was trimmed, yet truncated=%v", f.Truncated)
			}
			total := wait()
			close(stop)
			want := storedAfter(t, r.Store, topic, last)
			if int64(len(want)+len(seen)) != total {
				t.Fatalf("store holds %d after the resume point + %d seen, publishers got %d acks", len(want), len(seen), total)
			}
			got := readIDs(t, ctx, again, len(want))
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("resume message %d: got %s, want %s (gap or duplicate)", i, got[i], want[i])
				}
			}
			// Nothing more may arrive: a marker published now must be next.
			marker := r.MustPublish(topic, map[string]any{"marker": true})
			if f := again.MustRead(ctx); f.MessageID != marker {
				t.Fatalf("after the replay got %s, want the marker %s (duplicate delivery?)", f.MessageID, marker)
			}
		})
	}
}

func TestReplayEarliestAndTruncated(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{MaxMessages: 10})
	r := relaytest.Start(t, relaytest.Options{Store: store, Actors: actors.Config{StoreLimits: persistence.Limits{MaxMessages: 10}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ids []string
	for i := range 30 {
		ids = append(ids, r.MustPublish("replay", map[string]any{"i": i}))
	}

	c := r.Dial(ctx)
	if f := c.Subscribe(ctx, map[string]any{"topics": []string{"replay"}, "offset": "earliest"}); len(f.Truncated) != 0 {
		t.Fatalf("earliest is not a point; truncated=%v", f.Truncated)
	}
	if got := readIDs(t, ctx, c, 10); fmt.Sprint(got) != fmt.Sprint(ids[20:]) {
		t.Fatalf("earliest replay %v, want the 10 retained %v", got, ids[20:])
	}

	old := r.Dial(ctx)
	f := old.Subscribe(ctx, map[string]any{"topics": []string{"replay"}, "since": map[string]string{"replay": ids[2]}})
	if len(f.Truncated) != 1 || f.Truncated[0] != "replay" {
		t.Fatalf("resume from a trimmed point: truncated=%v, want [replay]", f.Truncated)
	}
	if got := readIDs(t, ctx, old, 10); fmt.Sprint(got) != fmt.Sprint(ids[20:]) {
		t.Fatalf("truncated replay %v, want the 10 retained %v", got, ids[20:])
	}

	recent := r.Dial(ctx)
	if f := recent.Subscribe(ctx, map[string]any{"topics": []string{"replay"}, "offset": ids[25]}); len(f.Truncated) != 0 {
		t.Fatalf("a retained point is not truncated; got %v", f.Truncated)
	}
	if got := readIDs(t, ctx, recent, 4); fmt.Sprint(got) != fmt.Sprint(ids[26:]) {
		t.Fatalf("replay after %s: %v, want %v", ids[25], got, ids[26:])
	}
}
