package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// holdReport is a connect-and-hold report of one server process.
func holdReport(pid int, addr string, held int, before, after int64) *Report {
	return &Report{
		Label: "idle-50k", Target: TargetRelay, Addr: addr, Subscribers: held, Topics: 1,
		Connected: held, Held: held, HoldS: 10, ConnectS: float64(pid % 7), ConnectP99Ms: float64(pid % 5),
		ServerPID: pid, RSSBeforeKB: before, RSSConnectedKB: after, RSSAfterHoldKB: after, RSSEndKB: after,
		KBPerConnection: float64(after-before) / float64(held), Clean: true,
	}
}

// mergeFiles writes reps as JSON files and runs `bench merge` on them.
func mergeFiles(t *testing.T, reps ...*Report) (*Report, int, string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"merge"}
	for i, r := range reps {
		path := filepath.Join(dir, "r"+string(rune('a'+i))+".json")
		var b bytes.Buffer
		if err := r.writeJSON(&b); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
	if code != exitOK {
		return nil, code, errOut.String()
	}
	var m Report
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("merge output is not a report: %v\n%s", err, out.String())
	}
	return &m, code, errOut.String()
}

// TestMergeHoldsSumsServers: three servers' simultaneous holds merge into
// one report whose memory per connection is their summed growth over the
// connections they held together, each server's baseline subtracted once.
func TestMergeHoldsSumsServers(t *testing.T) {
	m, code, stderr := mergeFiles(t,
		holdReport(101, "127.0.0.1:1", 16667, 17_000, 17_000+16667*20),
		holdReport(102, "127.0.0.1:2", 16667, 18_000, 18_000+16667*22),
		holdReport(103, "127.0.0.1:3", 16666, 19_000, 19_000+16666*24),
	)
	if code != exitOK {
		t.Fatalf("merge exited %d: %s", code, stderr)
	}
	if m.Processes != 3 || m.Held != 50000 || m.Connected != 50000 || m.Subscribers != 50000 {
		t.Fatalf("processes %d, held %d, connected %d, subscribers %d; want 3 and 50000 each", m.Processes, m.Held, m.Connected, m.Subscribers)
	}
	if m.RSSBeforeKB != 54_000 {
		t.Fatalf("rss before %d KB, want the sum 54000", m.RSSBeforeKB)
	}
	want := float64(16667*20+16667*22+16666*24) / 50000
	if m.KBPerConnection != want {
		t.Fatalf("KB per connection %v, want %v", m.KBPerConnection, want)
	}
	if m.Addr != "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3" || m.ServerPID != 101 || !m.Clean || m.HoldS != 10 {
		t.Fatalf("addr %q pid %d clean %v hold %v", m.Addr, m.ServerPID, m.Clean, m.HoldS)
	}
	if m.ConnectS != 5 || m.ConnectP99Ms != 3 { // the longest of the parts: 101%7=3, 102%7=4, 103%7=5; 101%5=1, 102%5=2, 103%5=3
		t.Fatalf("connect %v s, p99 %v ms; want the parts' highest, 5 and 3", m.ConnectS, m.ConnectP99Ms)
	}
}

// TestMergeHoldsUnclean: one part that dropped a connection makes the merge
// unclean, and its errors are kept.
func TestMergeHoldsUnclean(t *testing.T) {
	bad := holdReport(202, "127.0.0.1:2", 10, 1000, 1100)
	bad.Clean, bad.Errors, bad.FirstErrors = false, map[string]int{"connect": 2}, []string{"dial: refused"}
	m, code, stderr := mergeFiles(t, holdReport(201, "127.0.0.1:1", 10, 1000, 1100), bad)
	if code != exitOK {
		t.Fatalf("merge exited %d: %s", code, stderr)
	}
	if m.Clean || m.Errors["connect"] != 2 || len(m.FirstErrors) != 1 {
		t.Fatalf("clean %v, errors %v, first errors %v; want unclean with the part's errors", m.Clean, m.Errors, m.FirstErrors)
	}
}

// TestMergeHoldsRefuses: reports that do not add up are refused with a
// reason, not merged.
func TestMergeHoldsRefuses(t *testing.T) {
	published := holdReport(302, "127.0.0.1:2", 10, 1000, 1100)
	published.Messages = 100
	other := holdReport(302, "127.0.0.1:2", 10, 1000, 1100)
	other.Target = TargetCentrifugo
	noHold := holdReport(302, "127.0.0.1:2", 10, 1000, 1100)
	noHold.HoldS = 0
	for name, tc := range map[string]struct {
		second *Report
		want   string
	}{
		"published":  {published, "only connect-and-hold"},
		"two labels": {other, "only one label and target"},
		"no hold":    {noHold, "no server memory after a hold"},
		"same pid":   {holdReport(301, "127.0.0.1:2", 10, 1000, 1100), "its own server"},
	} {
		t.Run(name, func(t *testing.T) {
			_, code, stderr := mergeFiles(t, holdReport(301, "127.0.0.1:1", 10, 1000, 1100), tc.second)
			if code != exitFail || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, exitFail, tc.want)
			}
		})
	}
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"merge"}, &out, &errOut); code != exitUsage {
		t.Fatalf("merge without files exited %d, want %d", code, exitUsage)
	}
}
