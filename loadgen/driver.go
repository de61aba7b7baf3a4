package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// driver speaks one server's wire protocol. Its methods are safe for
// concurrent use.
type driver interface {
	// connect opens one subscriber connection, subscribes it to topic and
	// returns once the server confirmed the subscription.
	connect(ctx context.Context, topic string) (subConn, error)
	// appendPublishBody appends to dst the HTTP body that publishes the JSON
	// object payload to topic.
	appendPublishBody(dst []byte, topic string, payload []byte) []byte
	// publish sends one body made by appendPublishBody. It returns nil only
	// when the server acknowledged the message; otherwise a *publishError.
	publish(ctx context.Context, body []byte) error
	// publishBatch sends the batch as one bulk request and sets b.ok per
	// item. An error means the whole request failed (b.ok all false).
	publishBatch(ctx context.Context, b *batch) error
}

// subConn is one subscriber connection.
type subConn interface {
	// readLoop reads until the connection ends and calls deliver for every
	// publication it carries (ok false: a publication it could not parse, with
	// the reason in err). It returns what ended the connection.
	readLoop(deliver func(topic []byte, p payload, err error)) error
	// close ends the connection at once (no closing handshake), which makes
	// readLoop return. Safe to call more than once and concurrently.
	close()
}

// publishError is a publish the server did not acknowledge. Kind groups
// errors in the report ("status 503", "timeout", "api error 102"). Status is
// the HTTP status of the answer when there was one (0: no answer).
type publishError struct {
	Kind   string
	Status int
	Err    error
}

// isRefusal reports whether err is the server refusing the publish under load:
// an answer with 503 Service Unavailable or 429 Too Many Requests. Such
// publishes are counted apart from other failures (see pubStats.refused).
func isRefusal(err error) bool {
	var pe *publishError
	return errors.As(err, &pe) && (pe.Status == http.StatusServiceUnavailable || pe.Status == http.StatusTooManyRequests)
}

func (e *publishError) Error() string { return e.Kind + ": " + e.Err.Error() }
func (e *publishError) Unwrap() error { return e.Err }

// loopbackDialer returns a dialer that refuses any address that is not a
// loopback address after name resolution: the last guard against a load test
// leaving this machine.
func loopbackDialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("loadgen: dial %q: %w", address, err)
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("loadgen: refusing to dial non-loopback address %s", address)
			}
			return nil
		},
	}
}

// newClients returns the publishers' client for addr (see rawPoster; at most
// 2*pubs idle keep-alive connections) and the client that WebSocket dials
// use. Both dial loopback addresses only.
func newClients(addr string, pubs int, reqTimeout time.Duration) (*rawPoster, *http.Client) {
	d := loopbackDialer(10 * time.Second)
	ws := &http.Client{
		Transport: &http.Transport{
			Proxy:              nil,
			DialContext:        d.DialContext,
			DisableCompression: true,
			DisableKeepAlives:  true,
		},
	}
	return newRawPoster(addr, d, reqTimeout, 2*pubs), ws
}

// postJSON posts body to url with the extra header (if name is not empty) and
// returns the status and at most 4 KB of the answer; the rest is discarded so
// the connection can be reused.
func postJSON(ctx context.Context, p poster, url string, body []byte, name, value string) (int, []byte, error) {
	return p.post(ctx, url, body, name, value, 4096)
}

// postJSONFull is postJSON for answers of up to 1 MB (bulk results).
func postJSONFull(ctx context.Context, p poster, url string, body []byte, name, value string) (int, []byte, error) {
	return p.post(ctx, url, body, name, value, 1<<20)
}

// wsConn wraps a WebSocket connection with a reusable read buffer.
type wsConn struct {
	c   *websocket.Conn
	buf bytes.Buffer
}

// dialWS opens a WebSocket without compression and with a 16 MB read limit.
func dialWS(ctx context.Context, client *http.Client, url string) (*wsConn, error) {
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:      client,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: status %d: %w", url, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c.SetReadLimit(16 << 20)
	return &wsConn{c: c}, nil
}

// next reads one text frame into the connection's buffer and returns it; the
// slice is valid until the next call. ctx without a deadline costs nothing
// per read (the library sets up no timer), so the read loop passes
// context.Background() and relies on close to end it.
func (w *wsConn) next(ctx context.Context) ([]byte, error) {
	typ, r, err := w.c.Reader(ctx)
	if err != nil {
		return nil, err
	}
	w.buf.Reset()
	if _, err := w.buf.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	if typ != websocket.MessageText {
		return nil, fmt.Errorf("unexpected binary frame of %d bytes", w.buf.Len())
	}
	return w.buf.Bytes(), nil
}

func (w *wsConn) write(ctx context.Context, frame []byte) error {
	if err := w.c.Write(ctx, websocket.MessageText, frame); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

func (w *wsConn) close() { _ = w.c.CloseNow() }
