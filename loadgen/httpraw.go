package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// poster sends one POST with a JSON body and returns the status and at most
// limit bytes of the answer. Safe for concurrent use.
type poster interface {
	post(ctx context.Context, url string, body []byte, name, value string, limit int64) (int, []byte, error)
}

// rawPoster is the publishers' HTTP/1.1 client: requests are written by hand
// on keep-alive connections (one per request in flight, kept in an idle pool)
// and answers are parsed with net/http's ReadResponse. Per request it costs a
// fraction of http.Client's CPU (no per-connection goroutines, no request
// context plumbing, no header maps on the way out), which matters because the
// load generator shares two cores with the server it measures.
//
// A request is bounded by the per-request timeout (or ctx's deadline if
// sooner), set as the connection's deadline. A request that fails is not
// retried: its message counts as not acknowledged, as with any client.
type rawPoster struct {
	base    string // "http://host:port"; every url must start with it
	host    string
	dialer  *net.Dialer
	timeout time.Duration
	idle    chan *rawConn
}

type rawConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

var _ poster = (*rawPoster)(nil)

// newRawPoster returns a client for addr keeping at most maxIdle idle
// connections.
func newRawPoster(addr string, dialer *net.Dialer, timeout time.Duration, maxIdle int) *rawPoster {
	return &rawPoster{base: "http://" + addr, host: addr, dialer: dialer, timeout: timeout, idle: make(chan *rawConn, maxIdle)}
}

func (p *rawPoster) post(ctx context.Context, url string, body []byte, name, value string, limit int64) (int, []byte, error) {
	path, ok := strings.CutPrefix(url, p.base)
	if !ok || !strings.HasPrefix(path, "/") {
		return 0, nil, &publishError{Kind: "request", Err: fmt.Errorf("url %q is not under %s", url, p.base)}
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, &publishError{Kind: "canceled", Err: err}
	}
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	rc, err := p.get(ctx, deadline)
	if err != nil {
		return 0, nil, classify(err)
	}
	status, ans, keep, err := rc.roundTrip(p.host, path, body, name, value, limit, deadline)
	if err != nil || !keep {
		_ = rc.c.Close()
	} else {
		p.put(rc)
	}
	if err != nil {
		return status, ans, classify(err)
	}
	return status, ans, nil
}

// get takes an idle connection or dials a new one.
func (p *rawPoster) get(ctx context.Context, deadline time.Time) (*rawConn, error) {
	select {
	case rc := <-p.idle:
		return rc, nil
	default:
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := p.dialer.DialContext(dctx, "tcp", p.host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", p.host, err)
	}
	return &rawConn{c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}, nil
}

// put returns a connection to the idle pool, or closes it if the pool is full.
func (p *rawPoster) put(rc *rawConn) {
	select {
	case p.idle <- rc:
	default:
		_ = rc.c.Close()
	}
}

// closeIdle closes every idle connection.
func (p *rawPoster) closeIdle() {
	for {
		select {
		case rc := <-p.idle:
			_ = rc.c.Close()
		default:
			return
		}
	}
}

// roundTrip writes one request and reads its answer; keep reports whether
// the connection may be reused.
func (rc *rawConn) roundTrip(host, path string, body []byte, name, value string, limit int64, deadline time.Time) (status int, ans []byte, keep bool, err error) {
	if err := rc.c.SetDeadline(deadline); err != nil {
		return 0, nil, false, fmt.Errorf("set deadline: %w", err)
	}
	w := rc.bw
	w.WriteString("POST ")
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(body)))
	if name != "" {
		w.WriteString("\r\n")
		w.WriteString(name)
		w.WriteString(": ")
		w.WriteString(value)
	}
	w.WriteString("\r\n\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return 0, nil, false, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		return 0, nil, false, fmt.Errorf("read answer: %w", err)
	}
	ans, err = io.ReadAll(io.LimitReader(resp.Body, limit))
	if err == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	}
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, ans, false, fmt.Errorf("read answer body: %w", err)
	}
	return resp.StatusCode, ans, !resp.Close, nil
}

// classify wraps a transport error as a publishError of kind "timeout" or
// "transport".
func classify(err error) error {
	kind := "transport"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		kind = "timeout"
	}
	return &publishError{Kind: kind, Err: err}
}
