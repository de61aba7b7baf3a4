package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// centrifugoDriver speaks Centrifugo v6's JSON client protocol over
// /connection/websocket and publishes through its HTTP server API
// (POST /api/publish with X-API-Key). The server must let anonymous clients
// connect and subscribe (client.insecure: true in the bench config).
type centrifugoDriver struct {
	apiURL   string
	batchURL string
	wsURL    string
	apiKey   string
	pub      poster
	dialer   *http.Client
}

var _ driver = (*centrifugoDriver)(nil)

func newCentrifugoDriver(addr, apiKey string, pub poster, ws *http.Client) *centrifugoDriver {
	return &centrifugoDriver{
		apiURL:   "http://" + addr + "/api/publish",
		batchURL: "http://" + addr + "/api/batch",
		wsURL:    "ws://" + addr + "/connection/websocket",
		apiKey:   apiKey,
		pub:      pub,
		dialer:   ws,
	}
}

func (d *centrifugoDriver) appendPublishBody(dst []byte, topic string, payload []byte) []byte {
	dst = append(dst, `{"channel":`...)
	dst = strconv.AppendQuote(dst, topic)
	dst = append(dst, `,"data":`...)
	dst = append(dst, payload...)
	return append(dst, '}')
}

// publish posts to /api/publish. Centrifugo answers API errors with 200 and
// {"error":{"code","message"}}, so the body decides, not only the status.
func (d *centrifugoDriver) publish(ctx context.Context, body []byte) error {
	status, ans, err := postJSON(ctx, d.pub, d.apiURL, body, "X-API-Key", d.apiKey)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return &publishError{Kind: "status " + strconv.Itoa(status), Status: status, Err: fmt.Errorf("POST /api/publish: %.200s", ans)}
	}
	if code, ok := scanUint(ans, []byte(`"code":`)); ok && bytes.Contains(ans, []byte(`"error"`)) {
		return &publishError{Kind: "api error " + strconv.FormatUint(code, 10), Err: fmt.Errorf("POST /api/publish: %.200s", ans)}
	}
	if !bytes.Contains(ans, []byte(`"result"`)) {
		return &publishError{Kind: "bad answer", Err: fmt.Errorf("POST /api/publish: %.200s", ans)}
	}
	return nil
}

// connect sends the connect command, waits for its reply, then subscribes and
// waits for that reply. Commands have ids 1 and 2.
func (d *centrifugoDriver) connect(ctx context.Context, topic string) (subConn, error) {
	w, err := dialWS(ctx, d.dialer, d.wsURL)
	if err != nil {
		return nil, err
	}
	c := &centrifugoConn{w: w}
	if err := c.command(ctx, 1, []byte(`{"id":1,"connect":{}}`)); err != nil {
		w.close()
		return nil, fmt.Errorf("centrifugo connect: %w", err)
	}
	sub := append([]byte(`{"id":2,"subscribe":{"channel":`), strconv.Quote(topic)...)
	sub = append(sub, "}}"...)
	if err := c.command(ctx, 2, sub); err != nil {
		w.close()
		return nil, fmt.Errorf("centrifugo subscribe %q: %w", topic, err)
	}
	return c, nil
}

type centrifugoConn struct{ w *wsConn }

func (c *centrifugoConn) close() { c.w.close() }

// command writes cmd and reads until the reply with id arrives, answering
// pings on the way. At most 64 frames are read.
func (c *centrifugoConn) command(ctx context.Context, id uint64, cmd []byte) error {
	if err := c.w.write(ctx, cmd); err != nil {
		return err
	}
	for range 64 {
		frame, err := c.w.next(ctx)
		if err != nil {
			return fmt.Errorf("waiting for reply %d: %w", id, err)
		}
		var reply error
		found := false
		err = forEachLine(frame, func(line []byte) error {
			l, err := parseCentrifugoLine(line)
			if err != nil {
				return err
			}
			switch l.kind {
			case cfPing:
				return c.w.write(ctx, []byte(`{}`))
			case cfReply:
				if l.id == id {
					found, reply = true, l.err
				}
			case cfDisconnect:
				return fmt.Errorf("disconnected: %s", l.text)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if found {
			return reply
		}
	}
	return fmt.Errorf("no reply %d among the first 64 frames", id)
}

func (c *centrifugoConn) readLoop(deliver func(topic []byte, p payload, err error)) error {
	for {
		frame, err := c.w.next(context.Background())
		if err != nil {
			return err
		}
		err = forEachLine(frame, func(line []byte) error {
			l, err := parseCentrifugoLine(line)
			switch {
			case err != nil:
				deliver(nil, payload{}, err)
			case l.kind == cfPub:
				deliver(l.channel, l.p, nil)
			case l.kind == cfPing:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return c.w.write(ctx, []byte(`{}`))
			case l.kind == cfDisconnect:
				return fmt.Errorf("centrifugo disconnect: %s", l.text)
			case l.kind == cfUnsubscribed:
				deliver(nil, payload{}, fmt.Errorf("centrifugo unsubscribe push: %s", l.text))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}

// forEachLine calls fn for each non-empty newline-separated part of frame
// (Centrifugo batches several replies and pushes into one frame), stopping at
// the first error.
func forEachLine(frame []byte, fn func(line []byte) error) error {
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

var errCentrifugoReply = errors.New("centrifugo error reply")
