package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Subscriber transports of the relay target (--transport).
const (
	TransportWS   = "ws"
	TransportPoll = "poll"
	TransportSSE  = "sse"
)

// pollTimeout is the timeout each long-poll asks for; pollRetries bounds
// the retries of a poll that failed at the transport level.
const (
	pollTimeout = 30
	pollRetries = 3
)

// consumerDriver is the relay driver with subscribers on long-poll (POST
// /api/v1/poll) or Server-Sent Events (GET /api/v1/sse) instead of
// WebSocket; publishing is the relay driver's.
type consumerDriver struct {
	*relayDriver
	transport string
	client    *http.Client  // subscribers' client: one keep-alive connection per subscriber
	retries   atomic.Uint64 // polls sent again after a transport error
}

var _ driver = (*consumerDriver)(nil)

func newConsumerDriver(rd *relayDriver, transport string, subscribers int) *consumerDriver {
	d := loopbackDialer(10 * time.Second)
	return &consumerDriver{relayDriver: rd, transport: transport, client: &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		DisableCompression:  true,
		MaxIdleConns:        subscribers + 16,
		MaxIdleConnsPerHost: subscribers + 16,
	}}}
}

func (d *consumerDriver) connect(ctx context.Context, topic string) (subConn, error) {
	if d.transport == TransportSSE {
		return d.connectSSE(ctx, topic)
	}
	// Start at the topic's newest message, so every message published
	// after connect returns is received, whenever the first poll arrives.
	u := d.base + "/api/v1/topics/" + url.PathEscape(topic) + "/messages?order=desc&limit=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	d.authorize(req)
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("poll connect %q: %w", topic, err)
	}
	defer resp.Body.Close()
	var page struct {
		Messages []struct {
			MessageID string `json:"message_id"`
		} `json:"messages"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("poll connect %q: history status %d: %s", topic, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return nil, fmt.Errorf("poll connect %q: %w", topic, err)
	}
	since := "0-0"
	if len(page.Messages) > 0 {
		since = page.Messages[0].MessageID
	}
	cctx, cancel := context.WithCancel(context.Background())
	return &pollConn{d: d, topic: topic, since: since, ctx: cctx, cancel: cancel}, nil
}

// pollConn is one long-polling subscriber: it polls again as soon as an
// answer came, with since = the last id it received.
type pollConn struct {
	d      *consumerDriver
	topic  string
	since  string
	ctx    context.Context
	cancel context.CancelFunc
}

func (c *pollConn) close() { c.cancel() }

type pollAnswer struct {
	Messages []struct {
		MessageID string          `json:"message_id"`
		Topic     string          `json:"topic"`
		Payload   json.RawMessage `json:"payload"`
	} `json:"messages"`
}

func (c *pollConn) readLoop(deliver func(topic []byte, p payload, err error)) error {
	body := make([]byte, 0, 128)
	topicB := []byte(c.topic)
	failures := 0
	for {
		body = append(body[:0], `{"topics":[`...)
		body = strconv.AppendQuote(body, c.topic)
		body = append(body, `],"since":{`...)
		body = strconv.AppendQuote(body, c.topic)
		body = append(body, ':')
		body = strconv.AppendQuote(body, c.since)
		body = append(body, `},"timeout":`...)
		body = strconv.AppendInt(body, pollTimeout, 10)
		body = append(body, '}')
		req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, c.d.base+"/api/v1/poll", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		c.d.authorize(req)
		resp, err := c.d.client.Do(req)
		if err != nil {
			// A long-poll is a read: a request that fails at the transport
			// level (a keep-alive connection closed under it) is sent
			// again, at most pollRetries times in a row, as clients do.
			if c.ctx.Err() == nil && failures < pollRetries {
				failures++
				c.d.retries.Add(1)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		failures = 0
		var a pollAnswer
		status := resp.StatusCode
		err = json.NewDecoder(resp.Body).Decode(&a)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if status != http.StatusOK {
			return fmt.Errorf("poll %q: status %d", c.topic, status)
		}
		if err != nil {
			deliver(nil, payload{}, fmt.Errorf("poll answer: %w", err))
			continue
		}
		for _, m := range a.Messages {
			p, err := decodePayload(m.Payload)
			if err != nil {
				deliver(nil, payload{}, err)
				continue
			}
			t := topicB
			if m.Topic != c.topic {
				t = []byte(m.Topic)
			}
			deliver(t, p, nil)
			c.since = m.MessageID
		}
	}
}

// connectSSE opens the event stream and returns once its "subscribed"
// event came.
func (d *consumerDriver) connectSSE(ctx context.Context, topic string) (subConn, error) {
	cctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel) // the connect bound applies until subscribed
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, d.base+"/api/v1/sse?topics="+url.QueryEscape(topic), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	d.authorize(req)
	resp, err := d.client.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("sse connect %q: %w", topic, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("sse connect %q: status %d: %s", topic, resp.StatusCode, b)
	}
	c := &sseConn{body: resp.Body, r: bufio.NewReaderSize(resp.Body, 4096), cancel: cancel}
	for range 16 {
		ev, _, err := c.next()
		if err != nil {
			c.close()
			return nil, fmt.Errorf("sse connect %q: waiting for \"subscribed\": %w", topic, err)
		}
		if ev == "subscribed" {
			if !stop() {
				c.close()
				return nil, fmt.Errorf("sse connect %q: %w", topic, ctx.Err())
			}
			return c, nil
		}
	}
	c.close()
	return nil, fmt.Errorf("sse connect %q: no \"subscribed\" event among the first 16", topic)
}

// sseConn is one SSE subscriber.
type sseConn struct {
	body   io.ReadCloser
	r      *bufio.Reader
	data   []byte
	cancel context.CancelFunc
	once   sync.Once
}

func (c *sseConn) close() {
	c.once.Do(func() { c.cancel(); c.body.Close() })
}

// next reads one event and returns its name and data (valid until the next
// call). Comments (keepalives) are skipped.
func (c *sseConn) next() (string, []byte, error) {
	var event string
	c.data = c.data[:0]
	for {
		line, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long data line: collect the rest.
			full := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = c.r.ReadSlice('\n')
				full = append(full, line...)
			}
			line = full
		}
		if err != nil {
			return "", nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if event != "" || len(c.data) > 0 {
				return event, c.data, nil
			}
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			c.data = append(c.data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
}

func (c *sseConn) readLoop(deliver func(topic []byte, p payload, err error)) error {
	for {
		ev, data, err := c.next()
		if err != nil {
			return err
		}
		switch ev {
		case "message":
			topic, p, err := parseStoredMessage(data)
			deliver(topic, p, err)
		case "relay-error", "truncated":
			deliver(nil, payload{}, fmt.Errorf("sse %s event: %.200s", ev, data))
		}
	}
}

// parseStoredMessage reads topic and payload of a stored-message object,
// on the fast path when it has the compact form the relay writes.
func parseStoredMessage(data []byte) ([]byte, payload, error) {
	if i := bytes.Index(data, relayKeyPayload); i >= 0 {
		topic, ok1 := scanString(data[:i], relayKeyTopic)
		p, ok2 := scanPayload(data[i:])
		if ok1 && ok2 {
			return append([]byte(nil), topic...), p, nil
		}
	}
	var m struct {
		Topic   string          `json:"topic"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, payload{}, fmt.Errorf("sse message %.100q: %w", data, err)
	}
	p, err := decodePayload(m.Payload)
	return []byte(m.Topic), p, err
}
