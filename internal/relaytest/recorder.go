package relaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/coder/websocket"
)

// Recorder is a WebSocket subscriber that records, per topic, the message
// ids it receives, in arrival order. Its reader runs until Close or until
// the connection ends (Err then says why).
type Recorder struct {
	conn *websocket.Conn
	done chan struct{}

	mu    sync.Mutex
	ids   map[string][]string
	count int
	err   error
}

// Record dials wsURL, sends sub as a subscribe frame (type added), waits
// for the "subscribed" answer and starts recording.
func Record(ctx context.Context, wsURL string, sub map[string]any) (*Recorder, error) {
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: HTTPClient})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(4 << 20)
	frame := map[string]any{"type": "subscribe"}
	for k, v := range sub {
		frame[k] = v
	}
	b, _ := json.Marshal(frame)
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		conn.CloseNow()
		return nil, err
	}
	r := &Recorder{conn: conn, done: make(chan struct{}), ids: make(map[string][]string)}
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			conn.CloseNow()
			return nil, fmt.Errorf("waiting for subscribed: %w", err)
		}
		if bytes.Contains(data, []byte(`"type":"subscribed"`)) {
			break
		}
		if !r.add(data) {
			conn.CloseNow()
			return nil, fmt.Errorf("before subscribed: %s", data)
		}
	}
	go r.read()
	return r, nil
}

func (r *Recorder) read() {
	defer close(r.done)
	for {
		_, data, err := r.conn.Read(context.Background())
		if err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return
		}
		if !r.add(data) {
			r.mu.Lock()
			r.err = fmt.Errorf("unexpected frame: %s", data)
			r.mu.Unlock()
		}
	}
}

// add records a message frame, cheaply (the relay writes message_id and
// topic before the payload); it reports false for any other frame.
func (r *Recorder) add(data []byte) bool {
	if !bytes.HasPrefix(data, []byte(`{"type":"message",`)) {
		return false
	}
	id, ok1 := field(data, `"message_id":"`)
	topic, ok2 := field(data, `"topic":"`)
	if !ok1 || !ok2 {
		return false
	}
	r.mu.Lock()
	r.ids[topic] = append(r.ids[topic], id)
	r.count++
	r.mu.Unlock()
	return true
}

func field(data []byte, key string) (string, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// IDs returns a copy of the ids received on topic, in arrival order.
func (r *Recorder) IDs(topic string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids[topic]...)
}

// Count returns how many messages were received.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Err returns why the reader stopped (nil while it runs).
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Close closes the connection and waits for the reader.
func (r *Recorder) Close() {
	r.conn.Close(websocket.StatusNormalClosure, "")
	r.conn.CloseNow()
	<-r.done
}
