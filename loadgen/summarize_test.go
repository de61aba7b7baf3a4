package loadgen

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMedianOf(t *testing.T) {
	get := func(r *Report) float64 { return r.PublishesPerS }
	mk := func(vs ...float64) []*Report {
		var rs []*Report
		for _, v := range vs {
			rs = append(rs, &Report{PublishesPerS: v})
		}
		return rs
	}
	tests := []struct {
		in   []*Report
		want float64
		ok   bool
	}{
		{nil, 0, false},
		{mk(5), 5, true},
		{mk(9, 1, 5), 5, true},
		{mk(4, 1, 3, 2), 2.5, true},
	}
	for _, tc := range tests {
		got, ok := medianOf(tc.in, get)
		if got != tc.want || ok != tc.ok {
			t.Errorf("medianOf(%d reports) = %g, %v; want %g, %v", len(tc.in), got, ok, tc.want, tc.ok)
		}
	}
}

func TestCompare(t *testing.T) {
	lat, _ := figureByKey("latency_p99_ms")
	rate, _ := figureByKey("publishes_per_s")
	tests := []struct {
		f             figure
		rv, cv        float64
		ratio, winner string
	}{
		{lat, 50, 100, "0.50", "relay"},
		{lat, 200, 100, "2.00", "Centrifugo"},
		{lat, 102, 100, "1.02", "level"},
		{rate, 200, 100, "2.00", "relay"},
		{rate, 0, 0, "=", "level"},
		{rate, 5, 0, "∞", "relay"},
	}
	for _, tc := range tests {
		ratio, who := compare(tc.f, tc.rv, true, tc.cv, true)
		if ratio != tc.ratio || who != tc.winner {
			t.Errorf("compare(%s, %g, %g) = %s, %s; want %s, %s", tc.f.key, tc.rv, tc.cv, ratio, who, tc.ratio, tc.winner)
		}
	}
	if r, w := compare(lat, 1, true, 0, false); r != "" || w != "" {
		t.Errorf("compare with a missing side = %q, %q", r, w)
	}
}

func TestSummarize(t *testing.T) {
	fan := func(target string, p99, cpu float64, clean bool) *Report {
		return &Report{Label: "fanout", Target: target, Subscribers: 1000, Topics: 1, Publishers: 1, Messages: 1000, Rate: 100,
			ServerPID: 1, LatencyP99Ms: p99, CPUUsPerDelivery: cpu, PublishesPerS: 100, DeliveriesPerS: 1e5, Clean: clean}
	}
	step := func(target string, rate, p99 float64, clean bool) *Report {
		return &Report{Label: "limit-" + target, Target: target, Subscribers: 1000, Topics: 1, Messages: 5000, Rate: rate,
			LatencyP99Ms: p99, PublishesPerS: rate, Clean: clean}
	}
	reps := []*Report{
		fan(TargetRelay, 10, 4, true), fan(TargetCentrifugo, 100, 11, true),
		fan(TargetRelay, 300, 5, false), fan(TargetCentrifugo, 110, 12, true),
		fan(TargetRelay, 20, 6, true), fan(TargetCentrifugo, 90, 10, true),
		step(TargetRelay, 500, 10, true), step(TargetRelay, 1000, 300, true), step(TargetRelay, 2000, 400, false),
		step(TargetCentrifugo, 500, 20, true), step(TargetCentrifugo, 1000, 40, true), step(TargetCentrifugo, 2000, 400, true),
		{Label: "limit-x", Target: TargetCentrifugo, Subscribers: 1000, Topics: 1, Messages: 5000, Rate: 4000, LatencyP99Ms: 10, PublishesPerS: 3000, Clean: true},
	}
	goals := []goal{
		{label: "fanout", key: "cpu_us_per_delivery", op: "<=", ratio: 0.5},
		{label: "fanout", key: "latency_p99_ms", op: "<=", ratio: 1},
		{label: "idle", key: "kb_per_connection", op: "<=", ratio: 0.5},
	}
	reps = append(reps, &Report{Label: "ingest", Target: TargetCentrifugo, Messages: 10, Topics: 1, PublishesPerS: 7000})
	md := summarize(reps, goals, "limit-", 250)
	for _, want := range []string{
		"### fanout",
		"| latency p99 ms | 20 | 100 | 0.20 | relay |",       // medians 20 vs 100
		"| server CPU µs/delivery | 5 | 11 | 0.45 | relay |", // 5 vs 11
		"| clean runs | 2/3 | 3/3 | | |",
		"| 1000 | 1000 | 300 | 0 | no (p99) | 1000 | 40 | 0 | yes |",
		"Highest clean rate: relay 500 msgs/s, Centrifugo 1000 msgs/s.",
		"| 4000 | — | — | — | not run | 3000 | 10 | 0 | no (rate not reached) |",
		"| fanout | server CPU µs/delivery | <= 0.5 | 0.45 | yes |",
		"| idle | server KB/connection | <= 0.5 | not run | no |",
		"### Where the relay is behind",
		"- fanout: only 2/3 relay runs were clean",
		"- limit-: highest clean rate 500 msgs/s for the relay vs 1000 for Centrifugo.",
		"- idle: target server KB/connection <= 0.5 missed (measured not run).",
		"| publishes/s | — | 7000 |  |  |",
		"- ingest: the relay was not measured",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
}

func TestSummarizeMain(t *testing.T) {
	dir := t.TempDir()
	for i, target := range []string{TargetRelay, TargetCentrifugo} {
		r := &Report{Label: "idle", Target: target, Subscribers: 10000, Topics: 1, HoldS: 10, ServerPID: 1, KBPerConnection: float64(10 + 20*i)}
		f, err := os.Create(filepath.Join(dir, target+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.writeJSON(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	var out, errOut bytes.Buffer
	code := Main(t.Context(), []string{"summarize", "--goal", "idle kb_per_connection <= 0.5",
		filepath.Join(dir, "relay.json"), filepath.Join(dir, "centrifugo.json")}, &out, &errOut)
	if code != 0 {
		t.Fatalf("summarize = %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "| server KB/connection | 10 | 30 | 0.33 | relay |") ||
		!strings.Contains(out.String(), "| idle | server KB/connection | <= 0.5 | 0.33 | yes |") {
		t.Fatalf("summary:\n%s", out.String())
	}
	for _, bad := range [][]string{{"summarize"}, {"summarize", "--goal", "x y"}, {"summarize", "--goal", "a nosuch <= 1", "f"}} {
		if code := Main(t.Context(), bad, &out, &errOut); code != exitUsage {
			t.Errorf("Main(%q) = %d, want %d", bad, code, exitUsage)
		}
	}
	if code := Main(t.Context(), []string{"summarize", filepath.Join(dir, "missing.json")}, &out, &errOut); code != exitFail {
		t.Errorf("missing file: code %d, want %d", code, exitFail)
	}
	// A JSON file that is no report is refused by name (it panicked).
	other := filepath.Join(dir, "other.json")
	if err := os.WriteFile(other, []byte(`{"name":"not a report"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := Main(t.Context(), []string{"summarize", other}, &out, &errOut); code != exitFail || !strings.Contains(errOut.String(), "other.json") {
		t.Errorf("not a report: code %d (%s), want %d naming the file", code, errOut.String(), exitFail)
	}
}
