// Package heaptest measures what code leaves on the heap, for tests that
// bound the bytes a structure keeps per element.
package heaptest

import (
	"runtime"
	"strings"
)

// PerOp runs op(0) .. op(n-1) between two collections and returns the
// live heap's growth divided by n. Keep n large (thousands): another
// goroutine's allocations in between count too.
func PerOp(n int, op func(i int)) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		op(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
}

// requestBody is a publish as relay bench sends it, on a Galaxy-like topic.
const requestBody = `{"topic":"galaxy.jobs.heap","payload":{"seq":1,"sent_ns":1732679000000000000,"pub":0,"pad":"0123456789abcdef0123456789abcdef"}}`

// PayloadLen is the length of RequestPayload's payloads.
var PayloadLen = len(requestBody) - 1 - strings.Index(requestBody, `{"seq"`)

// RequestPayload returns a fresh publish payload cut out of its own
// request-sized buffer, as the gateway hands one over: whoever keeps the
// payload itself keeps the whole request body.
func RequestPayload() []byte {
	b := []byte(requestBody)
	return b[len(b)-1-PayloadLen : len(b)-1]
}
