//go:build linux

package loadgen

import (
	"context"
	"net"
	"net/http"
	"syscall"
	"testing"
)

// The slow subscribers' dialer sets a 64 KB receive buffer (Linux reports
// double the asked size for its bookkeeping).
func TestSlowClientReceiveBuffer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1))
		}
	}()
	tr := newSlowWSClient().Transport.(*http.Transport)
	c, err := tr.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var size int
	var serr error
	if err := raw.Control(func(fd uintptr) { size, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if size < slowReadBuffer || size > 2*slowReadBuffer {
		t.Fatalf("SO_RCVBUF = %d, want %d (doubled by the kernel: %d)", size, slowReadBuffer, 2*slowReadBuffer)
	}
	if _, err := tr.DialContext(context.Background(), "tcp", "192.0.2.1:80"); err == nil {
		t.Fatal("slow client dialed a non-loopback address")
	}
}
