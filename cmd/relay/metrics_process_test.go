package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestProcessServesMetrics: the binary serves /metrics with the relay's
// counters and the Go and process collectors, and RELAY_METRICS_MAX_TOPICS
// caps the topic label.
func TestProcessServesMetrics(t *testing.T) {
	p := startProcess(t, "RELAY_METRICS_MAX_TOPICS=2")
	for i := range 4 {
		resp, err := http.Post("http://"+p.addr+"/api/v1/messages", "application/json",
			strings.NewReader(fmt.Sprintf(`{"topic":"t%d","payload":{}}`, i)))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("publish: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "relay_messages_received_total",
		"relay_storage_operations_total", "relay_http_requests_total"} {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	var topics []string
	var sent float64
	for _, m := range fams["relay_messages_sent_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "topic" {
				topics = append(topics, l.GetValue())
			}
		}
		sent += m.GetCounter().GetValue()
	}
	sort.Strings(topics)
	if strings.Join(topics, ",") != "_other,t0,t1" || sent != 4 {
		t.Errorf("relay_messages_sent_total topics %v (sum %v), want [_other t0 t1] (sum 4)", topics, sent)
	}
}
