package persistence

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/pulsar-relay/relay/internal/valkeytest"
	"github.com/pulsar-relay/relay/messages"
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

// The auth store on the cluster: a topic's record and the owner, grantee,
// public and topic indexes are in different slots, so every call that
// spans them is one command per slot.
func TestValkeyClusterAuthStoreConformance(t *testing.T) {
	s, _ := openCluster(t, ValkeyConfig{})
	testAuthStore(t, NewValkeyAuthStore(s), s)
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

// noticesOf collects notices from h until every topic of want has one,
// skipping link events.
func noticesOf(t *testing.T, h *chanHandler, want map[string]bool) map[string]Notice {
	t.Helper()
	got := make(map[string]Notice)
	for len(got) < len(want) {
		e := h.next(fmt.Sprintf("notices (%d of %d)", len(got), len(want)))
		if e.notice == nil {
			continue
		}
		if !want[e.notice.Topic] {
			t.Fatalf("notice for %q, not subscribed", e.notice.Topic)
		}
		got[e.notice.Topic] = *e.notice
	}
	return got
}

// The feed on a cluster: notices of topics on every shard arrive (one
// pub/sub link per slot in use), and come back after the links are killed.
func TestValkeyClusterFeed(t *testing.T) {
	a, c := openCluster(t, ValkeyConfig{})
	b, err := NewValkeyStore(context.Background(), ValkeyConfig{Addrs: c.Addrs()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h, feed := listen(t, b)
	defer feed.Close()
	want := make(map[string]bool)
	eventually(t, 10*time.Second, func() string {
		if !feed.Up() {
			return "feed not up"
		}
		return ""
	})
	for i := range 12 {
		topic := fmt.Sprintf("feed-%d", i)
		want[topic] = true
		if err := feed.Subscribe(topic); err != nil {
			t.Fatalf("Subscribe(%s): %v", topic, err)
		}
	}
	// New links connect in the background; OnLink(true) says when.
	eventually(t, 10*time.Second, func() string {
		if !feed.Up() {
			return "the feed's links are not all up"
		}
		return ""
	})
	send := func(round int) map[string]messages.ID {
		t.Helper()
		last := make(map[string]messages.ID)
		for topic := range want {
			last[topic] = appendAll(t, a, topic, msgs(round, 1))[0].ID
		}
		return last
	}
	check := func(what string, last map[string]messages.ID) {
		t.Helper()
		for topic, n := range noticesOf(t, h, want) {
			if n.Last != last[topic] || len(n.Messages) != 1 {
				t.Errorf("%s: notice of %s = %+v; want last %s with its message", what, topic, n, last[topic])
			}
		}
	}
	check("first round", send(0))

	raw, err := valkey.NewClient(valkey.ClientOption{InitAddress: c.Addrs(), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, m := range c.Masters() {
		node := raw.Nodes()[m.Addr()]
		if node == nil {
			t.Fatalf("no client for master %s", m.Addr())
		}
		if err := node.Do(testCtx(t), node.B().ClientKill().TypePubsub().Build()).Error(); err != nil {
			t.Fatalf("CLIENT KILL TYPE pubsub on %s: %v", m.Addr(), err)
		}
	}
	// Every killed link (one per slot in use) reports down, then up again.
	slots := make(map[uint16]bool)
	for topic := range want {
		slots[hashSlot(topic)] = true
	}
	downs, ups := 0, 0
	for downs < len(slots) || ups < len(slots) {
		e := h.next(fmt.Sprintf("links back after the kill (%d down, %d up of %d)", downs, ups, len(slots)))
		switch {
		case e.up == nil:
		case *e.up:
			ups++
		default:
			downs++
		}
	}
	check("after the links were killed", send(1))
	for topic := range want { // the last Unsubscribe of a slot closes its link
		if err := feed.Unsubscribe(topic); err != nil {
			t.Errorf("Unsubscribe(%s): %v", topic, err)
		}
	}
	if err := feed.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoFeedGoroutines(t)
}

func TestHashSlot(t *testing.T) {
	// CLUSTER KEYSLOT of the hash tag: the topic.
	for topic, want := range map[string]uint16{"foo": 12182, "hello": 866, "a": 15495} {
		if got := hashSlot(topic); got != want {
			t.Errorf("hashSlot(%q) = %d, want %d", topic, got, want)
		}
	}
}

// WaitReplicas on a cluster: WAIT runs on the connection that wrote, at the
// topic's master, whose replica confirms.
func TestValkeyClusterWaitReplicas(t *testing.T) {
	s, _ := openCluster(t, ValkeyConfig{WaitReplicas: 1, Timeout: 2 * time.Second})
	for i := range 12 {
		topic := fmt.Sprintf("wait-%d", i)
		eventually(t, 10*time.Second, func() string {
			if _, err := s.Append(testCtx(t), topic, msgs(i, 2)); err != nil {
				return err.Error()
			}
			return ""
		})
	}
}

// nodeClient is a plain client of one cluster node.
func nodeClient(t *testing.T, addr string) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatalf("client of %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// slotOwner returns the address of the master serving slot, per addr's
// CLUSTER SLOTS.
func slotOwner(t *testing.T, c valkey.Client, slot uint16) string {
	t.Helper()
	ranges, err := c.Do(testCtx(t), c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, r := range ranges {
		v, _ := r.ToArray()
		lo, _ := v[0].AsInt64()
		hi, _ := v[1].AsInt64()
		if int64(slot) < lo || int64(slot) > hi {
			continue
		}
		node, _ := v[2].ToArray()
		host, _ := node[0].ToString()
		port, _ := node[1].AsInt64()
		return fmt.Sprintf("%s:%d", host, port)
	}
	t.Fatalf("slot %d is not served", slot)
	return ""
}

// A slot that moves to another master ends its subscriptions there (the
// server sends SUNSUBSCRIBE); the feed notices, makes the link again at the
// new owner, reports it, and hears the topic's notices again: no silent
// wedge.
func TestValkeyClusterFeedFollowsAMovedSlot(t *testing.T) {
	s, c := openCluster(t, ValkeyConfig{})
	const topic = "moving"
	slot := hashSlot(topic)
	h, feed := listen(t, s)
	defer feed.Close()
	if err := feed.Subscribe(topic); err != nil {
		t.Fatal(err)
	}
	h.link(true)

	from := slotOwner(t, nodeClient(t, c.Nodes[0].Addr()), slot)
	var to string
	for _, m := range c.Masters() {
		if m.Addr() != from {
			to = m.Addr()
			break
		}
	}
	src, dst := nodeClient(t, from), nodeClient(t, to)
	ctx := testCtx(t)
	srcID, err := src.Do(ctx, src.B().ClusterMyid().Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := dst.Do(ctx, dst.B().ClusterMyid().Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	// The slot holds no key (the topic was never written), so moving it is
	// IMPORTING/MIGRATING and then NODE on both sides.
	for _, step := range []struct {
		c   valkey.Client
		cmd valkey.Completed
	}{
		{dst, dst.B().ClusterSetslot().Slot(int64(slot)).Importing().NodeId(srcID).Build()},
		{src, src.B().ClusterSetslot().Slot(int64(slot)).Migrating().NodeId(dstID).Build()},
		{src, src.B().ClusterSetslot().Slot(int64(slot)).Node().NodeId(dstID).Build()},
		{dst, dst.B().ClusterSetslot().Slot(int64(slot)).Node().NodeId(dstID).Build()},
	} {
		if err := step.c.Do(ctx, step.cmd).Error(); err != nil {
			t.Fatalf("moving slot %d from %s to %s: %v", slot, from, to, err)
		}
	}
	h.link(false)
	h.link(true)
	stored := appendAll(t, s, topic, msgs(0, 1))[0]
	if n := h.notice("after the slot moved"); n.Last != stored.ID {
		t.Fatalf("notice %+v, want last %s", n, stored.ID)
	}
	if owner := slotOwner(t, dst, slot); owner != to {
		t.Errorf("slot %d is served by %s, want %s", slot, owner, to)
	}
}

// A master fails (SIGKILL) while a topic on it is written with
// WaitReplicas 1: its replica takes over, every acknowledged message is in
// the stream afterwards (some appends during the failover fail; none is
// acknowledged and lost), and the feed's link comes back at the new master.
func TestValkeyClusterFailoverKeepsAcknowledged(t *testing.T) {
	c := valkeytest.StartCluster(t)
	const topic = "failover"
	s, err := NewValkeyStore(context.Background(), ValkeyConfig{Addrs: c.Addrs(), WaitReplicas: 1, Timeout: time.Second}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, feed := listen(t, s)
	defer feed.Close()
	if err := feed.Subscribe(topic); err != nil {
		t.Fatal(err)
	}
	h.link(true)

	owner := slotOwner(t, nodeClient(t, c.Nodes[0].Addr()), hashSlot(topic))
	var victim *valkeytest.Server
	for _, n := range c.Nodes {
		if n.Addr() == owner {
			victim = n
		}
	}
	// The replica that takes over has no replica of its own until the old
	// master comes back (as its replica): restart it a while after the
	// kill, when the cluster has failed over.
	var acked []messages.ID
	var killed time.Time
	failed, ackedAfterKill := 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; victim != nil || ackedAfterKill < 50; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: %d acknowledged (%d after the kill), %d failed", len(acked), ackedAfterKill, failed)
		}
		if len(acked) >= 50 && killed.IsZero() {
			victim.Kill()
			killed = time.Now()
		}
		if victim != nil && !killed.IsZero() && time.Since(killed) > 5*time.Second {
			victim.Restart()
			victim = nil
		}
		batch := msgs(i, 1)
		if n, err := s.Append(context.Background(), topic, batch); err == nil && n == 1 {
			acked = append(acked, batch[0].ID)
			if !killed.IsZero() {
				ackedAfterKill++
			}
		} else {
			failed++
			time.Sleep(50 * time.Millisecond) // pace retries while the cluster fails over
		}
	}
	stored := make(map[messages.ID]bool)
	after := messages.ID{}
	for {
		p := mustRange(t, s, topic, after, 1000)
		for _, m := range p.Messages {
			stored[m.ID] = true
		}
		if len(p.Messages) == 0 {
			break
		}
		after = p.Messages[len(p.Messages)-1].ID
	}
	for _, id := range acked {
		if !stored[id] {
			t.Errorf("acknowledged %s is not in the stream after the failover", id)
		}
	}
	t.Logf("%d acknowledged, %d failed during the failover, %d stored", len(acked), failed, len(stored))
	// The feed lost its link with the master and made it again.
	sawDown := false
	for {
		e := h.next("the feed's link after the failover")
		if e.up != nil && !*e.up {
			sawDown = true
		}
		if e.up != nil && *e.up && sawDown {
			break
		}
	}
	last := appendAll(t, s, topic, msgs(0, 1))[0]
	for {
		if n := h.notice("a notice after the failover"); n.Last == last.ID {
			break
		}
	}
}

// A master that stalls holds only the appends to its own slots: an append
// to a topic on another master is answered while the stalled master's are
// still waiting, even when those took every round group commit allows
// (maxAppendRounds), and the stalled ones are stored once it resumes.
func TestValkeyClusterStalledMasterHoldsOnlyItsOwnAppends(t *testing.T) {
	s, c := openCluster(t, ValkeyConfig{Timeout: 20 * time.Second})
	probe := nodeClient(t, c.Masters()[0].Addr())
	ownerOf := func(topic string) string { return slotOwner(t, probe, hashSlot(topic)) }
	stalledMaster := ownerOf("stall-0")
	var stalled []string
	healthy := ""
	for i := 0; len(stalled) < maxAppendRounds+2 || healthy == ""; i++ {
		topic := fmt.Sprintf("stall-%d", i)
		switch owner := ownerOf(topic); {
		case owner == stalledMaster && len(stalled) < maxAppendRounds+2:
			stalled = append(stalled, topic)
		case owner != stalledMaster && healthy == "":
			healthy = topic
		}
	}
	// Warm up: the client knows the slots and every master's connection.
	for _, topic := range append([]string{healthy}, stalled...) {
		appendAll(t, s, topic, msgs(0, 1))
	}

	// CLIENT PAUSE WRITE holds every write (EVALSHA included) the master
	// receives until it ends or is lifted.
	paused := nodeClient(t, stalledMaster)
	if err := paused.Do(testCtx(t), paused.B().ClientPause().Timeout(15000).Write().Build()).Error(); err != nil {
		t.Fatalf("CLIENT PAUSE on %s: %v", stalledMaster, err)
	}
	unpause := func() { _ = paused.Do(context.Background(), paused.B().ClientUnpause().Build()).Error() }
	t.Cleanup(unpause)

	type result struct {
		topic string
		n     int
		err   error
	}
	done := make(chan result, len(stalled)+1)
	for _, topic := range stalled {
		s.AppendAsync(context.Background(), topic, msgs(1, 1), time.Time{}, func(n int, err error) { done <- result{topic, n, err} })
	}
	time.Sleep(50 * time.Millisecond) // let the stalled appends reach the paused master
	s.AppendAsync(context.Background(), healthy, msgs(1, 1), time.Time{}, func(n int, err error) { done <- result{healthy, n, err} })
	first := <-done
	if first.topic != healthy {
		t.Fatalf("%s (on the paused master) was answered (%d, %v) before %s (on a healthy master)", first.topic, first.n, first.err, healthy)
	}
	if first.n != 1 || first.err != nil {
		t.Fatalf("append to %s on a healthy master: %d, %v", healthy, first.n, first.err)
	}
	unpause()
	for range stalled {
		if r := <-done; r.n != 1 || r.err != nil {
			t.Errorf("append to %s after the pause: %d, %v", r.topic, r.n, r.err)
		}
	}
}
