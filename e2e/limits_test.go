package e2e

import (
	"testing"
	"time"

	"github.com/pulsar-relay/relay/gateway"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// TestIdleConnectionWithoutSubscribeIsClosed: a connection that never
// subscribes is closed with 1008 after the idle limit; one that subscribed
// stays.
func TestIdleConnectionWithoutSubscribeIsClosed(t *testing.T) {
	relaytest.CheckLeaks(t)
	r := relaytest.Start(t, relaytest.Options{Gateway: gateway.Config{SubscribeIdleLimit: 300 * time.Millisecond}})
	idle, err := dialRaw(r.WSURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.conn.Close()
	active, err := dialRaw(r.WSURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer active.conn.Close()
	_ = active.writeText([]byte(`{"type":"subscribe","topics":["t"]}`))
	if _, p, err := active.readFrame(); err != nil {
		t.Fatalf("subscribe: %s %v", p, err)
	}

	_ = idle.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	op, p, err := idle.readFrame()
	if err != nil || op != 8 || closeCode(p) != 1008 {
		t.Fatalf("idle connection got op %d %q %v, want close 1008", op, p, err)
	}
	id := r.MustPublish("t", map[string]any{"still": "here"})
	_ = active.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, p, err := active.readFrame(); err != nil || messageID(p) != id {
		t.Fatalf("subscribed connection: %s %v, want message %s", p, err, id)
	}
}

// TestPeerThatMissesPongsIsDropped: the server pings; a peer that never
// reads (so never answers) is dropped after the pong timeout.
func TestPeerThatMissesPongsIsDropped(t *testing.T) {
	relaytest.CheckLeaks(t)
	r := relaytest.Start(t, relaytest.Options{Gateway: gateway.Config{PingInterval: 200 * time.Millisecond, PongTimeout: 200 * time.Millisecond}})
	deaf, err := dialRaw(r.WSURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.conn.Close()
	_ = deaf.writeText([]byte(`{"type":"subscribe","topics":["t"]}`))
	// The raw client never answers pings: reading shows them, then the end.
	_ = deaf.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	pings := 0
	for {
		op, _, err := deaf.readFrame()
		if err != nil {
			break // the server dropped the socket
		}
		if op == 9 {
			pings++
		}
	}
	if pings == 0 {
		t.Fatal("no ping arrived before the connection ended")
	}

	// A client that answers pongs (coder/websocket does, while reading) stays.
	ctx := t.Context()
	c := r.Dial(ctx)
	c.Subscribe(ctx, map[string]any{"topics": []string{"t"}})
	done := make(chan error, 1)
	go func() { _, err := c.Read(ctx); done <- err }()
	time.Sleep(time.Second) // several ping intervals
	id := r.MustPublish("t", map[string]any{})
	if err := <-done; err != nil {
		t.Fatalf("answering client was dropped: %v", err)
	}
	_ = id
}
