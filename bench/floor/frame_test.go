package main

import (
	"encoding/binary"
	"testing"
)

// A frame of a given size is that long and its header gives its payload's
// length, for both header sizes.
func TestFrameLengths(t *testing.T) {
	for _, size := range []int{2, 100, 127, 130, 180, 1000} {
		f := frame(size)
		if len(f) != size {
			t.Errorf("frame(%d) is %d bytes", size, len(f))
		}
		n, hdr := int(f[1]), 2
		if n == 126 {
			n, hdr = int(binary.BigEndian.Uint16(f[2:4])), 4
		}
		if f[0] != 0x81 || hdr+n != len(f) {
			t.Errorf("frame(%d): opcode byte %#x, header of %d bytes giving %d payload bytes in a frame of %d", size, f[0], hdr, n, len(f))
		}
	}
}
