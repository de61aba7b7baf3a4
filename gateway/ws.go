package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/messages"
)

// wsConn is one WebSocket: the actors.Sink of its connection actor, written
// only by that actor, read only by its handler goroutine. Timeouts are kept
// as timestamps that the gateway's sweeper checks, so a write costs no timer.
type wsConn struct {
	c          *websocket.Conn
	s          *Server
	opened     time.Time
	writeStart atomic.Int64 // unix nanos of the write in progress; 0 when none
	subscribed atomic.Bool
	closed     atomic.Bool
	pinging    atomic.Bool
	reqID      string // the upgrade's request id, for logs
}

var _ actors.Sink = (*wsConn)(nil)

// Write implements actors.Sink.
func (w *wsConn) Write(frame []byte) error {
	w.writeStart.Store(time.Now().UnixNano())
	err := w.c.Write(context.Background(), websocket.MessageText, frame)
	w.writeStart.Store(0)
	return err
}

// Close implements actors.Sink: the close handshake runs on its own
// goroutine (it waits for the peer), tracked so shutdown waits for it.
func (w *wsConn) Close(code int, reason string) {
	if !w.closed.CompareAndSwap(false, true) {
		return
	}
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
	if s.draining.Load() {
		s.writeError(w, r, fmt.Errorf("%w: relay shutting down", messages.ErrUnavailable))
		return
	}
	if n := s.nconns.Add(1); n > int64(s.cfg.MaxConnections) {
		s.nconns.Add(-1)
		s.writeError(w, r, fmt.Errorf("%w: connection limit (%d) reached", messages.ErrUnavailable, s.cfg.MaxConnections))
		return
	}
	defer s.nconns.Add(-1)
	c, err := websocket.Accept(w, r, s.acceptOptions())
	if err != nil {
		s.log.Debug("websocket upgrade refused", "request_id", requestID(r.Context()), "err", err)
		return
	}
	c.SetReadLimit(s.cfg.MaxMessageSize)
	ws := &wsConn{c: c, s: s, opened: time.Now(), reqID: requestID(r.Context())}
	conn, err := s.mgr.Connect(ws, "ws")
	if err != nil {
		c.Close(websocket.StatusTryAgainLater, "relay shutting down")
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	s.conns.Store(ws, struct{}{})
	s.cfg.Observer.Connections("ws", 1)
	log := s.log.With("conn", conn.ID, "request_id", requestID(r.Context()))
	log.Debug("websocket connected", "remote", r.RemoteAddr)
	defer func() {
		s.conns.Delete(ws)
		s.cfg.Observer.Connections("ws", -1)
		ws.closed.Store(true) // the socket is done; the actor must not start a close
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn.Stop(stopCtx)
		cancel()
		c.CloseNow()
		log.Debug("websocket closed")
	}()
	if s.draining.Load() { // shutdown began while we were upgrading
		ws.Close(actors.CloseGoingAway, "server shutting down")
	}
	s.readLoop(ws, conn, log)
}

func (s *Server) acceptOptions() *websocket.AcceptOptions {
	opts := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled}
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
// coder/websocket close with 1009.
func (s *Server) readLoop(ws *wsConn, conn *actors.Connection, log interface {
	Debug(string, ...any)
}) {
	for {
		_, data, err := ws.c.Read(context.Background())
		if err != nil {
			if st := websocket.CloseStatus(err); st == -1 && !errors.Is(err, context.Canceled) {
				log.Debug("websocket read ended", "err", err)
			}
			return
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
			ws.subscribed.Store(true)
			conn.Subscribe(f)
		case messages.TypeUnsubscribe:
			conn.Unsubscribe(f.Topics)
		case messages.TypePing:
			conn.Send(messages.NewPongFrame(time.Now()))
		case messages.TypeAck:
			// Delivery is at-most-once per connection; acks are accepted
			// for client compatibility and need no reply.
		}
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
		}
	}
}

func (s *Server) check(ws *wsConn, now time.Time, ping bool) {
	if ws.closed.Load() {
		return
	}
	if t := ws.writeStart.Load(); t != 0 && now.Sub(time.Unix(0, t)) > s.cfg.WriteTimeout {
		s.log.Info("closing connection: write timed out", "request_id", ws.reqID)
		ws.closed.Store(true)
		ws.c.CloseNow()
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
