package gateway

import (
	"net"
	"sync"
)

// heldWriter sits between coder/websocket's bufio.Writer and the socket. It
// lets the connection actor's writes of one drain leave in one write(2):
// coder/websocket flushes its bufio.Writer after every message, and while
// the connection actor holds (wsConn.Write calls hold) those flushes only
// append to a buffer; wsConn.Flush, called once at the end of each message
// the actor handled, writes it all. Each frame stays one WebSocket message.
//
// The buffer comes from a process-wide pool at the first held write and
// goes back at the flush, so an idle connection holds none. At most
// maxHeldBytes are held: past it the held bytes are written at once.
//
// Concurrency: safe for use from several goroutines (the connection actor,
// the sweeper's pings, coder/websocket's automatic pongs and the close
// handshake); bytes leave in the order they were written. A write from
// another goroutine while the actor holds is held too, until the actor's
// Flush; after passThrough nothing is held.
type heldWriter struct {
	conn net.Conn

	mu      sync.Mutex
	holding bool
	through bool    // closing: never hold again
	buf     *[]byte // held bytes; nil when none
}

const (
	maxHeldBytes   = 64 << 10
	heldBufInitial = 4 << 10
)

var heldBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, heldBufInitial)
	return &b
}}

// hold makes the writes until the next flush stay in memory.
func (h *heldWriter) hold() {
	h.mu.Lock()
	h.holding = !h.through
	h.mu.Unlock()
}

// Write implements io.Writer for coder/websocket's bufio.Writer.
func (h *heldWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.holding {
		if err := h.writeHeldLocked(); err != nil {
			return 0, err
		}
		return h.conn.Write(p)
	}
	if h.buf == nil {
		h.buf = heldBufs.Get().(*[]byte)
	}
	*h.buf = append(*h.buf, p...)
	if len(*h.buf) >= maxHeldBytes {
		return len(p), h.writeHeldLocked()
	}
	return len(p), nil
}

// flush writes what is held in one write and stops holding.
func (h *heldWriter) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holding = false
	return h.writeHeldLocked()
}

// passThrough writes nothing itself: it makes the next write (the close
// frame) go out at once, after what is held.
func (h *heldWriter) passThrough() {
	h.mu.Lock()
	h.through, h.holding = true, false
	h.mu.Unlock()
}

// discard returns the held buffer to the pool without writing it; for a
// socket that is closed.
func (h *heldWriter) discard() {
	h.mu.Lock()
	h.through, h.holding = true, false
	h.putLocked()
	h.mu.Unlock()
}

func (h *heldWriter) writeHeldLocked() error {
	if h.buf == nil {
		return nil
	}
	_, err := h.conn.Write(*h.buf)
	h.putLocked()
	return err
}

func (h *heldWriter) putLocked() {
	b := h.buf
	if b == nil {
		return
	}
	h.buf = nil
	if cap(*b) > maxHeldBytes*2 {
		return // grown by one large frame: let it go
	}
	*b = (*b)[:0]
	heldBufs.Put(b)
}
