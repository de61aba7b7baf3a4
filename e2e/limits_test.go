package e2e

import (
	"errors"
	"net"
	"os"
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
	// The raw client never answers pings: reading shows them, then the end,
	// which must be the server's doing (EOF, a reset or a close frame), not
	// this read's own deadline. The deadline is generous: the peer is due to
	// go about 0.4 s after it connected.
	const bound = 15 * time.Second
	_ = deaf.conn.SetReadDeadline(time.Now().Add(bound))
	pings := 0
	for {
		op, p, err := deaf.readFrame()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the deaf peer was still connected after %v (%d pings seen): it was never dropped", bound, pings)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("reading the deaf peer timed out after %v (%d pings seen): it was never dropped: %v", bound, pings, err)
			}
			break // EOF or a reset: the server dropped the socket
		}
		if op == 9 {
			pings++
		}
		if op == 8 {
			t.Logf("dropped with a close frame, code %d", closeCode(p))
			break
		}
	}
	if pings == 0 {
		t.Fatal("no ping arrived before the connection ended")
	}

	// A client that answers pongs (coder/websocket does, while reading) stays.
	ctx := t.Context()
	c := r.Dial(ctx)
	c.Subscribe(ctx, map[string]any{"topics": []string{"t"}})
	type read struct {
		f   relaytest.Frame
		err error
	}
	done := make(chan read, 1)
	go func() { f, err := c.Read(ctx); done <- read{f, err} }()
	time.Sleep(time.Second) // several ping intervals pass: not a synchronisation
	id := r.MustPublish("t", map[string]any{})
	got := <-done
	if got.err != nil {
		t.Fatalf("answering client was dropped: %v", got.err)
	}
	if got.f.Type != "message" || got.f.MessageID != id {
		t.Fatalf("answering client read %+v, want message %s", got.f, id)
	}
}
