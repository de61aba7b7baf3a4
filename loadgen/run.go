package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// serverProbe samples the server's CPU and RSS when a pid was given, and
// remembers the first failure instead of failing the run.
type serverProbe struct {
	pid int
	err error
}

func (p *serverProbe) sample() procSample {
	if p.pid == 0 || p.err != nil {
		return procSample{}
	}
	s, err := readProc(p.pid)
	if err != nil {
		p.err = err
	}
	return s
}

// run executes one configured run against d and returns its report. Progress
// lines go to progress (nil: none). It fails only when nothing could be
// measured (no subscriber connected although some were asked for, or the
// readers could not be stopped); partial failures are counted in the report.
func run(ctx context.Context, cfg Config, d driver, progress io.Writer) (*Report, error) {
	clock := newRunClock()
	topics := make([]string, cfg.Topics)
	for i := range topics {
		topics[i] = topicName(cfg.Prefix, i)
	}
	r := &Report{
		Label: cfg.Label, Target: cfg.Target, Addr: cfg.addrs(),
		Subscribers: cfg.Subscribers, Topics: cfg.Topics, Publishers: cfg.Publishers,
		Messages: cfg.Messages, Rate: cfg.Rate, Bulk: cfg.Bulk, PayloadBytes: cfg.Pad,
		Started: clock.start.UTC().Format(time.RFC3339), ServerPID: cfg.ServerPID,
		LoadAvg1: readLoadAvg(),
	}
	probe := &serverProbe{pid: cfg.ServerPID}
	storeProbe := &serverProbe{pid: cfg.StorePID}
	var lat histogram
	f := newFleet(cfg.Subscribers, cfg.Prefix, clock, &lat)
	var pubs pubStats
	prog := startProgress(progress, cfg.Progress, f, &pubs, cfg)
	defer prog.stop()

	// Connect.
	before := probe.sample()
	prog.phase("connect")
	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTime)
	t0 := time.Now()
	f.connectAll(cctx, cfg, d, topics)
	cancel()
	r.ConnectS = time.Since(t0).Seconds()
	r.Connected, r.ConnectFailed = int(f.connected.Load()), int(f.failed.Load())
	r.ConnectP50Ms, r.ConnectP99Ms = ms(f.connHist.quantile(0.5)), ms(f.connHist.quantile(0.99))
	connected := probe.sample()
	r.Held = f.held()
	if cfg.Subscribers > 0 && r.Connected == 0 {
		_ = f.closeAll(5 * time.Second)
		_, first := f.errs.snapshot()
		return nil, fmt.Errorf("no subscriber could connect to %s: %v", cfg.Addr, first)
	}
	slow := &slowSubs{}
	if cfg.SlowSubs > 0 {
		cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTime)
		slow = connectSlow(cctx, cfg.Addr, cfg.SlowSubs, topics[0], cfg.Token)
		cancel()
	}
	defer slow.closeAll()

	// Hold.
	afterHold := connected
	if cfg.Hold > 0 {
		prog.phase("hold")
		h0 := time.Now()
		if !sleepUntil(ctx, h0.Add(cfg.Hold)) {
			prog.stop()
			_ = f.closeAll(5 * time.Second)
			return nil, fmt.Errorf("hold interrupted: %w", ctx.Err())
		}
		r.HoldS = time.Since(h0).Seconds()
		afterHold = probe.sample()
		r.Held = f.held()
	}

	// Publish, then wait for the last deliveries.
	acc := newAcceptedSet(cfg.Publishers, cfg.Topics)
	var cpuStart, cpuEnd procSample
	var pubStartNs int64
	if cfg.Messages > 0 {
		prog.phase("publish")
		cpuStart = probe.sample()
		storeStart := storeProbe.sample()
		selfStart := selfCPU()
		pubStartNs = clock.nowNs()
		p0 := time.Now()
		publishAll(ctx, cfg, d, clock, topics, acc, &pubs)
		r.PublishS = time.Since(p0).Seconds()
		prog.phase("grace")
		on := f.subscribersOn(cfg.Topics)
		var owed uint64
		for t := range cfg.Topics {
			owed += uint64(acc.topicCount(t) * on[t])
		}
		waitFor(ctx, cfg.Grace, func() bool { return f.fresh.Load() >= owed })
		cpuEnd = probe.sample()
		r.LoadgenCPUS = (selfCPU() - selfStart).Seconds()
		if cfg.StorePID > 0 {
			r.StorePID = cfg.StorePID
			r.StoreCPUS = (storeProbe.sample().CPU - storeStart.CPU).Seconds()
		}
	}
	prog.stop()
	end := probe.sample()
	if cfg.SlowSubs > 0 {
		slow.probe(cfg.SlowProbe)
	}
	if err := f.closeAll(15 * time.Second); err != nil {
		return nil, err
	}

	// Tally.
	t := tallyAll(f.subs, acc)
	r.Published, r.PublishErrors, r.Refused = pubs.ok.Load(), pubs.failed.Load(), pubs.refused.Load()
	r.PublishP50Ms, r.PublishP99Ms, r.PublishMaxMs = ms(pubs.okLat.quantile(0.5)), ms(pubs.okLat.quantile(0.99)), ms(pubs.okLat.max())
	r.RefusedP50Ms, r.RefusedP99Ms, r.RefusedMaxMs = ms(pubs.refusedLat.quantile(0.5)), ms(pubs.refusedLat.quantile(0.99)), ms(pubs.refusedLat.max())
	r.SlowSubscribers, r.SlowConnected, r.SlowFramesRead = cfg.SlowSubs, slow.connected(), slow.frames
	if len(slow.outcomes) > 0 {
		r.SlowOutcomes = slow.outcomes
	}
	if r.PublishS > 0 {
		r.PublishesPerS = float64(r.Published) / r.PublishS
	}
	r.Expected, r.Delivered = t.Expected, t.Delivered
	r.Lost, r.Duplicated, r.OutOfOrder = t.Lost, t.Duplicated, t.OutOfOrder
	r.Unexpected, r.Foreign, r.Malformed, r.Dropped = t.Unexpected, t.Foreign, t.Malformed, t.Dropped
	if t.Delivered > 0 && t.LastNs > pubStartNs {
		r.DeliverS = durationNs(t.LastNs - pubStartNs).Seconds()
		r.DeliveriesPerS = float64(t.Delivered) / r.DeliverS
	}
	r.LatencyP50Ms, r.LatencyP90Ms = ms(lat.quantile(0.5)), ms(lat.quantile(0.9))
	r.LatencyP99Ms, r.LatencyMaxMs = ms(lat.quantile(0.99)), ms(lat.max())
	if cfg.ServerPID > 0 {
		fillServer(r, before, connected, afterHold, cpuStart, cpuEnd, end)
	}
	if r.Published > 0 {
		r.LoadgenCPUUsPerPublish = r.LoadgenCPUS * 1e6 / float64(r.Published)
		r.StoreCPUUsPerPublish = r.StoreCPUS * 1e6 / float64(r.Published)
	}
	if err := errors.Join(probe.err, storeProbe.err); err != nil {
		r.ServerStatsErrors = err.Error()
	}
	r.Errors, r.FirstErrors = mergeErrors(&f.errs, &pubs.errs, &slow.errs)
	if cd, ok := d.(*consumerDriver); ok && cd.retries.Load() > 0 { // counted, not unclean
		if r.Errors == nil {
			r.Errors = map[string]int{}
		}
		r.Errors["poll retried after a transport error"] = int(cd.retries.Load())
	}
	r.Clean = r.ConnectFailed == 0 && r.PublishErrors == 0 && r.Lost == 0 && r.Duplicated == 0 &&
		r.OutOfOrder == 0 && r.Unexpected == 0 && r.Foreign == 0 && r.Malformed == 0 && r.Dropped == 0 &&
		(r.Refused == 0 || cfg.AllowRefusals) && r.SlowConnected == r.SlowSubscribers
	return r, nil
}

