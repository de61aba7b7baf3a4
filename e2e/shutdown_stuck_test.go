package e2e

import (
	"context"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/internal/relaytest"
)

// dialStalled opens a WebSocket to url whose socket takes at most about
// 4 KiB before the relay's writes to it block (a small receive buffer), and
// which the test never reads.
func dialStalled(ctx context.Context, t *testing.T, url string) *websocket.Conn {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// TestShutdownWithAStalledSubscriber: a subscriber that stopped reading
// leaves its connection actor blocked in a write. Shutdown closes every
// WebSocket; the close must not wait for that write (it held the writer's
// lock, and with the sweeper stopped nothing else would ever end it: the
// process hung on SIGTERM until killed). Shutdown returns, and the relay's
// own 1001 close reaches a subscriber that reads.
func TestShutdownWithAStalledSubscriber(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stalled := dialStalled(ctx, t, r.WSURL)
	authWSSend(ctx, t, stalled, map[string]any{"type": "subscribe", "topics": []string{"stall"}})
	reader := r.Dial(ctx)
	reader.Subscribe(ctx, map[string]any{"topics": []string{"calm"}})
	time.Sleep(200 * time.Millisecond) // let the stalled one's subscribe land
	pad := strings.Repeat("x", 200<<10)
	for i := range 40 { // 8 MB for a socket that takes a few KiB
		if status, out := r.Publish("stall", map[string]any{"i": i, "pad": pad}); status != http.StatusCreated {
			t.Fatalf("publish %d: %d %v", i, status, out)
		}
	}
	time.Sleep(time.Second) // the connection actor is now blocked in a write

	done := make(chan struct{})
	start := time.Now()
	go func() { r.Close(); close(done) }() // a budget of 10 s
	select {
	case <-done:
		t.Logf("shutdown returned after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown did not return within 30 s (its budget is 10 s)")
	}
	for {
		_, err := reader.Read(ctx)
		if err == nil {
			continue
		}
		if st := relaytest.CloseStatus(err); st != int(websocket.StatusGoingAway) {
			t.Fatalf("the reading subscriber's connection ended with %v, want a 1001 close", err)
		}
		break
	}
}
