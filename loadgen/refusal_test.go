package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestIsRefusal(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&publishError{Kind: "status 503", Status: http.StatusServiceUnavailable, Err: errors.New("x")}, true},
		{&publishError{Kind: "status 429", Status: http.StatusTooManyRequests, Err: errors.New("x")}, true},
		{fmt.Errorf("wrapped: %w", &publishError{Kind: "bulk status 503", Status: 503, Err: errors.New("x")}), true},
		{&publishError{Kind: "status 500", Status: 500, Err: errors.New("x")}, false},
		{&publishError{Kind: "timeout", Err: errors.New("x")}, false},
		{&publishError{Kind: "api error 102", Err: errors.New("x")}, false},
		{errors.New("503"), false},
		{nil, false},
	}
	for _, tc := range tests {
		if got := isRefusal(tc.err); got != tc.want {
			t.Errorf("isRefusal(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// stubDriver answers publishes without a network: publish number n (from 1)
// is refused with 503 when n%refuse503 == 0, else with 429 when
// n%refuse429 == 0, else fails with 500 when n%fail500 == 0, else is
// acknowledged. Refusals take refusedDelay, acknowledgements okDelay.
type stubDriver struct {
	refuse503, refuse429, fail500 int
	refusedDelay, okDelay         time.Duration
	n                             atomic.Int64
}

func (d *stubDriver) connect(context.Context, string) (subConn, error) {
	return nil, errors.New("stub: no subscribers")
}

func (d *stubDriver) appendPublishBody(dst []byte, topic string, payload []byte) []byte {
	return append(append(dst, topic...), payload...)
}

func (d *stubDriver) answer() error {
	n := int(d.n.Add(1))
	every := func(k int) bool { return k > 0 && n%k == 0 }
	switch {
	case every(d.refuse503):
		time.Sleep(d.refusedDelay)
		return &publishError{Kind: "status 503", Status: 503, Err: errors.New("overloaded")}
	case every(d.refuse429):
		time.Sleep(d.refusedDelay)
		return &publishError{Kind: "status 429", Status: 429, Err: errors.New("slow down")}
	case every(d.fail500):
		return &publishError{Kind: "status 500", Status: 500, Err: errors.New("boom")}
	}
	time.Sleep(d.okDelay)
	return nil
}

func (d *stubDriver) publish(context.Context, []byte) error { return d.answer() }

func (d *stubDriver) publishBatch(_ context.Context, b *batch) error {
	b.ok = b.ok[:0]
	for range b.topics {
		b.ok = append(b.ok, false)
	}
	if err := d.answer(); err != nil {
		return err
	}
	for i := range b.ok {
		b.ok[i] = true
	}
	return nil
}

func stubConfig(t *testing.T, args ...string) Config {
	t.Helper()
	c, err := parseFlags(append([]string{"--quiet", "--subscribers", "0", "--grace", "0s"}, args...), &bytes.Buffer{}, timeNow(), 1)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRefusalAccounting(t *testing.T) {
	d := &stubDriver{refuse503: 4, refuse429: 5, fail500: 7, refusedDelay: 20 * time.Millisecond}
	cfg := stubConfig(t, "--messages", "140", "--publishers", "2")
	rep := runFake(t, cfg, d)
	// Of 1..140: multiples of 4 → 35 refused 503; of 5 but not 4 → 28-7=21
	// refused 429; of 7 but neither 4 nor 5 → 20-5-4+1=12 failed; 72 ok.
	if rep.Refused != 56 || rep.PublishErrors != 12 || rep.Published != 72 {
		t.Fatalf("refused %d, failed %d, ok %d; want 56, 12, 72 (%v)", rep.Refused, rep.PublishErrors, rep.Published, rep.Errors)
	}
	if rep.Errors["refused 503"] != 35 || rep.Errors["refused 429"] != 21 || rep.Errors["publish status 500"] != 12 {
		t.Fatalf("errors by kind = %v", rep.Errors)
	}
	for _, e := range rep.FirstErrors {
		if strings.Contains(e, "overloaded") || strings.Contains(e, "slow down") {
			t.Errorf("a refusal took a first-error slot: %q", e)
		}
	}
	if rep.RefusedP50Ms < 20 || rep.RefusedP99Ms < rep.RefusedP50Ms || rep.RefusedMaxMs < rep.RefusedP99Ms || rep.RefusedMaxMs > 2000 {
		t.Fatalf("refusal latency p50/p99/max = %.2f/%.2f/%.2f ms, want about 20 ms", rep.RefusedP50Ms, rep.RefusedP99Ms, rep.RefusedMaxMs)
	}
	if rep.PublishP50Ms >= rep.RefusedP50Ms || rep.PublishMaxMs < rep.PublishP99Ms || rep.PublishMaxMs <= 0 {
		t.Fatalf("acknowledged publish p50/p99/max = %.2f/%.2f/%.2f ms: want a p50 below the refusals' (%.2f ms)",
			rep.PublishP50Ms, rep.PublishP99Ms, rep.PublishMaxMs, rep.RefusedP50Ms)
	}
	if rep.Clean {
		t.Fatal("a run with failures is clean")
	}
	var table bytes.Buffer
	if err := rep.writeTable(&table); err != nil || !strings.Contains(table.String(), "56 refused (503/429), 12 failed") ||
		!strings.Contains(table.String(), "refusal ms p50 / p99 / max") {
		t.Fatalf("table: %v\n%s", err, table.String())
	}
}

func TestRefusalsAndClean(t *testing.T) {
	for _, allow := range []bool{false, true} {
		d := &stubDriver{refuse503: 3}
		args := []string{"--messages", "30"}
		if allow {
			args = append(args, "--allow-refusals")
		}
		rep := runFake(t, stubConfig(t, args...), d)
		if rep.Refused != 10 || rep.PublishErrors != 0 || rep.Published != 20 {
			t.Fatalf("allow=%v: refused %d, failed %d, ok %d; want 10, 0, 20", allow, rep.Refused, rep.PublishErrors, rep.Published)
		}
		if rep.Clean != allow {
			t.Errorf("allow-refusals=%v: clean = %v", allow, rep.Clean)
		}
	}
	// No refusals: clean either way, and no refusal figures.
	rep := runFake(t, stubConfig(t, "--messages", "10"), &stubDriver{})
	if !rep.Clean || rep.Refused != 0 || rep.RefusedP99Ms != 0 || rep.PublishP50Ms < 0 {
		t.Fatalf("report = %+v", rep)
	}
}

func TestRefusalAccountingBulk(t *testing.T) {
	// 10 requests of 10 messages; every 2nd request refused with 503 in 5 ms.
	d := &stubDriver{refuse503: 2, refusedDelay: 5 * time.Millisecond}
	rep := runFake(t, stubConfig(t, "--messages", "100", "--bulk", "10", "--publishers", "1"), d)
	if rep.Refused != 50 || rep.Published != 50 || rep.PublishErrors != 0 {
		t.Fatalf("refused %d, ok %d, failed %d; want 50, 50, 0", rep.Refused, rep.Published, rep.PublishErrors)
	}
	if rep.RefusedP50Ms < 5 {
		t.Fatalf("refusal p50 %.2f ms, want at least 5", rep.RefusedP50Ms)
	}
}

// The fake relay answers its refusals with 503: counted as refused, not failed.
func TestRelayDriverRefusalsAgainstFake(t *testing.T) {
	f := &fakeRelay{failEvery: 5}
	addr := newFakeRelay(t, f)
	cfg := testConfig(addr)
	cfg.Subscribers, cfg.Topics, cfg.Publishers, cfg.Messages, cfg.AllowRefusals = 4, 2, 2, 100, true
	pub, ws := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
	rep := runFake(t, cfg, newRelayDriver(addr, pub, ws))
	if rep.Refused != 20 || rep.Published != 80 || rep.PublishErrors != 0 || rep.Errors["refused 503"] != 20 {
		t.Fatalf("refused %d, ok %d, failed %d, errors %v; want 20, 80, 0", rep.Refused, rep.Published, rep.PublishErrors, rep.Errors)
	}
	if !rep.Clean || rep.Lost != 0 || rep.Unexpected != 0 || rep.Expected != 160 {
		t.Fatalf("report = %+v", rep)
	}
	if rep.RefusedMaxMs <= 0 || rep.RefusedP99Ms > rep.RefusedMaxMs {
		t.Fatalf("refusal latency p99/max = %.3f/%.3f ms", rep.RefusedP99Ms, rep.RefusedMaxMs)
	}
}
