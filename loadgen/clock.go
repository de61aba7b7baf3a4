package loadgen

import "time"

// runClock measures time since the start of a run on the process's monotonic
// clock. Payloads carry its readings; publisher and subscriber share it.
type runClock struct{ start time.Time }

func newRunClock() runClock { return runClock{start: time.Now()} }

// nowNs returns nanoseconds since the run started.
func (c runClock) nowNs() int64 { return int64(time.Since(c.start)) }

func durationNs(ns int64) time.Duration { return time.Duration(ns) }
