package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports (sysconf would need cgo).
const clockTicks = 100

// procSample is a server process's CPU time and resident memory at one moment.
type procSample struct {
	CPU   time.Duration // utime + stime
	RSSKB int64         // VmRSS
}

// readProc samples /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("server stats: %w", err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return procSample{}, fmt.Errorf("server stats: pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("server stats: %w", err)
	}
	rss, err := parseStatusRSS(status)
	if err != nil {
		return procSample{}, fmt.Errorf("server stats: pid %d: %w", pid, err)
	}
	return procSample{CPU: cpu, RSSKB: rss}, nil
}

// parseStatCPU returns utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')': utime and stime are fields 14 and 15.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no ')' in %.60q", stat)
	}
	fields := bytes.Fields(stat[i+1:])
	const utime = 14 - 3 // fields after ')' start at field 3 (state)
	if len(fields) <= utime+1 {
		return 0, fmt.Errorf("stat: only %d fields after the command", len(fields))
	}
	u, err1 := strconv.ParseUint(string(fields[utime]), 10, 64)
	s, err2 := strconv.ParseUint(string(fields[utime+1]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: bad utime %q or stime %q", fields[utime], fields[utime+1])
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// parseStatusRSS returns VmRSS in KB from the text of /proc/<pid>/status.
func parseStatusRSS(status []byte) (int64, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 1 {
			break
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: bad VmRSS %q", rest)
		}
		return kb, nil
	}
	return 0, fmt.Errorf("status: no VmRSS line (is the process a zombie?)")
}

// readLoadAvg returns the 1-minute load average from /proc/loadavg (0 when
// it cannot be read): how busy the shared machine was around a run.
func readLoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil {
		return 0
	}
	return v
}
