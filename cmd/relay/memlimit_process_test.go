package main

import (
	"net/http"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestProcessMemoryLimit (issue 15 item 13): RELAY_MEMORY_LIMIT sets the Go
// runtime's soft memory limit, GOMEMLIMIT is honoured without it, and the
// relay's own /metrics shows the limit in force (go_gc_gomemlimit_bytes).
func TestProcessMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want float64
	}{
		{"RELAY_MEMORY_LIMIT=256MiB", 256 << 20},
		{"GOMEMLIMIT=300MiB", 300 << 20},
		{"RELAY_MEMORY_LIMIT=268435456", 256 << 20},
	} {
		t.Run(tc.env, func(t *testing.T) {
			p := startProcess(t, tc.env)
			resp, err := http.Get("http://" + p.addr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			parser := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := parser.TextToMetricFamilies(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			f := fams["go_gc_gomemlimit_bytes"]
			if f == nil || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge().GetValue() != tc.want {
				t.Fatalf("go_gc_gomemlimit_bytes = %v, want %v", f.GetMetric(), tc.want)
			}
		})
	}
}
