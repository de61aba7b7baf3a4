package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/actors"
)

// countingConn counts write(2) calls on a real socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// heldPair returns a server-side wsConn (built like handleWS builds it, over
// smallBuffers) and the client connected to it, over real loopback TCP.
func heldPair(t testing.TB) (*wsConn, *countingConn, *websocket.Conn) {
	t.Helper()
	got := make(chan *wsConn, 1)
	counted := make(chan *countingConn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sb := &smallBuffers{ResponseWriter: w}
		c, err := websocket.Accept(sb, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		cc := &countingConn{Conn: sb.out.conn}
		sb.out.conn = cc
		counted <- cc
		got <- &wsConn{c: c, out: sb.out}
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.CloseNow() })
	ws := <-got
	t.Cleanup(func() { ws.c.CloseNow(); ws.out.discard() })
	return ws, <-counted, cl
}

// TestHeldWritesLeaveInOneWrite: the frames written between two Flushes
// leave in one write(2), and the client still reads each as its own
// WebSocket message, in order.
func TestHeldWritesLeaveInOneWrite(t *testing.T) {
	ws, cc, cl := heldPair(t)
	before := cc.writes.Load()
	const n = 5
	for i := range n {
		if err := ws.Write(fmt.Appendf(nil, `{"seq":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := cc.writes.Load() - before; got != 0 {
		t.Fatalf("%d socket writes before Flush, want 0", got)
	}
	if err := ws.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := cc.writes.Load() - before; got != 1 {
		t.Fatalf("%d socket writes for %d frames, want 1", got, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		typ, data, err := cl.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"seq":%d}`, i); typ != websocket.MessageText || string(data) != want {
			t.Fatalf("message %d: %v %q, want text %q", i, typ, data, want)
		}
	}
	if ws.out.buf != nil {
		t.Fatal("the held buffer was not returned after Flush")
	}
}

// TestHeldWritesBounded: a burst over maxHeldBytes is written before Flush,
// so what one connection holds stays bounded.
func TestHeldWritesBounded(t *testing.T) {
	ws, cc, cl := heldPair(t)
	frame := []byte(`"` + strings.Repeat("x", 1000) + `"`)
	n := 2 * maxHeldBytes / len(frame)
	done := make(chan error, 1)
	go func() { // the client reads while the server writes
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for range n {
			if _, _, err := cl.Read(ctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	before := cc.writes.Load()
	for range n {
		if err := ws.Write(frame); err != nil {
			t.Fatal(err)
		}
		if b := ws.out.buf; b != nil && len(*b) > maxHeldBytes {
			t.Fatalf("holding %d bytes, over %d", len(*b), maxHeldBytes)
		}
	}
	if got := cc.writes.Load() - before; got == 0 {
		t.Fatal("nothing written before Flush after 2x maxHeldBytes")
	}
	if err := ws.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHeldThenCloseFrameGoesOut: frames held when Close is called go out
// before the close frame, and the close handshake completes without a Flush.
func TestHeldThenCloseFrameGoesOut(t *testing.T) {
	ws, _, cl := heldPair(t)
	ws.s = &Server{log: slog.New(slog.DiscardHandler)}
	if err := ws.Write([]byte(`"last"`)); err != nil {
		t.Fatal(err)
	}
	ws.Close(4008, "slow consumer") // no Flush
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := cl.Read(ctx)
	if err != nil || string(data) != `"last"` {
		t.Fatalf("read %q, %v; want the held frame", data, err)
	}
	_, _, err = cl.Read(ctx)
	if st := websocket.CloseStatus(err); st != 4008 {
		t.Fatalf("close status %d (%v), want 4008", st, err)
	}
	ws.s.wg.Wait()
}

// TestHeldFrameLengths: every payload length encoding (7-bit, 16-bit,
// 64-bit) reads back as the same message.
func TestHeldFrameLengths(t *testing.T) {
	ws, _, cl := heldPair(t)
	cl.SetReadLimit(1 << 20)
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 70000}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, n := range sizes {
			_, data, err := cl.Read(ctx)
			if err != nil {
				done <- err
				return
			}
			if len(data) != n || (n > 0 && (data[0] != 'a' || data[n-1] != 'a')) {
				done <- fmt.Errorf("read %d bytes, want %d", len(data), n)
				return
			}
		}
		done <- nil
	}()
	for _, n := range sizes {
		if err := ws.Write([]byte(strings.Repeat("a", n))); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestNoMessageAfterCloseFrame: once coder/websocket sent the close frame,
// the actor's writes fail instead of sending data after it.
func TestNoMessageAfterCloseFrame(t *testing.T) {
	ws, _, cl := heldPair(t)
	ws.s = &Server{log: slog.New(slog.DiscardHandler)}
	go func() { // the client answers the close handshake
		for {
			if _, _, err := cl.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	ws.Close(1000, "bye")
	deadline := time.Now().Add(10 * time.Second) // until the close frame has gone out
	for ws.Write([]byte(`"late"`)) == nil {
		if time.Now().After(deadline) {
			t.Fatal("writes still succeed 10 s after Close")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ws.s.wg.Wait()
}

// TestNoBlockWritesNeverBlockAndKeepOrder: inside a no-block stretch a
// peer that reads nothing never makes a write block: once the socket is
// full the frames stay held (EndNoBlock says so), behind what the socket
// took, and a control frame written meanwhile from another goroutine
// queues behind them. A Flush outside the stretch then writes the rest,
// and the peer reads every frame whole and in order.
func TestNoBlockWritesNeverBlockAndKeepOrder(t *testing.T) {
	ws, _, cl := heldPair(t)
	cl.SetReadLimit(1 << 20)
	pad := strings.Repeat("x", 16<<10)
	frame := func(i int) []byte { return fmt.Appendf(nil, `{"seq":%d,"pad":"%s"}`, i, pad) }

	wrote := make(chan int, 1)
	go func() {
		defer close(wrote)
		for i := range 4000 { // at most 64 MB: far past any loopback buffer
			if !ws.BeginNoBlock() {
				t.Errorf("BeginNoBlock refused on an idle writer")
				return
			}
			if err := ws.Write(frame(i)); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
			if err := ws.Flush(); err != nil {
				t.Errorf("flush %d: %v", i, err)
				return
			}
			if ws.EndNoBlock() { // the socket is full: bytes stay held
				wrote <- i + 1
				return
			}
		}
	}()
	var n int
	select {
	case got, ok := <-wrote:
		if !ok {
			t.Fatal("the socket never filled up")
		}
		n = got
	case <-time.After(20 * time.Second):
		t.Fatal("a write inside a no-block stretch blocked on a peer that reads nothing")
	}

	// More frames and a ping from another goroutine, still not blocking.
	if !ws.BeginNoBlock() {
		t.Fatal("BeginNoBlock refused with bytes held")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := ws.out.Write([]byte{0x89, 0}); err != nil { // an empty ping
			t.Errorf("ping: %v", err)
		}
		for i := n; i < n+3; i++ {
			if err := ws.Write(frame(i)); err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		}
		if err := ws.Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a write inside a no-block stretch blocked")
	}
	if !ws.EndNoBlock() {
		t.Fatal("EndNoBlock: nothing held, with the peer not reading")
	}
	n += 3

	read := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := range n {
			_, b, err := cl.Read(ctx)
			if err != nil {
				read <- fmt.Errorf("read %d: %w", i, err)
				return
			}
			if !bytes.Equal(b, frame(i)) {
				read <- fmt.Errorf("message %d: got %.40q..., want seq %d", i, b, i)
				return
			}
		}
		read <- nil
	}()
	if err := ws.Flush(); err != nil { // outside a stretch: blocks until written
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if ws.out.buf != nil {
		t.Fatal("bytes still held after the Flush")
	}
}

// TestNoBlockFrameAllocatesNothing: a frame written and flushed inside a
// no-block stretch (the fan-out's path) allocates nothing; its non-blocking
// write(2) is the one that leaves.
func TestNoBlockFrameAllocatesNothing(t *testing.T) {
	ws, counted, cl := heldPair(t)
	readAll(cl)
	before := counted.writes.Load()
	allocs := testing.AllocsPerRun(200, func() {
		if stretchFrame(t, ws) {
			t.Fatal("bytes held with a reading peer")
		}
	})
	want := 0.0
	if raceOn {
		want = 1 // pooled buffers dropped by the race detector's sync.Pool
	}
	if allocs > want {
		t.Errorf("%v allocations per frame in a stretch, want %v", allocs, want)
	}
	if n := counted.writes.Load() - before; n != 0 {
		t.Errorf("%d writes through net.Conn: a stretch writes with write(2) on the descriptor", n)
	}
}

// stretchFrame writes and flushes one message frame inside a no-block
// stretch, as a quiet topic's fan-out does, and reports whether bytes are
// left held.
func stretchFrame(tb testing.TB, ws *wsConn) (held bool) {
	tb.Helper()
	if !ws.BeginNoBlock() {
		tb.Fatal("BeginNoBlock refused on an idle writer")
	}
	if err := ws.Write(stretchedFrame); err != nil {
		tb.Fatal(err)
	}
	if err := ws.Flush(); err != nil {
		tb.Fatal(err)
	}
	return ws.EndNoBlock()
}

var stretchedFrame = []byte(`{"type":"message","message_id":"1-0","topic":"t","payload":{},"timestamp":"2026-12-01T00:00:00.000000Z","metadata":{}}`)

// readAll reads cl until it fails (the test's end closes it), so the
// server's socket never fills.
func readAll(cl *websocket.Conn) {
	go func() {
		for {
			if _, _, err := cl.Read(context.Background()); err != nil {
				return
			}
		}
	}()
}

// TestNoBlockRefused: a stretch does not begin while another goroutine
// holds the writer (it may be blocked in a write) or once the connection
// is closing.
func TestNoBlockRefused(t *testing.T) {
	ws, _, _ := heldPair(t)
	ws.out.mu.Lock()
	refused := !ws.BeginNoBlock()
	ws.out.mu.Unlock()
	if !refused {
		t.Fatal("BeginNoBlock while another goroutine holds the writer")
	}
	ws.out.passThrough()
	if ws.BeginNoBlock() {
		t.Fatal("BeginNoBlock on a closing connection")
	}
}

// BenchmarkNoBlockFrame: one frame written and flushed inside a no-block
// stretch, to a peer that reads everything (the fan-out's path per
// subscriber, write(2) included).
func BenchmarkNoBlockFrame(b *testing.B) {
	ws, _, cl := heldPair(b)
	readAll(cl)
	b.ReportAllocs()
	for b.Loop() {
		stretchFrame(b, ws)
	}
}

// A write stuck on a peer that does not read holds the writer's lock until
// the socket closes. passThrough (wsConn.Close) must not wait for it: the
// sweeper and shutdown call Close, and they are what would close the
// socket, so a Close that waited hung SIGTERM and wedged the sweeper.
// The close handshake then ends the stuck write within its own timeout.
func TestCloseDoesNotWaitForAStuckWrite(t *testing.T) {
	ws, _, _ := heldPair(t) // the client never reads
	ws.s, ws.opened = &Server{log: slog.New(slog.DiscardHandler)}, time.Now()
	frame := bytes.Repeat([]byte("x"), 1<<20)
	writerDone := make(chan error, 1)
	go func() {
		for range 256 { // 256 MiB: far past what loopback buffers take
			if err := ws.Write(frame); err != nil {
				writerDone <- err
				return
			}
			if err := ws.Flush(); err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()
	// Wait until a write has been stuck for a while.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if t0 := ws.writeStart.Load(); t0 != 0 && time.Since(ws.opened)-time.Duration(t0-1) > 300*time.Millisecond {
			break
		}
		select {
		case err := <-writerDone:
			t.Fatalf("the writer ended before it blocked: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no write blocked within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { ws.Close(actors.CloseGoingAway, "closing"); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the stuck write")
	}
	// The close handshake's goroutine: coder/websocket gives the close
	// frame 5 s, then closes the socket.
	select {
	case err := <-writerDone:
		if err == nil {
			t.Fatal("the stuck writer finished without an error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the close handshake did not end the stuck write")
	}
	ws.s.wg.Wait()
}
