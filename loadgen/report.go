package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one run; its JSON form is what `--json` writes and
// what `bench summarize` reads. Durations are in the unit their name ends in.
// Server figures are zero when no --server-pid was given.
type Report struct {
	Label        string  `json:"label,omitempty"`
	Target       string  `json:"target"`
	Addr         string  `json:"addr"`
	Subscribers  int     `json:"subscribers"`
	Topics       int     `json:"topics"`
	Publishers   int     `json:"publishers"`
	Messages     int     `json:"messages"`
	Rate         float64 `json:"rate"`
	Bulk         int     `json:"bulk,omitempty"`
	PayloadBytes int     `json:"payload_bytes"`
	Started      string  `json:"started"`

	Connected     int     `json:"connected"`
	ConnectFailed int     `json:"connect_failed"`
	ConnectS      float64 `json:"connect_s"`
	ConnectP50Ms  float64 `json:"connect_p50_ms"`
	ConnectP99Ms  float64 `json:"connect_p99_ms"`
	HoldS         float64 `json:"hold_s"`
	// Held: subscribers still connected when the server's memory was
	// sampled (after the hold, or after connecting without one): Connected
	// minus those dropped by then (a long-poll answered 429, a stream or
	// socket the server closed). KBPerConnection divides by it.
	Held int `json:"held"`

	Published     uint64  `json:"published"`
	PublishErrors uint64  `json:"publish_errors"`
	PublishS      float64 `json:"publish_s"`
	PublishesPerS float64 `json:"publishes_per_s"`
	// Refused: messages whose publish was answered 503 or 429, not counted in
	// PublishErrors. Publish* and Refused* latencies are per request, from
	// sending it until its answer: acknowledged ones and refused ones.
	Refused      uint64  `json:"refused"`
	PublishP50Ms float64 `json:"publish_p50_ms"`
	PublishP99Ms float64 `json:"publish_p99_ms"`
	PublishMaxMs float64 `json:"publish_max_ms"`
	RefusedP50Ms float64 `json:"refused_p50_ms"`
	RefusedP99Ms float64 `json:"refused_p99_ms"`
	RefusedMaxMs float64 `json:"refused_max_ms"`

	Expected       uint64  `json:"expected"`
	Delivered      uint64  `json:"delivered"`
	DeliverS       float64 `json:"deliver_s"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	Lost           uint64  `json:"lost"`
	Duplicated     uint64  `json:"duplicated"`
	OutOfOrder     uint64  `json:"out_of_order"`
	Unexpected     uint64  `json:"unexpected"`
	Foreign        uint64  `json:"foreign"`
	Malformed      uint64  `json:"malformed"`
	Dropped        uint64  `json:"dropped"`

	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP90Ms float64 `json:"latency_p90_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	LatencyMaxMs float64 `json:"latency_max_ms"`

	// Slow subscribers (--slow-subscribers): asked for, subscribed, how each
	// ended ("open", "closed 4008", "closed without close frame", "connect
	// failed") and the frames the end-of-run probe read from them. They are
	// not in any figure above.
	SlowSubscribers int            `json:"slow_subscribers,omitempty"`
	SlowConnected   int            `json:"slow_connected,omitempty"`
	SlowOutcomes    map[string]int `json:"slow_outcomes,omitempty"`
	SlowFramesRead  uint64         `json:"slow_frames_read,omitempty"`

	ServerPID        int     `json:"server_pid,omitempty"`
	ServerCPUS       float64 `json:"server_cpu_s"`
	CPUUsPerDelivery float64 `json:"cpu_us_per_delivery"`
	CPUUsPerPublish  float64 `json:"cpu_us_per_publish"`
	RSSBeforeKB      int64   `json:"rss_before_kb"`
	RSSConnectedKB   int64   `json:"rss_connected_kb"`
	RSSAfterHoldKB   int64   `json:"rss_after_hold_kb"`
	RSSEndKB         int64   `json:"rss_end_kb"`
	KBPerConnection  float64 `json:"kb_per_connection"`
	// Processes: how many server processes held the connections, each
	// with its own load generator, when this report merges simultaneous
	// runs (`bench merge`); 0 for a single run. The RSS figures are then
	// their sums.
	Processes         int    `json:"processes,omitempty"`
	ServerStatsErrors string `json:"server_stats_error,omitempty"`

	// LoadgenCPUS is this load generator's own CPU over the publish phase:
	// when it nears the machine's cores, the client, not the server, limits
	// the rates.
	LoadgenCPUS float64 `json:"loadgen_cpu_s"`
	// LoadgenCPUUsPerPublish is LoadgenCPUS per acknowledged publish.
	LoadgenCPUUsPerPublish float64 `json:"loadgen_cpu_us_per_publish"`
	// StoreCPUS is the store's (Valkey's) CPU over the publish phase, when
	// --store-pid names it: with the server's and the load generator's it
	// is the machine's whole budget per publish.
	StorePID             int     `json:"store_pid,omitempty"`
	StoreCPUS            float64 `json:"store_cpu_s,omitempty"`
	StoreCPUUsPerPublish float64 `json:"store_cpu_us_per_publish,omitempty"`
	// LoadAvg1 is the machine's 1-minute load average when the run started
	// (from /proc/loadavg): other work on a shared machine shows up here.
	LoadAvg1 float64 `json:"loadavg_1m"`

	// Clean: every acknowledged message reached every subscriber of its topic
	// exactly once and in order, and nothing else did (a refused publish
	// delivered anyway is unexpected: 503 means not stored), every publish
	// and connect succeeded (refused publishes allowed with
	// --allow-refusals), every slow subscriber subscribed, and no subscriber
	// was dropped.
	Clean       bool           `json:"clean"`
	Errors      map[string]int `json:"errors,omitempty"`
	FirstErrors []string       `json:"first_errors,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeJSON writes r as indented JSON.
func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}

// writeTable writes r as a two-column human table.
func (r *Report) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	if r.Label != "" {
		row("label", "%s", r.Label)
	}
	row("target", "%s at %s", r.Target, r.Addr)
	row("workload", "%d subscribers, %d topics, %d publishers, %d messages, rate %s%s",
		r.Subscribers, r.Topics, r.Publishers, r.Messages, rateText(r.Rate), bulkText(r.Bulk))
	row("connect", "%d ok, %d failed in %.2f s (p50 %.1f ms, p99 %.1f ms)", r.Connected, r.ConnectFailed, r.ConnectS, r.ConnectP50Ms, r.ConnectP99Ms)
	if r.HoldS > 0 {
		row("hold", "%.1f s", r.HoldS)
	}
	if r.Messages > 0 {
		row("publishes", "%d ok, %d refused (503/429), %d failed in %.2f s: %.0f ok/s", r.Published, r.Refused, r.PublishErrors, r.PublishS, r.PublishesPerS)
		row("publish ms p50 / p99 / max (acknowledged)", "%.2f / %.2f / %.2f", r.PublishP50Ms, r.PublishP99Ms, r.PublishMaxMs)
		if r.Refused > 0 {
			row("refusal ms p50 / p99 / max", "%.2f / %.2f / %.2f", r.RefusedP50Ms, r.RefusedP99Ms, r.RefusedMaxMs)
		}
		row("deliveries", "%d of %d owed in %.2f s: %.0f/s", r.Delivered, r.Expected, r.DeliverS, r.DeliveriesPerS)
		row("lost / dup / out-of-order", "%d / %d / %d", r.Lost, r.Duplicated, r.OutOfOrder)
		if r.Unexpected+r.Foreign+r.Malformed+r.Dropped > 0 {
			row("unexpected / foreign / malformed / dropped subs", "%d / %d / %d / %d", r.Unexpected, r.Foreign, r.Malformed, r.Dropped)
		}
		row("latency ms p50 / p90 / p99 / max", "%.2f / %.2f / %.2f / %.2f", r.LatencyP50Ms, r.LatencyP90Ms, r.LatencyP99Ms, r.LatencyMaxMs)
	}
	if r.SlowSubscribers > 0 {
		row("slow subscribers (not in the figures above)", "%d, %d subscribed; ended: %s; %d frames read after the run", r.SlowSubscribers, r.SlowConnected, outcomesText(r.SlowOutcomes), r.SlowFramesRead)
	}
	if r.ServerPID > 0 {
		row("server cpu", "%.2f s: %.2f µs/delivery, %.2f µs/publish", r.ServerCPUS, r.CPUUsPerDelivery, r.CPUUsPerPublish)
		row("server rss KB before / connected / after hold / end", "%d / %d / %d / %d", r.RSSBeforeKB, r.RSSConnectedKB, r.RSSAfterHoldKB, r.RSSEndKB)
		row("KB per connection", "%.1f (%d connections held when sampled)", r.KBPerConnection, r.Held)
		if r.Processes > 0 {
			row("server processes (merged runs)", "%d", r.Processes)
		}
	}
	if r.Messages > 0 {
		row("load generator cpu", "%.2f s over the publish phase: %.2f µs/publish", r.LoadgenCPUS, r.LoadgenCPUUsPerPublish)
	}
	if r.StorePID > 0 && r.Messages > 0 {
		row("store cpu", "%.2f s over the publish phase: %.2f µs/publish", r.StoreCPUS, r.StoreCPUUsPerPublish)
	}
	if r.ServerStatsErrors != "" {
		row("server stats error", "%s", r.ServerStatsErrors)
	}
	row("machine load (1 min) at start", "%.2f", r.LoadAvg1)
	row("clean", "%v", r.Clean)
	kinds := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		row("errors: "+k, "%d", r.Errors[k])
	}
	for _, e := range r.FirstErrors {
		row("first error", "%s", e)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table report: %w", err)
	}
	return nil
}

// outcomesText renders slow-subscriber outcomes as "closed 4008: 1, open: 2".
func outcomesText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, m[k])
	}
	return b.String()
}

func bulkText(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(", %d per bulk request", n)
}

func rateText(r float64) string {
	if r <= 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%g/s", r)
}
