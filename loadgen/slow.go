package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// Slow subscribers (--slow-subscribers N) are relay WebSocket subscribers to
// topic 0 that never read while the run publishes. Their TCP receive buffer
// is set to slowReadBuffer, so the kernel stops taking the server's frames
// early and the relay's per-connection queue fills, which is what its
// slow-consumer policy (disconnect with 4008, or drop-oldest) is for. They are
// not in the fleet: nothing they receive counts in the loss, order or latency
// figures. After the grace period each is read (drained) for at most
// --slow-probe to learn how it ended; see probeSlow.
const slowReadBuffer = 64 << 10

// Outcomes of a slow subscriber, keys of Report.SlowOutcomes. A close with a
// close frame is "closed <code>" (e.g. "closed 4008").
const (
	slowOpen          = "open"                       // still delivering, or idle, when the probe stopped
	slowClosedNoFrame = "closed without close frame" // the connection ended (EOF, reset) with no close frame
	slowConnectFailed = "connect failed"
)

// slowSubs is the slow subscribers of one run.
type slowSubs struct {
	conns    []*relayConn
	outcomes map[string]int
	frames   uint64 // frames read by the probes
	errs     errorLog
}

// newSlowWSClient returns the WebSocket client of slow subscribers: loopback
// only, with every dialed TCP connection's receive buffer set to
// slowReadBuffer. The buffer is set before connect (Control hook) as well as
// after: set only after the handshake, the window scale was already chosen
// for a large buffer, the kernel drops the segments that overflow the small
// one, and the server backs off in retransmission timeouts of seconds, so a
// probe that starts reading would wait seconds for data it could take.
func newSlowWSClient() *http.Client {
	d := loopbackDialer(10 * time.Second)
	guard := d.Control
	d.Control = func(network, address string, c syscall.RawConn) error {
		if err := guard(network, address, c); err != nil {
			return err
		}
		return setRcvBuf(c, slowReadBuffer)
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				if tc, ok := c.(*net.TCPConn); ok {
					if err := tc.SetReadBuffer(slowReadBuffer); err != nil {
						c.Close()
						return nil, fmt.Errorf("set receive buffer: %w", err)
					}
				}
				return c, nil
			},
			DisableCompression: true,
			DisableKeepAlives:  true,
		},
	}
}

// connectSlow opens n slow subscribers to topic, one after another, each
// bounded by 30 s and all by ctx, with token (--token) when not empty.
func connectSlow(ctx context.Context, addr string, n int, topic, token string) *slowSubs {
	s := &slowSubs{outcomes: map[string]int{}}
	d := newRelayDriver(addr, nil, newSlowWSClient()).withToken(token)
	for range n {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := d.connect(dctx, topic)
		cancel()
		if err != nil {
			s.outcomes[slowConnectFailed]++
			s.errs.note("slow subscriber connect", err)
			continue
		}
		s.conns = append(s.conns, c.(*relayConn))
	}
	return s
}

// connected returns how many slow subscribers subscribed.
func (s *slowSubs) connected() int { return len(s.conns) }

// probe finds out, concurrently and within bound, how each slow subscriber
// ended (see probeSlow), then closes them all.
func (s *slowSubs) probe(bound time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range s.conns {
		wg.Go(func() {
			out, frames := probeSlow(c.w, slowIdle, bound)
			c.close()
			mu.Lock()
			s.outcomes[out]++
			s.frames += uint64(frames)
			mu.Unlock()
		})
	}
	wg.Wait()
}

// slowIdle: a slow subscriber that delivers nothing for this long while it is
// being drained counts as open. A variable only so that a test can set it.
var slowIdle = time.Second

// probeSlow reads w until the connection ends, no frame comes for idle, or
// bound has passed, and returns the outcome and how many frames it read.
// Reading is what reveals a close: frames the kernel buffered come first, then
// the close frame (or the end of the stream). Reading also unblocks a server
// write that was stuck on the full socket, so a close the server decided on
// while stuck (4008 after an overflow) goes out now.
func probeSlow(w *wsConn, idle, bound time.Duration) (outcome string, frames int) {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		until := time.Now().Add(idle)
		if until.After(deadline) {
			until = deadline
		}
		ctx, cancel := context.WithDeadline(context.Background(), until)
		_, err := w.next(ctx)
		expired := ctx.Err() != nil
		cancel()
		if err == nil {
			frames++
			continue
		}
		if code := websocket.CloseStatus(err); code != -1 {
			return "closed " + strconv.Itoa(int(code)), frames
		}
		if expired || errors.Is(err, context.DeadlineExceeded) {
			return slowOpen, frames
		}
		return slowClosedNoFrame, frames
	}
	return slowOpen, frames
}

// closeAll closes every slow subscriber without probing (a run that failed).
func (s *slowSubs) closeAll() {
	for _, c := range s.conns {
		c.close()
	}
}
