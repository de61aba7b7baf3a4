package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRawPoster(t *testing.T) {
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		i := n.Add(1)
		if i%2 == 0 {
			w.Header().Set("Connection", "close") // the client must dial again
		}
		if r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s|%s", r.Header.Get("X-API-Key"), b)
	})
	mux.HandleFunc("POST /chunked", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "part1,")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
	})
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	p := newRawPoster(addr, loopbackDialer(time.Second), 100*time.Millisecond, 2)
	defer p.closeIdle()
	ctx := context.Background()

	for i := range 5 {
		body := fmt.Sprintf(`{"i":%d}`, i)
		status, ans, err := p.post(ctx, srv.URL+"/echo", []byte(body), "X-API-Key", "k", 4096)
		if err != nil || status != http.StatusCreated || string(ans) != "k|"+body {
			t.Fatalf("post %d = %d %q %v", i, status, ans, err)
		}
	}
	if _, ans, err := p.post(ctx, srv.URL+"/echo", []byte(`{}`), "", "", 4096); err != nil || string(ans) != "|{}" {
		t.Fatalf("post without header = %q %v", ans, err)
	}
	status, ans, err := p.post(ctx, srv.URL+"/chunked", []byte(`{}`), "", "", 4096)
	if err != nil || status != 200 || string(ans) != "part1,part2" {
		t.Fatalf("chunked = %d %q %v", status, ans, err)
	}
	status, ans, err = p.post(ctx, srv.URL+"/chunked", []byte(`{}`), "", "", 4096)
	if err != nil || string(ans) != "part1,part2" {
		t.Fatalf("chunked answer truncated: %d %q %v", status, ans, err)
	}
	var pe *publishError
	if _, _, err := p.post(ctx, srv.URL+"/slow", []byte(`{}`), "", "", 4096); !errors.As(err, &pe) || pe.Kind != "timeout" {
		t.Fatalf("slow answer: err = %v, want a timeout", err)
	}
	if _, _, err := p.post(ctx, "http://example.com/x", nil, "", "", 4096); !errors.As(err, &pe) || pe.Kind != "request" {
		t.Fatalf("foreign url: err = %v, want a request error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := p.post(cctx, srv.URL+"/echo", nil, "", "", 4096); !errors.As(err, &pe) || pe.Kind != "canceled" {
		t.Fatalf("canceled ctx: err = %v", err)
	}
	if _, ans, err := p.post(ctx, srv.URL+"/echo", []byte(`{}`), "", "", 4096); err != nil || string(ans) != "|{}" {
		t.Fatalf("post after a timeout = %q %v", ans, err)
	}
}
