package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Listener wraps ln so that at most MaxHTTPConnections connections that are
// not WebSockets are open at once. A connection over the limit is answered
// with a canned 503 (the SPEC error body) and closed at once, on the
// accepting goroutine, before net/http spends a goroutine or a buffer on it:
// a client holding many slow connections cannot take the relay's descriptors
// or memory, and the refusal costs microseconds. A connection stops counting
// when it closes or when it is upgraded to a WebSocket (it then counts
// against MaxConnections).
//
// Concurrency: the returned listener is used by one http.Server.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, s: s, max: int64(s.cfg.MaxHTTPConnections)}
}

type limitListener struct {
	net.Listener
	s    *Server
	max  int64
	open atomic.Int64
}

// refusalTimeout bounds the write of the canned 503.
const refusalTimeout = 100 * time.Millisecond

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.s.lim.HTTPConnectionRefused()
			refuse(c)
			continue
		}
		l.s.lim.HTTPConnections(1)
		return &limitedConn{Conn: c, l: l}, nil
	}
}

// refuse writes the canned 503 and closes c. The request is not read, so
// the client may see a reset instead when it had already sent it.
func refuse(c net.Conn) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	body := `{"error":"SERVICE_UNAVAILABLE","message":"too many connections; retry later","request_id":"` + hex.EncodeToString(id[:]) + `"}` + "\n"
	resp := "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n" +
		"X-Request-ID: " + hex.EncodeToString(id[:]) + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	_ = c.SetWriteDeadline(time.Now().Add(refusalTimeout))
	_, _ = c.Write([]byte(resp))
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.Close()
}

// limitedConn releases its slot once: on Close, or on upgrade.
type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) release() {
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.s.lim.HTTPConnections(-1)
	})
}

func (c *limitedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// markUpgraded releases a hijacked connection's slot: it is a WebSocket now.
func markUpgraded(c net.Conn) {
	if lc, ok := c.(*limitedConn); ok {
		lc.release()
	}
}
