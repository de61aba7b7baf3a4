package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/messages"
)

// wsConn is one WebSocket: the actors.Sink of its connection actor, written
// only by that actor, read only by its handler goroutine. Timeouts are kept
// as timestamps that the gateway's sweeper checks, so a write costs no timer.
type wsConn struct {
	c          *websocket.Conn
	s          *Server
	opened     time.Time
	writeStart atomic.Int64 // 1 + nanoseconds from opened to the start of the write in progress; 0 when none (see stamp)
	subscribed atomic.Bool
	closed     atomic.Bool
	pinging    atomic.Bool
	reqID      string // the upgrade's request id, for logs
	auth       *wsAuth
	out        *heldWriter // under coder/websocket's bufio.Writer (see smallBuffers)
}

var _ actors.NoBlockSink = (*wsConn)(nil)

// Write implements actors.Sink: the frame becomes one WebSocket text
// message, held in memory (see heldWriter) until Flush, so the frames of
// one drain leave in one write(2). It fails when the socket has failed, when
// a close frame was sent, or when more than maxHeldBytes were held and
// writing them failed.
func (w *wsConn) Write(frame []byte) error {
	w.writeStart.Store(w.stamp())
	err := w.out.writeText(frame)
	w.writeStart.Store(0)
	return err
}

// Flush implements actors.Sink: it writes what the Writes since the last
// Flush held, in one write(2), bounded in time by the sweeper's WriteTimeout.
func (w *wsConn) Flush() error {
	w.writeStart.Store(w.stamp())
	err := w.out.flush()
	w.writeStart.Store(0)
	return err
}

// BeginNoBlock implements actors.NoBlockSink (see heldWriter.beginNoBlock).
func (w *wsConn) BeginNoBlock() bool { return w.out.beginNoBlock() }

// EndNoBlock implements actors.NoBlockSink (see heldWriter.endNoBlock).
func (w *wsConn) EndNoBlock() bool { return w.out.endNoBlock() }

// stamp is writeStart's value for a write starting now: one monotonic
// clock read (time.Now reads two clocks, and Write and Flush run once per
// delivery at low rates).
func (w *wsConn) stamp() int64 { return int64(time.Since(w.opened)) + 1 }

// Close implements actors.Sink: the close handshake runs on its own
// goroutine (it waits for the peer), tracked so shutdown waits for it.
func (w *wsConn) Close(code int, reason string) {
	if !w.closed.CompareAndSwap(false, true) {
		return
	}
	// From now on every write goes straight out (after what is held), so
	// the close frame never waits for a Flush that may not come.
	w.out.passThrough()
	w.s.wg.Add(1)
	go func() {
		defer w.s.wg.Done()
		if err := w.c.Close(websocket.StatusCode(code), reason); err != nil {
			w.s.log.Debug("websocket close handshake incomplete", "code", code, "err", err)
		}
	}()
}

// handleWS upgrades to WebSocket, spawns the connection actor and runs the
// read loop on this goroutine: the only long-lived goroutine per connection.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	if waited, err := s.upgrades.wait(r.Context(), remoteClient(r.RemoteAddr)); err != nil {
		s.lim.LimitHit("ws_upgrade_rate")
		if errors.Is(err, messages.ErrRateLimited) {
			wait := strconv.Itoa(int(upgradeWaitMax / time.Second))
			h := w.Header()
			h.Set("Retry-After", wait)
			h.Set("X-RateLimit-Limit", strconv.Itoa(int(math.Ceil(float64(s.upgrades.limit)))))
			h.Set("X-RateLimit-Remaining", "0")
			h.Set("X-RateLimit-Reset", wait)
		}
		s.writeError(w, r, err)
		return
	} else if waited {
		s.lim.LimitHit("ws_upgrade_rate")
	}
	if n := s.nconns.Add(1); n > int64(s.cfg.MaxConnections) {
		s.nconns.Add(-1)
		s.writeError(w, r, fmt.Errorf("%w: connection limit (%d) reached", messages.ErrUnavailable, s.cfg.MaxConnections))
		return
	}
	if !s.track() {
		s.nconns.Add(-1)
		s.writeError(w, r, fmt.Errorf("%w: relay shutting down", messages.ErrUnavailable))
		return
	}
	sb := &smallBuffers{ResponseWriter: w}
	c, err := s.acceptWebSocket(sb, r)
	if err != nil {
		s.nconns.Add(-1)
		s.wg.Done()
		s.log.Debug("websocket upgrade refused", "request_id", requestID(w), "err", err)
		return
	}
	c.SetReadLimit(s.cfg.MaxMessageSize)
	ws := &wsConn{c: c, s: s, opened: time.Now(), reqID: requestID(w), auth: s.wsAuthFor(r), out: sb.out}
	s.log.Debug("websocket connected", "request_id", ws.reqID, "remote", r.RemoteAddr)
	// The connection is served on a fresh goroutine and this handler
	// returns: the socket is hijacked, and a new goroutine starts with a
	// small stack, where this one has grown through the middleware. At 10k
	// idle connections that is most of the memory per connection.
	go s.serveWS(ws)
}

