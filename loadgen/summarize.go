package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// figure is one number of a report that the comparison shows.
type figure struct {
	key         string // JSON name in Report, also used by --goal
	title       string
	lowerBetter bool
	get         func(*Report) float64
	show        func(*Report) bool // whether the figure applies to the scenario
}

func hasPublish(r *Report) bool  { return r.Messages > 0 }
func hasDelivery(r *Report) bool { return r.Messages > 0 && r.Subscribers > 0 }
func hasServer(r *Report) bool   { return r.ServerPID > 0 }
func hasHold(r *Report) bool     { return r.HoldS > 0 }

var figures = []figure{
	{"publishes_per_s", "publishes/s", false, func(r *Report) float64 { return r.PublishesPerS }, hasPublish},
	{"deliveries_per_s", "deliveries/s", false, func(r *Report) float64 { return r.DeliveriesPerS }, hasDelivery},
	{"lost", "lost", true, func(r *Report) float64 { return float64(r.Lost) }, hasDelivery},
	{"duplicated", "duplicated", true, func(r *Report) float64 { return float64(r.Duplicated) }, hasDelivery},
	{"out_of_order", "out of order", true, func(r *Report) float64 { return float64(r.OutOfOrder) }, hasDelivery},
	{"publish_errors", "publish errors", true, func(r *Report) float64 { return float64(r.PublishErrors) }, hasPublish},
	{"latency_p50_ms", "latency p50 ms", true, func(r *Report) float64 { return r.LatencyP50Ms }, hasDelivery},
	{"latency_p90_ms", "latency p90 ms", true, func(r *Report) float64 { return r.LatencyP90Ms }, hasDelivery},
	{"latency_p99_ms", "latency p99 ms", true, func(r *Report) float64 { return r.LatencyP99Ms }, hasDelivery},
	{"latency_max_ms", "latency max ms", true, func(r *Report) float64 { return r.LatencyMaxMs }, hasDelivery},
	{"cpu_us_per_delivery", "server CPU µs/delivery", true, func(r *Report) float64 { return r.CPUUsPerDelivery }, func(r *Report) bool { return hasServer(r) && hasDelivery(r) }},
	{"cpu_us_per_publish", "server CPU µs/publish", true, func(r *Report) float64 { return r.CPUUsPerPublish }, func(r *Report) bool { return hasServer(r) && hasPublish(r) }},
	{"store_cpu_us_per_publish", "store (Valkey) CPU µs/publish", true, func(r *Report) float64 { return r.StoreCPUUsPerPublish }, func(r *Report) bool { return r.StorePID > 0 && hasPublish(r) }},
	{"loadgen_cpu_us_per_publish", "load generator CPU µs/publish", true, func(r *Report) float64 { return r.LoadgenCPUUsPerPublish }, func(r *Report) bool { return hasServer(r) && hasPublish(r) }},
	{"connect_s", "connect time s", true, func(r *Report) float64 { return r.ConnectS }, func(r *Report) bool { return r.Subscribers >= 1000 }},
	{"connect_failed", "connects failed", true, func(r *Report) float64 { return float64(r.ConnectFailed) }, func(r *Report) bool { return r.Subscribers > 0 }},
	{"kb_per_connection", "server KB/connection", true, func(r *Report) float64 { return r.KBPerConnection }, func(r *Report) bool { return hasServer(r) && hasHold(r) }},
	{"rss_end_kb", "server RSS at end KB", true, func(r *Report) float64 { return float64(r.RSSEndKB) }, hasServer},
}

func figureByKey(key string) (figure, bool) {
	for _, f := range figures {
		if f.key == key {
			return f, true
		}
	}
	return figure{}, false
}

// goal is a target ratio relay/centrifugo for one figure of one scenario,
// e.g. "fanout cpu_us_per_delivery <= 0.5".
type goal struct {
	label, key, op string
	ratio          float64
}

