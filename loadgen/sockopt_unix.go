//go:build unix

package loadgen

import "syscall"

// setRcvBuf sets a socket's SO_RCVBUF. Called from a dialer's Control hook,
// before connect: the kernel then picks a window scale that fits the small
// buffer and the peer meets a zero window, not dropped segments.
func setRcvBuf(c syscall.RawConn, size int) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
	}); err != nil {
		return err
	}
	return serr
}