// serveWS runs one WebSocket until it closes: the connection actor writes,
// this goroutine reads. It owns one s.wg count and one s.nconns count.
//
// Log lines carry request_id and conn as attributes at the call; a logger
// per connection (slog.With) would cost memory on every idle connection.
func (s *Server) serveWS(ws *wsConn) {
	defer s.wg.Done()
	defer s.nconns.Add(-1)
	defer ws.auth.close()
	var quota actors.SubscriptionQuota // an untyped nil when off
	if ws.auth != nil && ws.auth.quota != nil {
		quota = ws.auth.quota
	}
	conn, err := s.mgr.Connect(ws, "ws", quota)
	if err != nil {
		ws.c.Close(websocket.StatusTryAgainLater, "relay shutting down")
		return
	}
	s.conns.Store(ws, struct{}{})
	s.cfg.Observer.Connections("ws", 1)
	defer func() {
		s.conns.Delete(ws)
		s.cfg.Observer.Connections("ws", -1)
		ws.closed.Store(true) // the socket is done; the actor must not start a close
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn.Stop(stopCtx)
		cancel()
		ws.c.CloseNow()
		ws.out.discard()
		s.log.Debug("websocket closed", "request_id", ws.reqID, "conn", conn.ID)
	}()
	if s.draining.Load() { // shutdown began while we were upgrading (SPEC: 1013)
		ws.Close(actors.CloseTryAgainLater, "server shutting down; try again later")
	}
	s.readLoop(ws, conn)
}

func (s *Server) acceptOptions() *websocket.AcceptOptions {
	opts := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled, Subprotocols: []string{"bearer"}}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" {
			opts.InsecureSkipVerify = true
			return opts
		}
	}
	opts.OriginPatterns = s.cfg.AllowedOrigins
	return opts
}

// readLoop decodes client frames until the socket closes. A bad frame gets an
// error frame and the loop goes on; a frame over the limit makes
// coder/websocket close with 1009. Pongs and error frames go through the
// connection's bounded outbox (a client that does not read them is a slow
// consumer); Subscribe and Unsubscribe wait while the connection actor has a
// backlog of them, so this loop stops reading instead of queueing.
func (s *Server) readLoop(ws *wsConn, conn *actors.Connection) {
	pace := s.readPace()
	for {
		typ, data, err := ws.c.Read(context.Background())
		if err != nil {
			if st := websocket.CloseStatus(err); st == -1 && !errors.Is(err, context.Canceled) {
				s.log.Debug("websocket read ended", "request_id", ws.reqID, "conn", conn.ID, "err", err)
			}
			return
		}
		s.keepPace(pace, len(data))
		if ws.closed.Load() {
			continue // closing: read on until the handshake ends the read
		}
		if why := ws.auth.ended(time.Now()); why != "" {
			// The sweeper (expiry) or the login watcher (revocation)
			// closes it within a second; no frame is acted on meanwhile (a
			// subscribe would replay).
			ws.Close(actors.ClosePolicy, why)
			continue
		}
		if typ == websocket.MessageText && !utf8.Valid(data) {
			// RFC 6455: a text message that is not UTF-8 fails the
			// connection (SPEC: 1007); coder/websocket does not check.
			ws.Close(int(websocket.StatusInvalidFramePayloadData), "text frame is not UTF-8")
			continue
		}
		if !ws.auth.frameAllowed(conn.Send) {
			continue
		}
		if typ != websocket.MessageText {
			conn.Send(messages.NewErrorFrame(messages.CodeInvalidMessage, "frames are JSON objects in text frames, not binary"))
			continue
		}
		f, err := messages.DecodeClientFrame(data)
		if err == nil && len(f.Topics) > s.cfg.MaxTopicsPerSubscribe {
			err = fmt.Errorf("%w: at most %d topics per frame", messages.ErrSubscription, s.cfg.MaxTopicsPerSubscribe)
		}
		if err != nil {
			conn.Send(messages.NewErrorFrame(frameCodeOf(err), err.Error()))
			continue
		}
		switch f.Type {
		case messages.TypeSubscribe:
			if f.Topics = ws.auth.permitSubscribe(f.Topics, conn.Send); len(f.Topics) == 0 {
				continue
			}
			ws.subscribed.Store(true)
			conn.Subscribe(f)
		case messages.TypeUnsubscribe:
			conn.Unsubscribe(f.Topics)
		case messages.TypePing:
			conn.Send(messages.NewPongFrame(time.Now()))
		case messages.TypeAuth:
			ws.auth.reauth(f.Token, conn.Send)
		case messages.TypeAck:
			// Delivery is at-most-once per connection; acks are accepted
			// for client compatibility and need no reply.
		}
	}
}

