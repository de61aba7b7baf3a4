package heaptest

import (
	"bytes"
	"runtime"
	"testing"
)

// TestPerOp: 1 KiB kept per op reads as about 1 KiB; nothing kept as
// about nothing.
func TestPerOp(t *testing.T) {
	kept := make([][]byte, 0, 4000)
	if per := PerOp(4000, func(int) { kept = append(kept, make([]byte, 1024)) }); per < 1000 || per > 1100 {
		t.Errorf("keeping 1 KiB an op measured %.0f bytes an op", per)
	}
	runtime.KeepAlive(kept)
	var sink []byte
	if per := PerOp(4000, func(int) { sink = make([]byte, 1024) }); per > 16 {
		t.Errorf("keeping nothing measured %.0f bytes an op", per)
	}
	_ = sink
}

func TestRequestPayload(t *testing.T) {
	p := RequestPayload()
	if len(p) != PayloadLen || p[0] != '{' || p[len(p)-1] != '}' || cap(p) == len(p) {
		t.Fatalf("payload %q (cap %d): want %d bytes of JSON object inside a larger buffer", p, cap(p), PayloadLen)
	}
	if q := RequestPayload(); &q[0] == &p[0] || !bytes.Equal(p, q) {
		t.Fatal("RequestPayload did not return a fresh buffer of the same payload")
	}
}
