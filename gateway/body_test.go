package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

// TestBodyLease: a body over largeBody holds a decode slot from readBody
// until decoded (or release); while every slot is held another large body
// waits, then gets ErrUnavailable after the publish timeout, and a small
// body never waits. The body budget is back to zero after release.
func TestBodyLease(t *testing.T) {
	s := New(Config{PublishTimeout: 100 * time.Millisecond}, nil, nil, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { s.Close(context.Background()) })
	s.decoding = make(chan struct{}, 1)
	large := bytes.Repeat([]byte("a"), largeBody+1)
	read := func(body []byte) ([]byte, bodyLease, error) {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/messages", bytes.NewReader(body))
		return s.readBody(httptest.NewRecorder(), r, 1<<20)
	}
	got, first, err := read(large)
	if err != nil || !bytes.Equal(got, large) || !first.slot {
		t.Fatalf("first large body: %d bytes, slot %v, %v; want it read with a slot", len(got), first.slot, err)
	}
	start := time.Now()
	if _, l, err := read(large); !errors.Is(err, messages.ErrUnavailable) {
		t.Fatalf("second large body while the slot is held: %v; want ErrUnavailable", err)
	} else {
		l.release()
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Errorf("refused after %v; want after the publish timeout (100ms)", waited)
	}
	_, small, err := read([]byte(`{}`))
	if err != nil || small.slot {
		t.Fatalf("small body while the slot is held: slot %v, %v; want no slot, no error", small.slot, err)
	}
	small.release()
	first.decoded()
	_, third, err := read(large)
	if err != nil || !third.slot {
		t.Fatalf("large body after decoded: slot %v, %v; want the slot", third.slot, err)
	}
	third.release()
	first.release() // after decoded: only the budget
	if n := s.inflight.Load(); n != 0 {
		t.Errorf("body budget holds %d bytes after every release; want 0", n)
	}
	if len(s.decoding) != 0 {
		t.Errorf("%d decode slots still held", len(s.decoding))
	}
}
