package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"
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

// BenchmarkPublishAuthInterleaved alternates rounds of publishes to a relay
// with auth off and one with auth on (HS256), so both see the same machine
// load, and reports each mode's process CPU per publish.
//
//	go test -run '^$' -bench PublishAuthInterleaved -benchtime 40000x ./e2e/
func BenchmarkPublishAuthInterleaved(b *testing.B) {
	secret := []byte("bench-secret")
	off := startAuthRelay(b, authRelayOpts{})
	on := startAuthRelay(b, authRelayOpts{Auth: auth.Config{JWTSecret: secret}})
	token := authUserToken(b, secret, "bench", time.Hour, "read", "write")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := []byte(`{"topic":"bench.t","payload":{"n":1}}`)
	const workers, rounds = 4, 20
	publishN := func(url, tok string, n int) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					req, _ := http.NewRequest("POST", url+"/api/v1/messages", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					if tok != "" {
						req.Header.Set("Authorization", "Bearer "+tok)
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
			}()
		}
		wg.Wait()
	}
	per := max(1, b.N/(2*rounds))
	var cpuOff, cpuOn time.Duration
	b.ResetTimer()
	for range rounds {
		c0 := authCPUTime()
		publishN(off.URL, "", per)
		c1 := authCPUTime()
		publishN(on.URL, token, per)
		cpuOff += c1 - c0
		cpuOn += authCPUTime() - c1
	}
	n := float64(per * rounds)
	b.ReportMetric(float64(cpuOff.Microseconds())/n, "off-cpu-µs/op")
	b.ReportMetric(float64(cpuOn.Microseconds())/n, "on-cpu-µs/op")
}
