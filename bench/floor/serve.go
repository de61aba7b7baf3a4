package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// What the two Valkey-backed floors (valkey.go, actor.go) share: their
// flags and Valkey client, the pattern subscription their announcements
// arrive on, the HTTP server, and the part of the relay's contract that
// `relay bench --target relay` uses: POST /api/v1/messages with
// {"topic":"t","payload":{...}} answered 201 with a message id, and /ws
// upgraded by hand (RFC 6455, no extensions) with one subscribe frame
// naming one topic.

// floorFlags parses a Valkey-backed floor's flags (-addr, -valkey) and
// connects to Valkey.
func floorFlags(name string, args []string) (addr string, vk valkey.Client, err error) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	a := fs.String("addr", "127.0.0.1:0", "listen address")
	vaddr := fs.String("valkey", "127.0.0.1:6379", "Valkey address")
	fs.Parse(args)
	vk, err = valkey.NewClient(valkey.ClientOption{InitAddress: []string{*vaddr}, DisableCache: true, AlwaysPipelining: true})
	return *a, vk, err
}

// subscribeFloor subscribes fn to the channels floor:<topic> and returns
// once the subscription is in place (a PUBLISH reaches it). The process
// exits if the subscription ends while vk is open: a floor that stopped
// hearing its announcements would measure nothing.
func subscribeFloor(vk valkey.Client, fn func(valkey.PubSubMessage)) {
	go func() {
		err := vk.Receive(context.Background(), vk.B().Psubscribe().Pattern("floor:*").Build(), fn)
		if errors.Is(err, valkey.ErrClosing) { // the floor closed its client
			return
		}
		fmt.Fprintln(os.Stderr, "floor: subscription ended:", err)
		os.Exit(1)
	}()
	for {
		if n, _ := vk.Do(context.Background(), vk.B().Publish().Channel("floor:").Message("").Build()).AsInt64(); n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveFloor listens on addr, prints "listening ADDR" and "pid PID", and
// serves the floor's routes (floorRoutes) until killed.
func serveFloor(addr string, publish, subscribe http.HandlerFunc) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\npid %d\n", ln.Addr(), os.Getpid())
	return (&http.Server{Handler: floorRoutes(publish, subscribe)}).Serve(ln)
}

// floorRoutes serves publish, subscribe and GET /health (200: serving).
func floorRoutes(publish, subscribe http.HandlerFunc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/messages", publish)
	mux.HandleFunc("GET /ws", subscribe)
	mux.HandleFunc("GET /health", func(http.ResponseWriter, *http.Request) {})
	return mux
}

// readPublish reads a publish body and returns its topic and payload, or
// answers 400 and returns false.
func readPublish(w http.ResponseWriter, r *http.Request) (topic string, payload []byte, ok bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return "", nil, false
	}
	t, payload, ok := splitPublish(body)
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		return "", nil, false
	}
	return string(t), payload, true
}

// answerPublish answers 201 with the stored message's id.
func answerPublish(w http.ResponseWriter, id, topic string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"message_id":%q,"topic":%q}`+"\n", id, topic)
}

var (
	keyTopic   = []byte(`"topic":"`)
	keyPayload = []byte(`"payload":`)
)

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

// acceptSubscriber upgrades to a WebSocket by hand, reads one subscribe
// frame naming one topic and answers "subscribed". On success the caller
// owns conn (and closes it) and reads the client's frames from rd.
func acceptSubscriber(w http.ResponseWriter, r *http.Request) (conn net.Conn, rd *bufio.Reader, topic string, ok bool) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want a WebSocket upgrade", http.StatusBadRequest)
		return nil, nil, "", false
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, "", false
	}
	if topic, ok = handshake(conn, brw, base64.StdEncoding.EncodeToString(sum[:])); !ok {
		conn.Close()
		return nil, nil, "", false
	}
	return conn, brw.Reader, topic, true
}

// handshake finishes the upgrade with accept as Sec-WebSocket-Accept,
// reads the subscribe frame and answers it; it reports the topic.
func handshake(conn net.Conn, brw *bufio.ReadWriter, accept string) (string, bool) {
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		accept + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		return "", false
	}
	msg, err := readClientFrame(brw.Reader)
	if err != nil {
		return "", false
	}
	i := bytes.Index(msg, []byte(`"topics":["`))
	if i < 0 {
		return "", false
	}
	rest := msg[i+len(`"topics":["`):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return "", false
	}
	topic := string(rest[:j])
	if _, err := conn.Write(appendFrame(nil, []byte(`{"type":"subscribed","topics":["`+topic+`"]}`))); err != nil {
		return "", false
	}
	return topic, true
}

// holdSubscriber discards what the client sends until it closes.
func holdSubscriber(rd *bufio.Reader) {
	for {
		if _, err := readClientFrame(rd); err != nil {
			return
		}
	}
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
