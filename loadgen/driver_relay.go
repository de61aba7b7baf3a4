package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// relayDriver speaks the relay's wire contract: POST /api/v1/messages
// answering 201, and WebSocket /ws with subscribe/subscribed/message frames.
type relayDriver struct {
	base   string // http://host:port
	wsURL  string // ws://host:port/ws
	pub    poster
	dialer *http.Client
	// authName and authValue: the Authorization header when --token is set.
	authName, authValue string
}

var _ driver = (*relayDriver)(nil)

func newRelayDriver(addr string, pub poster, ws *http.Client) *relayDriver {
	return &relayDriver{base: "http://" + addr, wsURL: "ws://" + addr + "/ws", pub: pub, dialer: ws}
}

func (d *relayDriver) appendPublishBody(dst []byte, topic string, payload []byte) []byte {
	dst = append(dst, `{"topic":`...)
	dst = strconv.AppendQuote(dst, topic)
	dst = append(dst, `,"payload":`...)
	dst = append(dst, payload...)
	return append(dst, '}')
}

func (d *relayDriver) publish(ctx context.Context, body []byte) error {
	status, ans, err := postJSON(ctx, d.pub, d.base+"/api/v1/messages", body, d.authName, d.authValue)
	if err != nil {
		return err
	}
	if status != http.StatusCreated {
		return &publishError{Kind: "status " + strconv.Itoa(status), Status: status, Err: fmt.Errorf("POST /api/v1/messages: %.200s", ans)}
	}
	return nil
}

func (d *relayDriver) connect(ctx context.Context, topic string) (subConn, error) {
	w, err := dialWS(ctx, d.dialer, d.wsURL)
	if err != nil {
		return nil, err
	}
	sub := append([]byte(`{"type":"subscribe","topics":[`), strconv.Quote(topic)...)
	sub = append(sub, "]}"...)
	if err := w.write(ctx, sub); err != nil {
		w.close()
		return nil, fmt.Errorf("relay subscribe %q: %w", topic, err)
	}
	for range 16 { // a few unrelated frames may come first; the subscribe answer is bounded
		frame, err := w.next(ctx)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("relay subscribe %q: waiting for \"subscribed\": %w", topic, err)
		}
		f, err := parseRelayFrame(frame)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("relay subscribe %q: %w", topic, err)
		}
		switch f.kind {
		case relaySubscribed:
			return &relayConn{w: w}, nil
		case relayError:
			w.close()
			return nil, fmt.Errorf("relay subscribe %q: error frame: %s", topic, f.errText)
		}
	}
	w.close()
	return nil, fmt.Errorf("relay subscribe %q: no \"subscribed\" frame among the first 16", topic)
}

type relayConn struct{ w *wsConn }

func (c *relayConn) close() { c.w.close() }

func (c *relayConn) readLoop(deliver func(topic []byte, p payload, err error)) error {
	for {
		frame, err := c.w.next(context.Background())
		if err != nil {
			return err
		}
		f, err := parseRelayFrame(frame)
		switch {
		case err != nil:
			deliver(nil, payload{}, err)
		case f.kind == relayMessage:
			deliver(f.topic, f.p, nil)
		case f.kind == relayError:
			deliver(nil, payload{}, fmt.Errorf("relay error frame: %s", f.errText))
		}
	}
}

// Kinds of relay server frames that matter to the load generator.
const (
	relayOther = iota
	relayMessage
	relaySubscribed
	relayError
)

// relayFrame is the part of a relay server frame the load generator uses.
type relayFrame struct {
	kind    int
	topic   []byte // message: the topic (aliases the frame on the fast path)
	p       payload
	errText string // error: "CODE: message"
}

var (
	relayTypeMessage = []byte(`"type":"message"`)
	relayKeyTopic    = []byte(`"topic":"`)
	relayKeyPayload  = []byte(`"payload":{`)
)

// parseRelayFrame classifies one server frame. Message frames take a fast
// path (no JSON decoding) when they have the compact form the relay writes;
// anything else is decoded in full. An error means the frame is not JSON, or
// a message frame without a usable topic and payload.
func parseRelayFrame(frame []byte) (relayFrame, error) {
	if bytes.Contains(frame, relayTypeMessage) {
		// Scan the payload keys only inside "payload", and the topic only
		// outside it.
		if i := bytes.Index(frame, relayKeyPayload); i >= 0 {
			topic, ok1 := scanString(frame[:i], relayKeyTopic)
			if !ok1 {
				topic, ok1 = scanAfterObject(frame[i:], relayKeyTopic)
			}
			p, ok2 := scanPayload(frame[i:])
			if ok1 && ok2 {
				return relayFrame{kind: relayMessage, topic: topic, p: p}, nil
			}
		}
	}
	var f struct {
		Type    string          `json:"type"`
		Topic   string          `json:"topic"`
		Payload json.RawMessage `json:"payload"`
		Code    string          `json:"code"`
		Message string          `json:"message"`
	}
	if err := json.Unmarshal(frame, &f); err != nil {
		return relayFrame{}, fmt.Errorf("relay frame %.100q: %w", frame, err)
	}
	switch f.Type {
	case "message":
		p, err := decodePayload(f.Payload)
		if err != nil {
			return relayFrame{}, fmt.Errorf("relay message on %q: %w", f.Topic, err)
		}
		return relayFrame{kind: relayMessage, topic: []byte(f.Topic), p: p}, nil
	case "subscribed":
		return relayFrame{kind: relaySubscribed}, nil
	case "error":
		return relayFrame{kind: relayError, errText: f.Code + ": " + f.Message}, nil
	}
	return relayFrame{kind: relayOther}, nil
}

// scanAfterObject finds key after the JSON object that b starts with (at its
// first '{'), for frames where "topic" follows "payload". The payload is ours
// and holds no strings with braces, so counting braces finds its end.
func scanAfterObject(b, key []byte) ([]byte, bool) {
	start := bytes.IndexByte(b, '{')
	if start < 0 {
		return nil, false
	}
	depth := 0
	for i := start; i < len(b); i++ {
		switch b[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return scanString(b[i+1:], key)
			}
		}
	}
	return nil, false
}
