// Package sysmon keeps the Go runtime's sysmon thread out of its deep sleep
// in the relay's server process (and in the benchmark floors that stand for
// it), because on the machines the relay is measured on that sleep costs
// more than it saves.
//
// Why: sysmon sleeps deeply while every P is idle, and the next system call
// wakes it (runtime/proc.go: entersyscallWakeSysmon) and resets its poll to
// every 20 µs, which it keeps for at least 50 polls. A server that is idle
// between requests, even for a fraction of a millisecond, is put back into
// 20 µs polls by nearly every request, and each poll is a nanosleep: on a
// virtual machine that is a thread switch costing about 20 µs of CPU. A
// schedtrace period in GODEBUG is the runtime's only switch that keeps
// sysmon from sleeping deeply (its purpose, a line of scheduler state on
// stderr, is a side effect here): sysmon then backs off to 10 ms polls
// whenever it has nothing to retake, about 100 wake-ups a second on an idle
// process. Measured on the two-core machine of BENCHMARKS.md (bench/NOTES.md,
// item 54): CPU per delivery at 2,000 publishes/s over 1,000 topics about a
// sixth lower, Valkey ingest over 10 topics about a tenth faster.
//
// The runtime reads GODEBUG's schedtrace once, at start, so the setting
// takes a re-execution of the process (KeepAwake); the //go:debug directive
// does not accept it.
package sysmon

import "strings"

// Setting is the GODEBUG entry KeepAwake adds: the longest schedtrace period
// the runtime accepts (int32 milliseconds, about 24.8 days). The runtime
// prints its line of scheduler state on stderr once that long has passed on
// the host's monotonic clock (which starts at boot), then once per period:
// at most one line at start and one every 24.8 days. A fatal error's report
// starts with the scheduler's state as well (runtime: startpanic_m).
const Setting = "schedtrace=2147483647"

// Env returns env with Setting added to GODEBUG (appended to what GODEBUG
// holds, or a new GODEBUG entry), and true; or env unchanged and false when
// GODEBUG names schedtrace already: an operator's own value, including
// schedtrace=0 for the runtime's default behaviour, is kept. env is not
// modified.
func Env(env []string) ([]string, bool) {
	idx, val := -1, ""
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			idx, val = i, v // the first one is what the runtime reads
			break
		}
	}
	for _, field := range strings.Split(val, ",") {
		if key, _, _ := strings.Cut(field, "="); strings.TrimSpace(key) == "schedtrace" {
			return env, false
		}
	}
	out := append([]string(nil), env...)
	switch {
	case idx < 0:
		out = append(out, "GODEBUG="+Setting)
	case val == "":
		out[idx] = "GODEBUG=" + Setting
	default:
		out[idx] = "GODEBUG=" + val + "," + Setting
	}
	return out, true
}