func parseGoal(s string) (goal, error) {
	f := strings.Fields(s)
	if len(f) != 4 || (f[2] != "<=" && f[2] != ">=") {
		return goal{}, fmt.Errorf("goal %q: want \"LABEL FIGURE <=|>= RATIO\"", s)
	}
	if _, ok := figureByKey(f[1]); !ok {
		return goal{}, fmt.Errorf("goal %q: unknown figure %q", s, f[1])
	}
	r, err := strconv.ParseFloat(f[3], 64)
	if err != nil || r < 0 {
		return goal{}, fmt.Errorf("goal %q: bad ratio %q", s, f[3])
	}
	return goal{label: f[0], key: f[1], op: f[2], ratio: r}, nil
}

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, "; ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// summarizeMain implements `relay bench summarize [--goal G]... [--step-prefix P] [--max-p99-ms N] REPORT.json...`:
// it groups the reports by label and target, takes the median of each figure,
// and writes Markdown tables with the ratio relay/centrifugo, the goals met
// or missed, and a list of the figures where the relay is behind. Reports
// whose label starts with the step prefix are rate steps: for each target the
// highest rate that passed (see stepPassed) is reported.
func summarizeMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench summarize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var goals multiFlag
	fs.Var(&goals, "goal", `target as "LABEL FIGURE <=|>= RATIO" (ratio relay/centrifugo); repeatable`)
	stepPrefix := fs.String("step-prefix", "", "labels starting with this are rate steps of a limit search")
	maxP99 := fs.Float64("max-p99-ms", 250, "a rate step is clean only with p99 latency at most this")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	var gs []goal
	for _, g := range goals {
		pg, err := parseGoal(g)
		if err != nil {
			fmt.Fprintf(stderr, "bench summarize: %v\n", err)
			return exitUsage
		}
		gs = append(gs, pg)
	}
	reps, err := readReports(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "bench summarize: %v\n", err)
		return exitFail
	}
	if len(reps) == 0 {
		fmt.Fprintln(stderr, "bench summarize: no report files given")
		return exitUsage
	}
	s := summarize(reps, gs, *stepPrefix, *maxP99)
	if _, err := io.WriteString(stdout, s); err != nil {
		fmt.Fprintf(stderr, "bench summarize: %v\n", err)
		return exitFail
	}
	return exitOK
}

// scenario is the runs of one label, by target.
type scenario struct {
	label string
	runs  map[string][]*Report
}

// summarize renders the comparison as Markdown.
func summarize(reps []*Report, goals []goal, stepPrefix string, maxP99 float64) string {
	var scen []*scenario
	var steps []*Report
	byLabel := map[string]*scenario{}
	for _, r := range reps {
		if stepPrefix != "" && strings.HasPrefix(r.Label, stepPrefix) {
			steps = append(steps, r)
			continue
		}
		s := byLabel[r.Label]
		if s == nil {
			s = &scenario{label: r.Label, runs: map[string][]*Report{}}
			byLabel[r.Label] = s
			scen = append(scen, s)
		}
		s.runs[r.Target] = append(s.runs[r.Target], r)
	}
	var b strings.Builder
	var behind []string
	for _, s := range scen {
		behind = append(behind, writeScenario(&b, s)...)
	}
	if len(steps) > 0 {
		behind = append(behind, writeSteps(&b, stepPrefix, steps, maxP99)...)
	}
	if len(goals) > 0 {
		behind = append(behind, writeGoals(&b, goals, byLabel)...)
	}
	b.WriteString("### Where the relay is behind\n\n")
	if len(behind) == 0 {
		b.WriteString("Nowhere in these runs: every figure is level with or better than Centrifugo's, and every target is met.\n")
	}
	for _, line := range slices.Compact(behind) {
		b.WriteString("- " + line + "\n")
	}
	return b.String()
}

