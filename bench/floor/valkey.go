package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"
)

// The Valkey floor: the least a relay-shaped server does per publish in the
// ingest-valkey scenarios, so their figures can be set against what this
// machine allows at all with the same load generator, the same Valkey and
// the same two cores. Per publish: one HTTP request read and answered 201
// after Valkey stored the message (one script call, XADD and PUBLISH,
// auto-pipelined by valkey-go with the other publishes in flight), one
// message in on the one pattern subscription, and its frame queued for
// each subscriber of its topic, whose writer goroutine sends everything
// queued in one write(2) (a first version that wrote each frame at once
// from the receiving goroutine made about half the publishes/s over one
// topic with ten subscribers).
//
// What it leaves out, and the relay cannot: validation, limits, ids and
// replay, trimming and expiry, epochs, idempotency, authentication,
// back-pressure (a subscriber's queue grows without bound), metrics. It
// speaks exactly what `relay bench --target relay` uses: POST
// /api/v1/messages with {"topic":"t","payload":{...}} and /ws with one
// subscribe frame naming one topic.

// floorScript stores one message and announces it as the subscriber's frame.
var floorScript = valkey.NewLuaScript(`
local id = redis.call('XADD', KEYS[1], '*', 'payload', ARGV[2])
redis.call('PUBLISH', 'floor:' .. ARGV[1], '{"type":"message","topic":"' .. ARGV[1] .. '","message_id":"' .. id .. '","payload":' .. ARGV[2] .. '}')
return id
`)

var (
	keyTopic   = []byte(`"topic":"`)
	keyPayload = []byte(`"payload":`)
)

// valkeyFloor holds the subscribers by topic.
type valkeyFloor struct {
	vk   valkey.Client
	mu   sync.Mutex
	subs map[string][]*floorSub
}

func serveValkey(args []string) error {
	fs := flag.NewFlagSet("valkey", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	vaddr := fs.String("valkey", "127.0.0.1:6379", "Valkey address")
	fs.Parse(args)
	vk, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{*vaddr}, DisableCache: true, AlwaysPipelining: true})
	if err != nil {
		return err
	}
	defer vk.Close()
	f := &valkeyFloor{vk: vk, subs: map[string][]*floorSub{}}
	ready := make(chan struct{})
	go func() {
		err := vk.Receive(context.Background(), vk.B().Psubscribe().Pattern("floor:*").Build(), f.deliver)
		fmt.Fprintln(os.Stderr, "floor: subscription ended:", err)
		os.Exit(1)
	}()
	// The subscription is in place once a PUBLISH reaches it.
	go func() {
		for {
			if n, _ := vk.Do(context.Background(), vk.B().Publish().Channel("floor:").Message("").Build()).AsInt64(); n > 0 {
				close(ready)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	<-ready
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\npid %d\n", ln.Addr(), os.Getpid())
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/messages", f.publish)
	mux.HandleFunc("GET /ws", f.subscribe)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {}) // 200: serving
	return (&http.Server{Handler: mux}).Serve(ln)
}

// publish stores the body's payload on its topic and answers 201 once
// Valkey has it.
func (f *valkeyFloor) publish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	topic, payload, ok := splitPublish(body)
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	t := string(topic)
	id, err := floorScript.Exec(r.Context(), f.vk, []string{"floor:{" + t + "}:stream"}, []string{t, valkey.BinaryString(payload)}).ToString()
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"message_id":%q,"topic":%q}`+"\n", id, t)
}

// splitPublish finds the topic and the payload in the load generator's
// publish body, {"topic":"t","payload":{...}}.
func splitPublish(body []byte) (topic, payload []byte, ok bool) {
	i := bytes.Index(body, keyTopic)
	if i < 0 {
		return nil, nil, false
	}
	rest := body[i+len(keyTopic):]
	j := bytes.IndexByte(rest, '"')
	k := bytes.Index(body, keyPayload)
	end := bytes.LastIndexByte(body, '}')
	if j <= 0 || k < 0 || end <= k+len(keyPayload) {
		return nil, nil, false
	}
	return rest[:j], bytes.TrimSpace(body[k+len(keyPayload) : end]), true
}

// subscribe upgrades to a WebSocket by hand (RFC 6455, no extensions),
// reads one subscribe frame naming one topic, answers "subscribed", and
// holds the connection, discarding what the client sends, until it closes.
func (f *valkeyFloor) subscribe(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want a WebSocket upgrade", http.StatusBadRequest)
		return
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	msg, err := readClientFrame(brw.Reader)
	if err != nil {
		return
	}
	i := bytes.Index(msg, []byte(`"topics":["`))
	if i < 0 {
		return
	}
	rest := msg[i+len(`"topics":["`):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return
	}
	topic := string(rest[:j])
	s := &floorSub{conn: conn, wake: make(chan struct{}, 1)}
	if _, err := conn.Write(appendFrame(nil, []byte(`{"type":"subscribed","topics":["`+topic+`"]}`))); err != nil {
		return
	}
	f.mu.Lock()
	f.subs[topic] = append(f.subs[topic], s)
	f.mu.Unlock()
	go s.writeLoop()
	for {
		if _, err := readClientFrame(brw.Reader); err != nil {
			break
		}
	}
	f.mu.Lock()
	list := f.subs[topic]
	for k, x := range list {
		if x == s {
			f.subs[topic] = append(list[:k:k], list[k+1:]...)
			break
		}
	}
	f.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
}

// readClientFrame reads one masked client frame and returns its payload
// unmasked (fragments and control frames are returned as they come).
func readClientFrame(r *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	if h[0]&0x0f == 0x8 {
		return nil, io.EOF // close
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	var mask [4]byte
	if h[1]&0x80 != 0 {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	for i := range p {
		p[i] ^= mask[i&3]
	}
	return p, nil
}

// appendFrame appends p to dst as one unmasked server text frame.
func appendFrame(dst, p []byte) []byte {
	switch n := len(p); {
	case n <= 125:
		dst = append(dst, 0x81, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x81, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x81, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, p...)
}

// floorSub is one subscriber: frames queue in pending and its writer
// sends everything queued in one write(2).
type floorSub struct {
	conn    net.Conn
	wake    chan struct{}
	mu      sync.Mutex
	pending []byte
	closed  bool
}

func (s *floorSub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *floorSub) writeLoop() {
	var buf []byte
	for range s.wake {
		s.mu.Lock()
		buf, s.pending = s.pending, buf[:0]
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
		if len(buf) > 0 {
			if _, err := s.conn.Write(buf); err != nil {
				return
			}
		}
	}
}

// deliver queues one announced message for every subscriber of its topic.
func (f *valkeyFloor) deliver(m valkey.PubSubMessage) {
	topic := m.Channel[len("floor:"):]
	f.mu.Lock()
	subs := f.subs[topic]
	f.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		s.pending = appendFrame(s.pending, []byte(m.Message))
		s.mu.Unlock()
		s.signal()
	}
}