// DefaultWSReadRate is Config.WSReadRate's default: frames per second one
// WebSocket connection may send. A subscriber sends a few frames a minute
// (subscribe, ping, an ack per message at most), so 100/s with a burst of
// 200 never slows one down, and a client flooding pings or junk frames gets
// at most that much of the relay's CPU per connection.
const DefaultWSReadRate = 100

// readPaceUnit is the frame size that costs one token of the read pace.
const readPaceUnit = 16 << 10

// readPace is a connection's read pace (Config.WSReadRate).
func (s *Server) readPace() *rate.Limiter {
	burst := max(int(2*s.cfg.WSReadRate), int(s.cfg.MaxMessageSize/readPaceUnit)+1)
	return rate.NewLimiter(rate.Limit(s.cfg.WSReadRate), burst)
}

// keepPace charges a frame of size bytes to the connection's read pace and
// sleeps while the connection is over it: the read loop then stops reading,
// so the client's frames wait in its own send buffer, not in the relay.
func (s *Server) keepPace(pace *rate.Limiter, size int) {
	r := pace.ReserveN(time.Now(), 1+size/readPaceUnit)
	if d := r.Delay(); d > 0 {
		s.lim.LimitHit("ws_read_rate")
		time.Sleep(d)
	}
}

// sweep runs until Close: it pings every connection each PingInterval and
// closes connections whose write is stuck past WriteTimeout, that never
// subscribed within SubscribeIdleLimit, or that did not answer a ping.
func (s *Server) sweep() {
	defer s.wg.Done()
	tick := time.NewTicker(min(time.Second, s.cfg.PingInterval/2))
	defer tick.Stop()
	lastPing := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-tick.C:
			ping := now.Sub(lastPing) >= s.cfg.PingInterval
			if ping {
				lastPing = now
			}
			s.conns.Range(func(k, _ any) bool {
				s.check(k.(*wsConn), now, ping)
				return true
			})
			s.lim.WSUpgradeClients(s.upgrades.sweep(now))
		}
	}
}

// watchLogins runs until Close: each second it closes (1008 "login
// revoked") the WebSockets, and ends the SSE streams, whose login was
// revoked, by a logout or a refresh-token replay on any relay, as the
// sweeper closes those whose token expired. It alone asks the auth store
// (cached per login: auth.Service.LoginRevoked), apart from the sweeper
// and the streams' own loops, so a stalled store delays no frame.
func (s *Server) watchLogins() {
	defer s.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.checkLogins(&s.conns, func(k any) *auth.Principal { return k.(*wsConn).auth.principal() }, func(k any) {
				if ws := k.(*wsConn); !ws.closed.Load() {
					ws.Close(actors.ClosePolicy, "login revoked")
				}
			})
			s.checkLogins(&s.sseLogins, func(k any) *auth.Principal { return k.(*sseLogin).p }, func(k any) {
				l := k.(*sseLogin)
				l.once.Do(func() { close(l.ended) })
			})
		}
	}
}