func writeScenario(b *strings.Builder, s *scenario) (behind []string) {
	relay, cf := s.runs[TargetRelay], s.runs[TargetCentrifugo]
	ref := append(append([]*Report(nil), relay...), cf...)[0]
	fmt.Fprintf(b, "### %s\n\n%s. Runs: relay %d, Centrifugo %d; medians.\n\n", s.label, workload(ref), len(relay), len(cf))
	b.WriteString("| figure | relay | Centrifugo | relay/Centrifugo | ahead |\n|---|---:|---:|---:|---|\n")
	for _, f := range figures {
		if !f.show(ref) {
			continue
		}
		rv, rok := medianOf(relay, f.get)
		cv, cok := medianOf(cf, f.get)
		ratio, ahead := compare(f, rv, rok, cv, cok)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", f.title, cell(rv, rok), cell(cv, cok), ratio, ahead)
		if ahead == "Centrifugo" {
			behind = append(behind, fmt.Sprintf("%s: %s is %s for the relay vs %s for Centrifugo (%s).", s.label, f.title, cell(rv, rok), cell(cv, cok), ratio))
		}
	}
	fmt.Fprintf(b, "| clean runs | %s | %s | | |\n", cleanCount(relay), cleanCount(cf))
	rl, rok := medianOf(relay, func(r *Report) float64 { return r.LoadAvg1 })
	cl, cok := medianOf(cf, func(r *Report) float64 { return r.LoadAvg1 })
	fmt.Fprintf(b, "| machine load at start (1-min avg, not a result) | %s | %s | | |\n\n", cell(rl, rok), cell(cl, cok))
	if len(relay) == 0 {
		behind = append(behind, fmt.Sprintf("%s: the relay was not measured (it did not start or the run failed; see the notes).", s.label))
	}
	if len(relay) > 0 && cleanRuns(relay) < len(relay) {
		behind = append(behind, fmt.Sprintf("%s: only %s relay runs were clean (loss, duplicates, reordering, errors or drops).", s.label, cleanCount(relay)))
	}
	return behind
}

// workload describes a report's scenario in words.
func workload(r *Report) string {
	w := fmt.Sprintf("%d subscribers over %d topics", r.Subscribers, r.Topics)
	if r.Messages > 0 {
		w += fmt.Sprintf(", %d messages from %d publishers at %s%s", r.Messages, r.Publishers, rateText(r.Rate), bulkText(r.Bulk))
	}
	if r.HoldS > 0 {
		w += fmt.Sprintf(", held idle %.0f s", r.HoldS)
	}
	return w
}

// compare returns the ratio cell and who is ahead ("relay", "Centrifugo" or
// "level" within 5%, or when both are zero).
func compare(f figure, rv float64, rok bool, cv float64, cok bool) (ratio, ahead string) {
	if !rok || !cok {
		return "", ""
	}
	switch {
	case cv != 0:
		ratio = fmt.Sprintf("%.2f", rv/cv)
	case rv == 0:
		ratio = "="
	default:
		ratio = "∞"
	}
	if rv == cv || (cv != 0 && math.Abs(rv/cv-1) <= 0.05) {
		return ratio, "level"
	}
	if (rv < cv) == f.lowerBetter {
		return ratio, "relay"
	}
	return ratio, "Centrifugo"
}

// medianOf returns the median of get over reps (the mean of the middle two
// for an even count); ok is false for no reports.
func medianOf(reps []*Report, get func(*Report) float64) (float64, bool) {
	if len(reps) == 0 {
		return 0, false
	}
	v := make([]float64, len(reps))
	for i, r := range reps {
		v[i] = get(r)
	}
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2], true
	}
	return (v[n/2-1] + v[n/2]) / 2, true
}

