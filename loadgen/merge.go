package loadgen

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// mergeMain implements `relay bench merge REPORT.json...`: it writes to
// stdout, as JSON, one report for connect-and-hold runs (--messages 0) that
// ran at the same time against different server processes, as if one
// server had held all their connections.
//
// Why: a process here may open at most `ulimit -Hn` files (20,000 on the
// machines these benchmarks run on, and raising it is refused), so an idle
// count above that is held by several servers, each with its own load
// generator. Memory per connection is then the servers' summed growth over
// the connections they all held: each server's own baseline (the runtime,
// the listener) is subtracted once per server, as in a single run.
//
// Counts and memory are summed, the connect and hold times are the longest
// of the parts, connect percentiles the highest (an upper bound, not a
// percentile of the union), and the merge is clean only if every part was.
// Reports with published messages are refused: their latencies and rates do
// not add up.
func mergeMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench merge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "bench merge: no report files given")
		return exitUsage
	}
	reps, err := readReports(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "bench merge: %v\n", err)
		return exitFail
	}
	m, err := mergeHolds(reps)
	if err != nil {
		fmt.Fprintf(stderr, "bench merge: %v\n", err)
		return exitFail
	}
	if err := m.writeJSON(stdout); err != nil {
		fmt.Fprintf(stderr, "bench merge: %v\n", err)
		return exitFail
	}
	return exitOK
}

// readReports reads saved JSON reports.
func readReports(paths []string) ([]*Report, error) {
	reps := make([]*Report, 0, len(paths))
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if r.Target != TargetRelay && r.Target != TargetCentrifugo {
			return nil, fmt.Errorf("%s: not a bench report (target %q)", path, r.Target)
		}
		reps = append(reps, &r)
	}
	return reps, nil
}

// mergeHolds combines simultaneous connect-and-hold reports of one label
// and target against different server processes (see mergeMain).
func mergeHolds(reps []*Report) (*Report, error) {
	if len(reps) == 0 {
		return nil, errors.New("nothing to merge")
	}
	first := reps[0]
	m := &Report{
		Label: first.Label, Target: first.Target, Topics: first.Topics,
		PayloadBytes: first.PayloadBytes, Started: first.Started,
		ServerPID: first.ServerPID, LoadAvg1: first.LoadAvg1, Clean: true,
	}
	addrs := make([]string, 0, len(reps))
	pids := make(map[int]bool, len(reps))
	for i, r := range reps {
		switch {
		case r.Messages > 0:
			return nil, fmt.Errorf("report %d published %d messages: only connect-and-hold reports (--messages 0) merge", i+1, r.Messages)
		case r.Label != first.Label || r.Target != first.Target:
			return nil, fmt.Errorf("report %d is %s/%s, report 1 %s/%s: only one label and target merge", i+1, r.Label, r.Target, first.Label, first.Target)
		case r.ServerPID == 0 || r.HoldS == 0:
			return nil, fmt.Errorf("report %d has no server memory after a hold (--server-pid, --hold)", i+1)
		case pids[r.ServerPID]:
			return nil, fmt.Errorf("report %d measured server pid %d as an earlier one did: each part must be its own server", i+1, r.ServerPID)
		}
		pids[r.ServerPID] = true
		addrs = append(addrs, r.Addr)
		m.Subscribers += r.Subscribers
		m.Connected += r.Connected
		m.ConnectFailed += r.ConnectFailed
		m.Held += r.Held
		m.Dropped += r.Dropped
		m.ServerCPUS += r.ServerCPUS
		m.LoadgenCPUS += r.LoadgenCPUS
		m.RSSBeforeKB += r.RSSBeforeKB
		m.RSSConnectedKB += r.RSSConnectedKB
		m.RSSAfterHoldKB += r.RSSAfterHoldKB
		m.RSSEndKB += r.RSSEndKB
		m.ConnectS = max(m.ConnectS, r.ConnectS)
		m.ConnectP50Ms = max(m.ConnectP50Ms, r.ConnectP50Ms)
		m.ConnectP99Ms = max(m.ConnectP99Ms, r.ConnectP99Ms)
		m.HoldS = max(m.HoldS, r.HoldS)
		m.Clean = m.Clean && r.Clean
		for k, n := range r.Errors {
			if m.Errors == nil {
				m.Errors = map[string]int{}
			}
			m.Errors[k] += n
		}
		m.FirstErrors = append(m.FirstErrors, r.FirstErrors...)
		if r.ServerStatsErrors != "" {
			m.ServerStatsErrors = strings.TrimPrefix(m.ServerStatsErrors+"; "+r.ServerStatsErrors, "; ")
		}
	}
	m.Addr = strings.Join(addrs, ",")
	m.Processes = len(reps)
	if m.Held > 0 {
		m.KBPerConnection = float64(m.RSSAfterHoldKB-m.RSSBeforeKB) / float64(m.Held)
	}
	return m, nil
}
