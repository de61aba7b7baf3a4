package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/auth"
)

func authCPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPublishAuth compares a publish over HTTP with auth off and on
// (HS256 token, topic check), in the same run. cpu-µs/op is the process's
// CPU (relay and client) per publish; the difference is what auth costs.
//
//	go test -run '^$' -bench PublishAuth -benchtime 20000x ./e2e/
func BenchmarkPublishAuth(b *testing.B) {
	secret := []byte("bench-secret")
	for _, mode := range []string{"off", "on-hs256"} {
		b.Run(mode, func(b *testing.B) {
			var cfg auth.Config
			token := ""
			if mode != "off" {
				cfg.JWTSecret = secret
				token = authUserToken(b, secret, "bench", time.Hour, "read", "write")
			}
			r := startAuthRelay(b, authRelayOpts{Auth: cfg})
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			body := []byte(`{"topic":"bench.t","payload":{"n":1}}`)
			b.ReportAllocs()
			b.ResetTimer()
			c0 := authCPUTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", r.URL+"/api/v1/messages", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					if token != "" {
						req.Header.Set("Authorization", "Bearer "+token)
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 201 {
						b.Error("status " + strconv.Itoa(resp.StatusCode))
						return
					}
				}
			})
			b.ReportMetric(float64((authCPUTime()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
