package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Listener wraps ln so that at most MaxHTTPConnections connections that are
// not WebSockets are open at once, and at most MaxHTTPConnectionsPerClient
// from one client IP address. A connection over either limit is refused on
// the accepting goroutine's watch, before net/http spends a goroutine or a
// buffer on it: it gets a canned 503 with the SPEC error body once its
// request head has arrived (within refusalTimeout; at most maxRefusing
// refusals are in progress, beyond that it is closed at once). A client
// holding many slow connections therefore cannot take the relay's
// descriptors, nor keep other clients out. A connection stops counting when
// it closes or when it is upgraded to a WebSocket (it then counts against
// MaxConnections).
//
// Concurrency: the returned listener is used by one http.Server.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, s: s, max: int64(s.cfg.MaxHTTPConnections),
		perClient: s.cfg.MaxHTTPConnectionsPerClient, byClient: map[string]int{},
		refusing: make(chan struct{}, maxRefusing)}
}

type limitListener struct {
	net.Listener
	s         *Server
	max       int64
	perClient int
	open      atomic.Int64

	mu       sync.Mutex
	byClient map[string]int // open connections per client IP; entries at 0 are deleted

	refusing chan struct{} // a slot per refusal in progress
}

const (
	// refusalTimeout bounds a refusal: reading the request head and
	// writing the canned 503.
	refusalTimeout = 200 * time.Millisecond
	// maxRefusing bounds the refusals in progress (one goroutine each).
	maxRefusing = 64
)

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientIP(c.RemoteAddr())
		if !l.take(client) {
			l.s.lim.HTTPConnectionRefused()
			l.refuse(c)
			continue
		}
		l.s.lim.HTTPConnections(1)
		return &limitedConn{Conn: c, l: l, client: client}, nil
	}
}

// take counts a new connection from client, unless a limit is reached.
func (l *limitListener) take(client string) bool {
	if l.open.Add(1) > l.max {
		l.open.Add(-1)
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byClient[client] >= l.perClient {
		l.open.Add(-1)
		return false
	}
	l.byClient[client]++
	return true
}

func (l *limitListener) give(client string) {
	l.open.Add(-1)
	l.mu.Lock()
	if n := l.byClient[client] - 1; n > 0 {
		l.byClient[client] = n
	} else {
		delete(l.byClient, client)
	}
	l.mu.Unlock()
	l.s.lim.HTTPConnections(-1)
}

// refuse answers c with the canned 503 after its request head (so an HTTP
// client reads it as the answer to its request) and closes it; when
// maxRefusing refusals are already in progress it closes c at once.
func (l *limitListener) refuse(c net.Conn) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refusalTimeout))
		var buf [4096]byte
		n := 0
		for n < len(buf) {
			m, err := c.Read(buf[n:])
			n += m
			if err != nil || bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
				break
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(refusalTimeout))
		_, _ = c.Write(cannedRefusal(headRequestID(buf[:n])))
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
}

// cannedRefusal is the 503 of a refused connection, with the request id
// the client sent (id, from headRequestID) or, when "", a fresh one.
func cannedRefusal(id string) []byte {
	if id == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	// encoding/json quotes the id as writeError's bodies do (a sane id may
	// hold '"' or '\\'); a string always marshals.
	q, _ := json.Marshal(id)
	body := `{"error":"SERVICE_UNAVAILABLE","message":"too many connections; retry later","request_id":` + string(q) + `}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n" +
		"X-Request-ID: " + id + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// headRequestID returns the X-Request-ID of a raw request head (what refuse
// read), or "" when there is none or it is not one the frame middleware
// would echo. frame echoes the first X-Request-ID net/http parsed when it is
// echoableRequestID; net/http has by then matched the name
// case-insensitively, trimmed the value's surrounding blanks and refused
// control characters. This head bypassed net/http, so those checks are
// made here: the value goes into the 503's header verbatim, and a CR or LF
// in it would inject headers. Only complete lines count (the head may have
// been cut at the buffer's end); the request line is skipped.
func headRequestID(head []byte) string {
	if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
		head = head[:i+2]
	}
	_, rest, ok := bytes.Cut(head, []byte("\n")) // the request line
	for ok {
		var line []byte
		if line, rest, ok = bytes.Cut(rest, []byte("\n")); !ok {
			break // incomplete: cut by the buffer or the deadline
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || !bytes.EqualFold(name, []byte("X-Request-ID")) {
			continue
		}
		id := string(bytes.Trim(value, " \t"))
		if !echoableRequestID(id) || !validHeaderValue(id) {
			return ""
		}
		return id
	}
	return ""
}

// validHeaderValue is net/http's test of a field value (httpguts): no
// control character but horizontal tab.
func validHeaderValue(v string) bool {
	for _, b := range []byte(v) {
		if b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// limitedConn releases its slot once: on Close, or on upgrade.
type limitedConn struct {
	net.Conn
	l      *limitListener
	client string
	once   sync.Once
}

func (c *limitedConn) release() { c.once.Do(func() { c.l.give(c.client) }) }

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