// fillServer derives the server figures from the /proc samples.
func fillServer(r *Report, before, connected, afterHold, cpuStart, cpuEnd, end procSample) {
	r.RSSBeforeKB, r.RSSConnectedKB, r.RSSAfterHoldKB, r.RSSEndKB = before.RSSKB, connected.RSSKB, afterHold.RSSKB, end.RSSKB
	cpu := cpuEnd.CPU - cpuStart.CPU
	r.ServerCPUS = cpu.Seconds()
	if r.Delivered > 0 {
		r.CPUUsPerDelivery = float64(cpu.Microseconds()) / float64(r.Delivered)
	}
	if r.Published > 0 {
		r.CPUUsPerPublish = float64(cpu.Microseconds()) / float64(r.Published)
	}
	// Per connection still held when the memory was sampled: with long-poll
	// a subscriber whose poll was refused (429) holds nothing on the server.
	if r.Held > 0 {
		r.KBPerConnection = float64(afterHold.RSSKB-before.RSSKB) / float64(r.Held)
	}
}

// mergeErrors combines the subscriber and publisher error logs.
func mergeErrors(logs ...*errorLog) (map[string]int, []string) {
	counts := map[string]int{}
	var first []string
	for _, l := range logs {
		c, f := l.snapshot()
		for k, v := range c {
			counts[k] += v
		}
		first = append(first, f...)
	}
	if len(counts) == 0 {
		counts = nil
	}
	if len(first) > errorLogKeep {
		first = first[:errorLogKeep]
	}
	return counts, first
}

// selfCPU returns this process's CPU time so far (0 where /proc is missing).
func selfCPU() time.Duration {
	s, err := readProc(os.Getpid())
	if err != nil {
		return 0
	}
	return s.CPU
}

// waitFor polls done every 5 ms until it is true, bound has passed, or ctx
// ended.
func waitFor(ctx context.Context, bound time.Duration, done func() bool) bool {
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}
