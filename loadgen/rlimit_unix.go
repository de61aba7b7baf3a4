//go:build unix

package loadgen

import (
	"fmt"
	"syscall"
)

// raiseNoFile lifts the soft RLIMIT_NOFILE to at least want (up to the hard
// limit, or beyond it when the process may raise that). It returns the soft
// limit in force afterwards.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	next := lim
	next.Cur = want
	if next.Max < want {
		next.Max = want // allowed for root only
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		next = lim
		next.Cur = lim.Max
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err2 != nil {
			return lim.Cur, fmt.Errorf("setrlimit NOFILE to %d: %w", want, err)
		}
		return next.Cur, fmt.Errorf("setrlimit NOFILE to %d: %w (raised to the hard limit %d)", want, err, next.Cur)
	}
	return next.Cur, nil
}
