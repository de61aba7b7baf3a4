package gateway

import (
	"encoding/binary"
	"net"
	"sync"
)

// heldWriter sits between coder/websocket's bufio.Writer and the socket. It
// lets the connection actor's writes of one drain leave in one write(2): the
// actor's frames (writeText) are framed here as unmasked server-to-client
// text messages, straight into a held buffer, without coder/websocket's
// per-message locks and flush; wsConn.Flush, called once at the end of each
// message the actor handled, writes it all. Each frame stays one WebSocket
// message. coder/websocket still writes the control frames (pings, pongs,
// the close frame) through its bufio.Writer, each in one Write here (a
// control frame fits its buffer): held behind the actor's frames while the
// actor holds, else written at once, in order either way. Once a close
// frame went through, writeText fails (no data after a close frame).
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

	mu        sync.Mutex
	holding   bool
	through   bool    // closing: never hold again
	closeSent bool    // a close frame went through: no more messages
	buf       *[]byte // held bytes; nil when none
}

const (
	maxHeldBytes   = 64 << 10
	heldBufInitial = 4 << 10
)

var heldBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, heldBufInitial)
	return &b
}}

// writeText holds one text message with payload p (see the type's doc).
func (h *heldWriter) writeText(p []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closeSent {
		return net.ErrClosed
	}
	h.holding = !h.through
	if h.buf == nil {
		h.buf = heldBufs.Get().(*[]byte)
	}
	b := *h.buf
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x81, byte(n))
	case n <= 0xffff:
		b = append(b, 0x81, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x81, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	*h.buf = append(b, p...)
	if !h.holding || len(*h.buf) >= maxHeldBytes {
		return h.writeHeldLocked()
	}
	return nil
}

// Write implements io.Writer for coder/websocket's bufio.Writer: its control
// frames, one per call.
func (h *heldWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(p) > 0 && p[0] == 0x88 { // FIN + close
		h.closeSent = true
	}
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
