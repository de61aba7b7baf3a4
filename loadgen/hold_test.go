package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeConsumers serves the relay's long-poll and SSE subscribe paths: the
// first keep polls (or streams) are held open until the client leaves, every
// later one is refused at once (a poll answered 429, like the relay's
// per-client waiter cap; a stream closed right after "subscribed").
func fakeConsumers(t *testing.T, keep int64) string {
	t.Helper()
	var polls, streams atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/topics/{topic}/messages", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"messages":[]}`)
	})
	mux.HandleFunc("POST /api/v1/poll", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if polls.Add(1) > keep {
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":"RATE_LIMITED"}`)
			return
		}
		<-r.Context().Done()
	})
	mux.HandleFunc("GET /api/v1/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: subscribed\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		if streams.Add(1) > keep {
			return
		}
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestHoldKBPerConnectionCountsHeldOnly: memory per connection after a hold
// divides by the subscribers still held, not by every one that connected, on
// both consumer transports.
func TestHoldKBPerConnectionCountsHeldOnly(t *testing.T) {
	for _, transport := range []string{TransportPoll, TransportSSE} {
		t.Run(transport, func(t *testing.T) {
			addr := fakeConsumers(t, 2)
			path := t.TempDir() + "/r.json"
			var out, errOut bytes.Buffer
			// The fake runs in this process, so our own pid stands in for the server's.
			code := Main(context.Background(), []string{
				"--addr", addr, "--transport", transport, "--subscribers", "6", "--messages", "0",
				"--hold", "300ms", "--server-pid", fmt.Sprint(osGetpid()), "--quiet", "--json", path,
			}, &out, &errOut)
			if code != 0 {
				t.Fatalf("Main = %d, stderr: %s", code, errOut.String())
			}
			rep, err := readReport(path)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Connected != 6 || rep.Held != 2 {
				t.Fatalf("connected %d, held %d; want 6 and 2 (errors %v)", rep.Connected, rep.Held, rep.Errors)
			}
			if want := float64(rep.RSSAfterHoldKB-rep.RSSBeforeKB) / 2; rep.KBPerConnection != want {
				t.Fatalf("KB per connection %g, want (after hold %d - before %d) / 2 held = %g",
					rep.KBPerConnection, rep.RSSAfterHoldKB, rep.RSSBeforeKB, want)
			}
			if rep.Clean || rep.Errors["subscriber dropped"] != 4 {
				t.Fatalf("clean %v, errors %v; want unclean with 4 subscribers dropped", rep.Clean, rep.Errors)
			}
			if !strings.Contains(out.String(), "2 connections held when sampled") {
				t.Errorf("table does not say how many were held:\n%s", out.String())
			}
		})
	}
}
