package actors_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// countingStore counts the store writes the topic actors make, to report
// how many messages one write carried.
type countingStore struct {
	persistence.Store
	appends  atomic.Int64
	appended atomic.Int64
}

func (s *countingStore) Append(ctx context.Context, topic string, batch []messages.Message) (int, error) {
	s.appends.Add(1)
	s.appended.Add(int64(len(batch)))
	return s.Store.Append(ctx, topic, batch)
}

// AppendAsync counts and forwards, so that the topic actors use the Valkey
// store's group commit across topics as they do without the counter.
func (s *countingStore) AppendAsync(ctx context.Context, topic string, batch []messages.Message, deadline time.Time, done func(int, error)) {
	s.appends.Add(1)
	s.appended.Add(int64(len(batch)))
	persistence.AppendAsync(s.Store, ctx, topic, batch, deadline, done)
}

// BenchmarkValkeyPublish measures publish throughput through
// TopicManager.Publish (store write, ack; no subscribers) on a real
// Valkey-compatible server from valkeytest (AOF, appendfsync everysec), with
// 32 publishing goroutines, for one hot topic and for 100 topics, with group
// commit (the default MaxBatch) and with one XADD per message (MaxBatch=1,
// as RELAY_MAX_BATCH=1). One op is one acknowledged message; msgs/s is the
// throughput and msgs/write how many messages one store round trip carried.
//
// With 32 publishers on 100 topics a topic rarely has a second publish
// waiting, so there is nothing to group; the 512-publisher case gives each
// of the 100 topics a queue.
//
//	go test -run '^$' -bench BenchmarkValkeyPublish -benchtime 20000x ./actors/
func BenchmarkValkeyPublish(b *testing.B) {
	benchValkeyPublish(b, []string{valkeytest.Start(b).Addr()})
}

// BenchmarkValkeyClusterPublish is BenchmarkValkeyPublish on a fresh
// 3-master, 3-replica cluster (each batch is its own call there, see
// ValkeyStore.AppendAsync).
//
//	go test -run '^$' -bench BenchmarkValkeyClusterPublish -benchtime 20000x ./actors/
func BenchmarkValkeyClusterPublish(b *testing.B) {
	benchValkeyPublish(b, valkeytest.StartCluster(b).Addrs())
}

func benchValkeyPublish(b *testing.B, addrs []string) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	payload := []byte(`{"event":"job-state","job_id":"a1b2c3","state":"running"}`)
	var run atomic.Int64 // fresh streams for every run, so runs do not share history
	for _, sc := range []struct{ topics, publishers int }{{1, 32}, {100, 32}, {100, 512}} {
		topics, publishers := sc.topics, sc.publishers
		for _, mode := range []struct {
			name     string
			maxBatch int
		}{{"group-commit", 0}, {"xadd-per-message", 1}} {
			b.Run(fmt.Sprintf("topics=%d/publishers=%d/%s", topics, publishers, mode.name), func(b *testing.B) {
				vs, err := persistence.NewValkeyStore(context.Background(), persistence.ValkeyConfig{
					Addrs:  addrs,
					Limits: persistence.Limits{MaxMessages: 100_000, Retention: time.Hour},
				}, log)
				if err != nil {
					b.Fatal(err)
				}
				store := &countingStore{Store: vs}
				system := actors.NewActorSystem(log)
				mgr := actors.NewTopicManager(system, store, actors.Config{MaxBatch: mode.maxBatch}, log)
				defer func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					mgr.Shutdown(ctx)
					system.Shutdown()
					_ = vs.Close()
				}()
				prefix := "bench-" + strconv.FormatInt(run.Add(1), 10) + "-"
				names := make([]string, topics)
				for i := range names {
					names[i] = prefix + strconv.Itoa(i)
				}
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				var next atomic.Int64
				var wg sync.WaitGroup
				for range publishers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							m := messages.Message{Topic: names[int(i)%topics], Payload: payload, Timestamp: time.Now()}
							if _, err := mgr.Publish(context.Background(), m); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
				if n := store.appends.Load(); n > 0 {
					b.ReportMetric(float64(store.appended.Load())/float64(n), "msgs/write")
				}
			})
		}
	}
}