func cell(v float64, ok bool) string {
	switch {
	case !ok:
		return "—"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func cleanRuns(reps []*Report) int {
	n := 0
	for _, r := range reps {
		if r.Clean {
			n++
		}
	}
	return n
}

func cleanCount(reps []*Report) string {
	if len(reps) == 0 {
		return "—"
	}
	return fmt.Sprintf("%d/%d", cleanRuns(reps), len(reps))
}

// writeSteps renders a limit search: per rate, each target's outcome, and the
// highest clean rate per target.
func writeSteps(b *strings.Builder, prefix string, steps []*Report, maxP99 float64) (behind []string) {
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].Rate < steps[j].Rate })
	r0 := steps[0]
	fmt.Fprintf(b, "### %s\n\n%d subscribers over %d topics, %d publishers, %d messages per step; the rate is stepped up until a step fails: loss, errors, p99 > %.0f ms, or under 90%% of the rate sent. One run per step.\n\n",
		prefix, r0.Subscribers, r0.Topics, r0.Publishers, r0.Messages, maxP99)
	b.WriteString("| rate msgs/s | relay sent/s | relay p99 ms | relay lost | relay passed | Centrifugo sent/s | Centrifugo p99 ms | Centrifugo lost | Centrifugo passed |\n|---:|---:|---:|---:|---|---:|---:|---:|---|\n")
	type key struct {
		rate   float64
		target string
	}
	at := map[key]*Report{}
	var rates []float64
	best := map[string]float64{}
	for _, r := range steps {
		if _, seen := at[key{r.Rate, TargetRelay}]; !seen {
			if _, seen := at[key{r.Rate, TargetCentrifugo}]; !seen {
				rates = append(rates, r.Rate)
			}
		}
		at[key{r.Rate, r.Target}] = r
		if stepPassed(r, maxP99) && r.Rate > best[r.Target] {
			best[r.Target] = r.Rate
		}
	}
	for _, rate := range rates {
		fmt.Fprintf(b, "| %g |", rate)
		for _, t := range []string{TargetRelay, TargetCentrifugo} {
			r := at[key{rate, t}]
			if r == nil {
				b.WriteString(" — | — | — | not run |")
				continue
			}
			fmt.Fprintf(b, " %s | %s | %d | %s |", cell(r.PublishesPerS, true), cell(r.LatencyP99Ms, true), r.Lost, stepVerdict(r, maxP99))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "\nHighest clean rate: relay %g msgs/s, Centrifugo %g msgs/s.\n\n", best[TargetRelay], best[TargetCentrifugo])
	if best[TargetRelay] < best[TargetCentrifugo] {
		behind = append(behind, fmt.Sprintf("%s: highest clean rate %g msgs/s for the relay vs %g for Centrifugo.", prefix, best[TargetRelay], best[TargetCentrifugo]))
	}
	return behind
}

// stepPassed: the step was clean, its p99 latency at most maxP99, and the
// publishers reached at least 90% of the asked rate (a server that cannot
// take the rate has reached its limit even if nothing was lost).
func stepPassed(r *Report, maxP99 float64) bool {
	return r.Clean && r.LatencyP99Ms <= maxP99 && r.PublishesPerS >= 0.9*r.Rate
}

func stepVerdict(r *Report, maxP99 float64) string {
	switch {
	case !r.Clean:
		return "no (loss or errors)"
	case r.LatencyP99Ms > maxP99:
		return "no (p99)"
	case r.PublishesPerS < 0.9*r.Rate:
		return "no (rate not reached)"
	}
	return "yes"
}

// writeGoals renders the targets table.
func writeGoals(b *strings.Builder, goals []goal, byLabel map[string]*scenario) (behind []string) {
	b.WriteString("### Targets\n\n| scenario | figure | target relay/Centrifugo | measured | met |\n|---|---|---|---:|---|\n")
	for _, g := range goals {
		f, _ := figureByKey(g.key)
		measured, met := "not run", "no"
		if s := byLabel[g.label]; s != nil {
			rv, rok := medianOf(s.runs[TargetRelay], f.get)
			cv, cok := medianOf(s.runs[TargetCentrifugo], f.get)
			if rok && cok {
				ratio := math.Inf(1)
				switch {
				case cv != 0:
					ratio = rv / cv
				case rv == 0:
					ratio = 1
				}
				measured = fmt.Sprintf("%.2f", ratio)
				if (g.op == "<=" && ratio <= g.ratio) || (g.op == ">=" && ratio >= g.ratio) {
					met = "yes"
				}
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s %g | %s | %s |\n", g.label, f.title, g.op, g.ratio, measured, met)
		if met != "yes" {
			behind = append(behind, fmt.Sprintf("%s: target %s %s %g missed (measured %s).", g.label, f.title, g.op, g.ratio, measured))
		}
	}
	b.WriteString("\n")
	return behind
}
