//go:build !unix

package loadgen

import "syscall"

// setRcvBuf is a no-op here; the slow subscribers' dial sets the buffer on
// the connected socket instead.
func setRcvBuf(syscall.RawConn, int) error { return nil }
