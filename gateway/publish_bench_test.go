package gateway_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pulsar-relay/relay/internal/relaytest"
)

// BenchmarkPublishHandler is the publish path in process: the whole handler
// chain (middleware, decode, checks, topic actor, memory store, answer),
// without sockets, 16 publishers per CPU. One op is one publish answered 201; ns/op and allocs/op
// are per publish (allocations of the actors' goroutines included).
//
//	go test -run '^$' -bench PublishHandler -benchmem ./gateway/
func BenchmarkPublishHandler(b *testing.B) {
	r := relaytest.Start(b, relaytest.Options{})
	h := r.App.Gateway.Handler()
	body := []byte(`{"topic":"bench-0","payload":{"seq":1,"sent_ns":1732679000000000000,"pub":0,"pad":"0123456789abcdef0123456789abcdef"}}`)
	b.SetParallelism(16) // 32 publishes in flight on 2 CPUs, like wrk -c32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/messages", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusCreated {
				b.Errorf("status %d: %s", rec.Code, rec.Body.Bytes())
				return
			}
		}
	})
}