// checkLogins ends (end) each stream of streams whose login
// (principal) is revoked. Each kind of stream gets its own deadline: a
// store that does not answer costs a pass loginCheckTimeout, not that per
// stream, and the WebSockets' pass cannot use up the SSE streams'.
func (s *Server) checkLogins(streams *sync.Map, principal func(any) *auth.Principal, end func(any)) {
	ctx, cancel := context.WithTimeout(context.Background(), loginCheckTimeout)
	defer cancel()
	streams.Range(func(k, _ any) bool {
		if p := principal(k); p != nil {
			if revoked, _ := s.cfg.Auth.LoginRevoked(ctx, p); revoked {
				end(k)
			}
		}
		select {
		case <-s.stop:
			return false
		default:
			return ctx.Err() == nil
		}
	})
}

func (s *Server) check(ws *wsConn, now time.Time, ping bool) {
	if ws.closed.Load() {
		return
	}
	if t := ws.writeStart.Load(); t != 0 && now.Sub(ws.opened)-time.Duration(t-1) > s.cfg.WriteTimeout {
		s.log.Info("closing connection: write timed out", "request_id", ws.reqID)
		ws.closed.Store(true)
		ws.c.CloseNow()
		return
	}
	if ws.auth.expired(now) {
		ws.Close(actors.ClosePolicy, "token expired")
		return
	}
	if !ws.subscribed.Load() && now.Sub(ws.opened) > s.cfg.SubscribeIdleLimit {
		ws.Close(actors.ClosePolicy, "no subscription within the idle limit")
		return
	}
	if ping && ws.pinging.CompareAndSwap(false, true) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer ws.pinging.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PongTimeout)
			defer cancel()
			if err := ws.c.Ping(ctx); err != nil && !ws.closed.Load() {
				ws.closed.Store(true)
				ws.c.CloseNow()
			}
		}()
	}
}

// smallBuffers makes a hijacked connection use small bufio buffers instead
// of net/http's 4 KiB ones, which coder/websocket keeps for the life of the
// connection: at 10k idle connections they are a third of the memory. The
// writer's buffer is smaller still (wsWriteBufferSize): it writes into a
// heldWriter, which collects the frames of one drain in a pooled buffer, so
// only control frames written from other goroutines (pings, the close
// frame) ever go from that small buffer to the socket.
type smallBuffers struct {
	http.ResponseWriter
	out *heldWriter // set by Hijack
}

const (
	wsBufferSize      = 1024
	wsWriteBufferSize = 256 // a control frame (at most 127 bytes) fits
)

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot hijack")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.out = newHeldWriter(conn)
	setSendBuffer(conn)
	bw := bufio.NewWriterSize(w.out, wsWriteBufferSize)
	// Bytes the server already read past the request (a frame the client
	// sent at once) must come first. coder/websocket keeps only what the
	// returned reader has buffered, so they are pulled into its buffer.
	n := brw.Reader.Buffered()
	if n == 0 {
		return conn, bufio.NewReadWriter(bufio.NewReaderSize(conn, wsBufferSize), bw), nil
	}
	early, _ := brw.Reader.Peek(n)
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(wsBufferSize, n))
	if _, err := br.Peek(n); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, bufio.NewReadWriter(br, bw), nil
}

// wsSendBuffer is each WebSocket's kernel send buffer (SO_SNDBUF; Linux
// doubles it). Coalesced writes fill the kernel's buffer with whole
// segments, so under autotuning (up to tcp_wmem's 4 MiB) a peer that reads
// nothing could park megabytes there before a write blocks and the
// slow-consumer policy sees it; per-frame writes used to block much sooner.
// A fixed buffer keeps that bound, and one drain (at most maxHeldBytes)
// still fits.
const wsSendBuffer = 64 << 10

// setSendBuffer sets conn's SO_SNDBUF to wsSendBuffer when it is TCP.
func setSendBuffer(conn net.Conn) {
	if lc, ok := conn.(*limitedConn); ok {
		conn = lc.Conn
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(wsSendBuffer)
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }
