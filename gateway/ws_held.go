package gateway

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
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
// Between beginNoBlock and endNoBlock (a connection actor run on its topic
// actor's goroutine, see actors.NoBlockSink) no write blocks, from any
// goroutine: each goes to the socket only as far as the kernel takes it at
// once (one non-blocking write(2)), and the rest stays held, in order, for
// the next Flush. Outside it, writes block as net.Conn writes do (bounded by
// the gateway's write timeout).
//
// Concurrency: safe for use from several goroutines (the connection actor,
// the sweeper's pings, coder/websocket's automatic pongs and the close
// handshake); bytes leave in the order they were written. A write from
// another goroutine while the actor holds is held too, until the actor's
// Flush; after passThrough nothing is held.
type heldWriter struct {
	conn net.Conn
	raw  syscall.RawConn // conn's descriptor for non-blocking writes; nil: none (noBlock runs are refused)

	// through is set by passThrough (closing: never hold again) without
	// mu, which a write stuck on a peer that does not read keeps; each
	// holder of mu reads it before it holds.
	through atomic.Bool

	mu        sync.Mutex
	holding   bool
	closeSent bool    // a close frame went through: no more messages
	noBlock   bool    // see beginNoBlock
	short     bool    // a non-blocking write left bytes held
	buf       *[]byte // held bytes; nil when none
}

// newHeldWriter returns the writer for conn (a hijacked connection).
func newHeldWriter(conn net.Conn) *heldWriter {
	h := &heldWriter{conn: conn}
	inner := conn
	if lc, ok := inner.(*limitedConn); ok {
		inner = lc.Conn
	}
	if sc, ok := inner.(*net.TCPConn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			h.raw = raw
		}
	}
	return h
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
	h.holding = !h.through.Load()
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
	if h.through.Load() {
		h.holding = false
	}
	if !h.holding && !h.noBlock {
		if err := h.writeHeldLocked(); err != nil {
			return 0, err
		}
		return h.conn.Write(p)
	}
	if h.buf == nil {
		h.buf = heldBufs.Get().(*[]byte)
	}
	*h.buf = append(*h.buf, p...)
	if !h.holding || len(*h.buf) >= maxHeldBytes {
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
// frame) go out at once, after what is held. It never waits for mu: a
// Write blocked on a peer that does not read holds mu until the socket is
// closed, and the callers (wsConn.Close, from the sweeper and from
// shutdown) are what closes it.
func (h *heldWriter) passThrough() { h.through.Store(true) }

// discard returns the held buffer to the pool without writing it; for a
// socket that is closed.
func (h *heldWriter) discard() {
	h.through.Store(true)
	h.mu.Lock()
	h.holding = false
	h.putLocked()
	h.mu.Unlock()
}

// beginNoBlock starts a stretch in which no write blocks (see the type's
// doc). It reports false, starting nothing, when the writer cannot promise
// that now: another goroutine holds it (it may be blocked in a write), the
// connection is closing, or the socket has no descriptor to write to
// without blocking.
func (h *heldWriter) beginNoBlock() bool {
	if h.raw == nil || !h.mu.TryLock() {
		return false
	}
	h.noBlock = !h.through.Load() && !h.closeSent
	ok := h.noBlock
	h.mu.Unlock()
	return ok
}

// endNoBlock ends the stretch beginNoBlock started. It reports whether a
// write in it was short: bytes are held that the next Flush must write.
func (h *heldWriter) endNoBlock() (flushDue bool) {
	h.mu.Lock()
	h.noBlock = false
	flushDue, h.short = h.short, false
	h.mu.Unlock()
	return flushDue
}

func (h *heldWriter) writeHeldLocked() error {
	if h.buf == nil {
		return nil
	}
	if h.noBlock {
		return h.writeSomeLocked()
	}
	_, err := h.conn.Write(*h.buf)
	h.putLocked()
	return err
}

// writeSomeLocked writes what is held with one non-blocking write(2) and
// keeps the rest held (and holding, so that later writes queue behind it).
func (h *heldWriter) writeSomeLocked() error {
	b := *h.buf
	n, err := h.writeNow(b)
	if err != nil {
		h.putLocked()
		return err
	}
	if n == len(b) {
		h.putLocked()
		return nil
	}
	*h.buf = append(b[:0], b[n:]...)
	h.holding, h.short = true, true
	return nil
}

// writeNow writes what the socket takes of b at once.
func (h *heldWriter) writeNow(b []byte) (int, error) {
	w := rawWrites.Get().(*rawWrite)
	w.b = b
	err := h.raw.Write(w.fn)
	n, werr := w.n, w.err
	w.b, w.err = nil, nil
	rawWrites.Put(w)
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return max(n, 0), nil
}

// rawWrite is one non-blocking write(2) of b for syscall.RawConn.Write, with
// its result. fn is its write method, bound once: a closure per write
// would cost three allocations (itself and the two results it sets), and
// a field per connection its bytes on every idle connection.
type rawWrite struct {
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

var rawWrites = sync.Pool{New: func() any {
	w := &rawWrite{}
	w.fn = w.write
	return w
}}

func (w *rawWrite) write(fd uintptr) bool {
	for {
		w.n, w.err = syscall.Write(int(fd), w.b)
		if w.err != syscall.EINTR {
			return true // never wait for the socket
		}
	}
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
