package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
)

// rawWS is a minimal WebSocket client on a bare TCP socket, for tests that
// need control of the socket (a tiny receive buffer, reading nothing) and an
// exact view of the frames, close frames included.
type rawWS struct {
	conn net.Conn
	br   *bufio.Reader
}

// dialRaw upgrades a TCP connection with receive buffer rcvbuf bytes.
func dialRaw(wsURL string, rcvbuf int) (*rawWS, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if rcvbuf > 0 {
		_ = conn.(*net.TCPConn).SetReadBuffer(rcvbuf)
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", u.RequestURI(), u.Host, base64.StdEncoding.EncodeToString(key[:]))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	return &rawWS{conn: conn, br: br}, nil
}

// writeText sends one masked text frame (clients must mask).
func (w *rawWS) writeText(p []byte) error { return w.writeOp(0x1, p) }

// writeOp sends one masked, final frame of opcode op.
func (w *rawWS) writeOp(op byte, p []byte) error {
	hdr := []byte{0x80 | op}
	switch {
	case len(p) < 126:
		hdr = append(hdr, 0x80|byte(len(p)))
	default:
		hdr = append(hdr, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	out := make([]byte, len(p))
	for i := range p {
		out[i] = p[i] ^ mask[i%4]
	}
	_, err := w.conn.Write(append(hdr, out...))
	return err
}

// readFrame reads one frame: its opcode and payload. Server frames are
// unmasked and, from this relay, never fragmented.
func (w *rawWS) readFrame() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.br, p); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, p, nil
}

// closeCode returns the status code of a close frame payload.
func closeCode(p []byte) int {
	if len(p) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(p))
}

// TestFrameSentWithTheUpgrade: a client that sends its first frame in the
// same write as the upgrade request (bytes the HTTP server has already
// buffered when the connection is hijacked) is understood.
func TestFrameSentWithTheUpgrade(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	u, _ := url.Parse(r.WSURL)
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	w := &rawWS{conn: conn, br: bufio.NewReader(conn)}
	var frame bytes.Buffer
	wbuf := &rawWS{conn: writerConn{conn, &frame}}
	_ = wbuf.writeText([]byte(`{"type":"subscribe","topics":["early"]}`))
	req := "GET /ws HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), frame.Bytes()...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	op, p, err := w.readFrame()
	if err != nil || op != 1 || !bytes.Contains(p, []byte(`"subscribed"`)) {
		t.Fatalf("got op %d %s %v, want the subscribed frame", op, p, err)
	}
}

// writerConn is a net.Conn whose writes go to a buffer.
type writerConn struct {
	net.Conn
	buf *bytes.Buffer
}

func (c writerConn) Write(p []byte) (int, error) { return c.buf.Write(p) }

// TestBadFramesOnTheWire: a binary frame gets an INVALID_MESSAGE error
// frame and the connection lives on (frames are JSON in text frames); a
// text frame that is not UTF-8 closes the connection with 1007 (RFC 6455,
// SPEC). Both were read as if they were valid text.
func TestBadFramesOnTheWire(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	w, err := dialRaw(r.WSURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.conn.Close()
	_ = w.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := w.writeOp(0x2, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	op, p, err := w.readFrame()
	if err != nil || op != 1 || !bytes.Contains(p, []byte(`"INVALID_MESSAGE"`)) {
		t.Fatalf("binary frame: op %d %s %v, want an INVALID_MESSAGE error frame", op, p, err)
	}
	if err := w.writeText([]byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if op, p, err := w.readFrame(); err != nil || op != 1 || !bytes.Contains(p, []byte(`"pong"`)) {
		t.Fatalf("after the binary frame: op %d %s %v, want a pong", op, p, err)
	}
	if err := w.writeText([]byte("{\"type\":\"ping\",\"x\":\"\xff\xfe\"}")); err != nil {
		t.Fatal(err)
	}
	op, p, err = w.readFrame()
	if err != nil || op != 8 || closeCode(p) != 1007 {
		t.Fatalf("text frame not UTF-8: op %d %q %v, want close 1007", op, p, err)
	}
}
