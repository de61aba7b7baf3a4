package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/browsertest"
	"github.com/pulsar-relay/relay/internal/relaytest"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every
// relay a test starts is shut down in its cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(closingBrowser{m}, relaytest.IgnoreLibraryTimers()...)
}

// closingBrowser closes the package's one Chromium (browser tests start it
// on first use) after the tests, before the leak check.
type closingBrowser struct{ *testing.M }

func (c closingBrowser) Run() int {
	code := c.M.Run()
	browsertest.CloseShared()
	relaytest.RemoveRelayBinary()
	return code
}

// TestNoLeakAfterConnectionsClose: goroutines of closed connections are gone
// while the relay keeps running.
func TestNoLeakAfterConnectionsClose(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r.MustPublish("warm", map[string]any{}) // start the topic actor first
	relaytest.HTTPClient.CloseIdleConnections()
	baseline := goleak.IgnoreCurrent()

	var clients []*relaytest.Client
	for range 50 {
		c := r.Dial(ctx)
		c.Subscribe(ctx, map[string]any{"topics": []string{"warm", "other"}})
		clients = append(clients, c)
	}
	r.MustPublish("warm", map[string]any{"n": 1})
	for _, c := range clients {
		if f := c.MustRead(ctx); f.Type != "message" {
			t.Fatalf("got %+v", f)
		}
		c.Conn.Close(1000, "bye")
	}
	relaytest.HTTPClient.CloseIdleConnections()
	relaytest.Eventually(t, 5*time.Second, "connection goroutines to end", func() bool {
		return goleak.Find(baseline, goleak.IgnoreTopFunction("time.Sleep")) == nil
	})
	if err := goleak.Find(baseline); err != nil {
		t.Fatal(err)
	}
}

// TestNoLeakAfterShutdown: a relay shut down with connections open leaves
// nothing running, and its clients see close code 1001.
func TestNoLeakAfterShutdown(t *testing.T) {
	relaytest.HTTPClient.CloseIdleConnections()
	baseline := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	func() {
		r := relaytest.Start(t, relaytest.Options{})
		var clients []*relaytest.Client
		for range 20 {
			c := r.Dial(ctx)
			c.Subscribe(ctx, map[string]any{"topics": []string{"a"}})
			clients = append(clients, c)
		}
		r.MustPublish("a", map[string]any{})
		errs := make(chan error, len(clients))
		for _, c := range clients {
			go func() {
				for {
					if _, err := c.Read(ctx); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		r.Close()
		for range clients {
			err := <-errs
			if st := relaytest.CloseStatus(err); st != 1001 {
				t.Errorf("client saw %v (status %d), want close 1001", err, st)
			}
		}
	}()
	relaytest.HTTPClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// protoactor's dead-letter log throttle (shutdown leaves a few dead
		// letters) ends by itself one throttle interval later.
		err := goleak.Find(append(relaytest.IgnoreLibraryTimers(), baseline)...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines outlived the shutdown: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
