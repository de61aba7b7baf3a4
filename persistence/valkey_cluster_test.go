package persistence

import (
	"context"
	"fmt"
	"testing"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/internal/valkeytest"
)

// openCluster opens a store on the package's shared cluster, emptied first.
func openCluster(t *testing.T, cfg ValkeyConfig) (*ValkeyStore, *valkeytest.Cluster) {
	t.Helper()
	c := valkeytest.SharedCluster(t)
	c.Flush(t)
	cfg.Addrs = c.Addrs()
	s, err := NewValkeyStore(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("NewValkeyStore on a cluster: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, c
}

// The conformance suite on a 3-master, 3-replica cluster: every key of a
// topic shares its hash tag, so each script call stays on one shard.
func TestValkeyClusterConformance(t *testing.T) {
	runConformance(t, func(t *testing.T, limits Limits) Store {
		s, _ := openCluster(t, ValkeyConfig{Limits: limits})
		if mode := s.client.Load().c.Mode(); mode != valkey.ClientModeCluster {
			t.Fatalf("client mode %s, want cluster", mode)
		}
		return s
	})
}

// Topics spread over every master.
func TestValkeyClusterSpreadsTopics(t *testing.T) {
	s, c := openCluster(t, ValkeyConfig{})
	topics := make([]string, 30)
	for i := range topics {
		topics[i] = fmt.Sprintf("spread-%d", i)
		appendAll(t, s, topics[i], msgs(i, 1))
	}
	tips, err := s.Tips(testCtx(t), topics)
	if err != nil {
		t.Fatalf("Tips across slots: %v", err)
	}
	for _, topic := range topics {
		if tips[topic].Last.IsZero() {
			t.Errorf("Tips(%s) is zero", topic)
		}
	}
	for _, m := range c.Masters() {
		raw, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{m.Addr()}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			t.Fatal(err)
		}
		n, err := raw.Do(testCtx(t), raw.B().Dbsize().Build()).AsInt64()
		raw.Close()
		if err != nil || n == 0 {
			t.Errorf("master %s holds %d keys (%v); want some of the 30 topics", m.Addr(), n, err)
		}
	}
}
