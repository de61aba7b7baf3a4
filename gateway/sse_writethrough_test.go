package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// writeSizes is a ResponseWriter that records the size of every Write.
type writeSizes struct {
	*httptest.ResponseRecorder
	sizes []int
}

func (w *writeSizes) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.ResponseRecorder.Write(p)
}

// TestSSESinkWritesThrough: events are written out as the buffer fills, not
// held until the actor's Flush. A stream over 100 long topic names carries
// a 20 KB id with every event; a replay page of 1,000 of them would be 20 MB
// in the buffer. Every event arrives, in order.
func TestSSESinkWritesThrough(t *testing.T) {
	w := &writeSizes{ResponseRecorder: httptest.NewRecorder()}
	k := &sseSink{w: w, rc: http.NewResponseController(w), timeout: time.Second, closed: make(chan struct{})}
	for i := range 100 {
		topic := fmt.Sprintf("%03d.%s", i, strings.Repeat("t", 200))
		k.pos = append(k.pos, ssePos{topic: topic})
		k.index = append(k.index, topic)
	}
	const n = 1000
	event := 0
	for i := range n {
		m := messages.Message{Topic: k.index[0], ID: messages.ID{Ms: 1, Seq: uint64(i + 1)},
			Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Timestamp: time.Unix(1, 0).UTC()}
		before := len(k.buf)
		if err := k.Write(m.Frame()); err != nil {
			t.Fatal(err)
		}
		if len(k.buf) > before {
			event = len(k.buf) - before
		}
	}
	if err := k.Flush(); err != nil {
		t.Fatal(err)
	}
	if event == 0 {
		t.Fatal("no event stayed in the buffer to measure")
	}
	for _, size := range w.sizes {
		if size > sseWriteThrough+event {
			t.Fatalf("a write of %d bytes: the buffer held more than %d + one %d-byte event", size, sseWriteThrough, event)
		}
	}
	if len(w.sizes) < 2 {
		t.Fatalf("%d writes for %d bytes: nothing was written through", len(w.sizes), w.Body.Len())
	}
	out := w.Body.Bytes()
	for i := range n {
		at := bytes.Index(out, []byte(fmt.Sprintf(`"payload":{"i":%d}`, i)))
		if at < 0 {
			t.Fatalf("event %d missing (or out of order)", i)
		}
		out = out[at:]
	}
	t.Logf("%d events of %d bytes in %d writes", n, event, len(w.sizes))
}
