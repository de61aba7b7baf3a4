// Command attack runs one of the hostile-client attacks of issue 15 against a
// running relay, from one client, for a bounded time, while it samples the
// relay's resident memory (/proc/PID/status) and /health latency. It is a
// test tool for loopback relays; it never runs longer than -duration (at
// most 5 minutes) and cleans up its connections when it ends.
//
//	go run ./scripts/attack -addr 127.0.0.1:8080 -pid $(pgrep -n relay) -attack slowbody -duration 30s
//
// Attacks (issue 15 item in brackets):
//
//	history   [4] concurrent limit=1000 history reads over 1 MiB messages, half of them never reading the answer
//	bulk      [4] concurrent bulk publishes of RELAY_MAX_BULK_SIZE and over
//	slowbody  [5] up to -conns connections (default 5,000), each trickling a request body one byte per second
//	pings     [3] WebSocket clients sending pings and large unknown frames and never reading
//	replay    [1] WebSocket clients subscribing to 100 topics from "earliest", never reading
//	churn     [2] WebSocket clients subscribing and unsubscribing fresh topic names
//
// /health is probed every 100 ms on a keep-alive connection opened before
// the attack (the latency an established client sees), and once a second on
// a fresh connection (which a connection cap may refuse: counted apart).
// When the attack ends its connections close all at once; the keep-alive
// probe then runs every 20 ms for 2 s, reported apart (the teardown).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

type options struct {
	addr     string
	pid      int
	attack   string
	duration time.Duration
	conns    int
	msgSize  int
	bodyLen  int
	probeIP  string
	store    bool
	maxRSS   int64 // MiB
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8080", "relay host:port")
	flag.IntVar(&o.pid, "pid", 0, "relay process id, for RSS sampling (0: no RSS)")
	flag.StringVar(&o.attack, "attack", "slowbody", "history, bulk, slowbody, pings, replay or churn")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "how long the attack runs (at most 5m)")
	flag.IntVar(&o.conns, "conns", 0, "attacking connections (0: the attack's default)")
	flag.IntVar(&o.msgSize, "msg-size", 1000<<10, "message size for history and bulk, bytes")
	flag.IntVar(&o.bodyLen, "body-len", 1000, "slowbody: the Content-Length each trickled request announces")
	flag.StringVar(&o.probeIP, "probe-from", "127.0.0.2", "source address of the /health probes: another client than the attacker (127.0.0.1); empty: the system's choice")
	flag.BoolVar(&o.store, "store", false, "bulk: send items the relay stores (measures storage growth too); default: items it decodes in full and then rejects (bad topic), so only the request path is measured")
	flag.Int64Var(&o.maxRSS, "max-rss", 2048, "stop the attack early when the relay's RSS passes this many MiB (a safety net for shared machines)")
	flag.Parse()
	o.duration = min(o.duration, 5*time.Minute)
	attacks := map[string]func(context.Context, options, *stats){
		"history": attackHistory, "bulk": attackBulk, "slowbody": attackSlowBody,
		"pings": attackPings, "replay": attackReplay, "churn": attackChurn,
	}
	run, ok := attacks[o.attack]
	if !ok {
		fmt.Fprintf(os.Stderr, "attack: unknown attack %q\n", o.attack)
		os.Exit(2)
	}
	st := &stats{codes: map[string]int{}}
	prepare(o)
	probe := newProber(o)
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); probe.run(ctx, cancel) }()
	run(ctx, o, st)
	wg.Wait()
	report(o, st, probe)
}

// stats counts what the attacker saw.
type stats struct {
	mu    sync.Mutex
	codes map[string]int
	sent  atomic.Int64
}

func (s *stats) count(what string) {
	s.mu.Lock()
	s.codes[what]++
	s.mu.Unlock()
}

// prepare stores what the history and replay attacks read.
func prepare(o options) {
	c := &http.Client{Timeout: 30 * time.Second}
	switch o.attack {
	case "history":
		pad := strings.Repeat("x", o.msgSize-64)
		for i := range 100 {
			post(c, o.addr, "/api/v1/messages", fmt.Sprintf(`{"topic":"attack.history","payload":{"i":%d,"pad":%q}}`, i, pad))
		}
	case "replay":
		pad := strings.Repeat("x", 200)
		for t := range 100 {
			var items []string
			for i := range 100 {
				items = append(items, fmt.Sprintf(`{"topic":"attack.replay.%d","payload":{"i":%d,"pad":%q}}`, t, i, pad))
			}
			for k := 0; k < 10; k++ { // 1,000 messages per topic
				post(c, o.addr, "/api/v1/messages/bulk", `{"messages":[`+strings.Join(items, ",")+`]}`)
			}
		}
	}
}

func post(c *http.Client, addr, path, body string) int {
	resp, err := c.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// workers runs n copies of fn until ctx ends.
func workers(ctx context.Context, n int, fn func(ctx context.Context, i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				fn(ctx, i)
			}
		}()
	}
	wg.Wait()
}

func attackHistory(ctx context.Context, o options, st *stats) {
	n := cmp(o.conns, 16)
	workers(ctx, n, func(ctx context.Context, i int) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", o.addr)
		if err != nil {
			st.count("dial error")
			time.Sleep(10 * time.Millisecond)
			return
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /api/v1/topics/attack.history/messages?limit=1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		st.sent.Add(1)
		if i%2 == 0 { // never read: hold the connection until the relay gives up or the attack ends
			buf := make([]byte, 1)
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			for ctx.Err() == nil {
				time.Sleep(500 * time.Millisecond)
				if err := conn.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
					break
				}
				if _, err := conn.Read(buf); err != nil && !isTimeout(err) { // closed by the relay
					st.count("unread answer cut")
					return
				}
			}
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			st.count("read error")
			return
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		st.count(fmt.Sprintf("%d (%d MiB pages)", resp.StatusCode, (n+(1<<19))>>20))
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func attackBulk(ctx context.Context, o options, st *stats) {
	n := cmp(o.conns, 16)
	pad := strings.Repeat("x", o.msgSize-64)
	topic := "attack.bulk"
	if !o.store {
		topic = "attack bulk" // decoded in full, then rejected: nothing stored
	}
	item := `{"payload":{"pad":"` + pad + `"},"topic":"` + topic + `"}`
	bodies := map[bool]string{}
	for _, over := range []bool{false, true} {
		k := 4 // 4 x ~1 MiB: at the 4 MiB cap
		if over {
			k = 100 // the old limit: 100 x RELAY_MAX_MESSAGE_SIZE
		}
		items := make([]string, k)
		for i := range items {
			items[i] = item
		}
		bodies[over] = `{"messages":[` + strings.Join(items, ",") + `]}`
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	workers(ctx, n, func(ctx context.Context, i int) {
		body := bodies[i%4 == 0] // a quarter send 100 MiB bodies
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+o.addr+"/api/v1/messages/bulk", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		st.sent.Add(1)
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				st.count("error")
			}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		st.count(strconv.Itoa(resp.StatusCode))
	})
}

func attackSlowBody(ctx context.Context, o options, st *stats) {
	n := cmp(o.conns, 5000)
	var mu sync.Mutex
	var open []net.Conn
	defer func() {
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	// Open connections as fast as the relay takes them, each trickling.
	workers(ctx, 8, func(ctx context.Context, _ int) {
		mu.Lock()
		full := len(open) >= n
		mu.Unlock()
		if full {
			time.Sleep(100 * time.Millisecond)
			return
		}
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", o.addr)
		if err != nil {
			st.count("dial error")
			time.Sleep(10 * time.Millisecond)
			return
		}
		st.sent.Add(1)
		if _, err := fmt.Fprintf(conn, "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", o.bodyLen); err != nil {
			conn.Close()
			st.count("write error")
			return
		}
		mu.Lock()
		open = append(open, conn)
		mu.Unlock()
		go func() { // one byte a second until the relay answers or closes
			defer conn.Close()
			buf := make([]byte, 512)
			for ctx.Err() == nil {
				_ = conn.SetReadDeadline(time.Now().Add(time.Second))
				n, err := conn.Read(buf)
				if ctx.Err() != nil {
					break
				}
				if n > 0 {
					status := "?"
					if f := strings.Fields(string(buf[:n])); len(f) > 1 {
						status = f[1]
					}
					st.count("answered " + status)
					return
				}
				if ctx.Err() != nil {
					break
				}
				if err != nil && !isTimeout(err) {
					st.count("closed by the relay")
					return
				}
				if _, err := conn.Write([]byte(" ")); err != nil {
					st.count("closed by the relay")
					return
				}
			}
			st.count("still held at the end")
		}()
	})
}

func dialWS(ctx context.Context, o options, st *stats) *websocket.Conn {
	c, resp, err := websocket.Dial(ctx, "ws://"+o.addr+"/ws", nil)
	if err != nil {
		if resp != nil {
			st.count("upgrade " + strconv.Itoa(resp.StatusCode))
		} else if ctx.Err() == nil {
			st.count("dial error")
		}
		time.Sleep(10 * time.Millisecond)
		return nil
	}
	c.SetReadLimit(-1)
	return c
}

func attackPings(ctx context.Context, o options, st *stats) {
	big := []byte(`{"type":"` + strings.Repeat("u", 1000<<10) + `"}`)
	ping := []byte(`{"type":"ping"}`)
	workers(ctx, cmp(o.conns, 4), func(ctx context.Context, i int) {
		c := dialWS(ctx, o, st)
		if c == nil {
			return
		}
		defer c.CloseNow()
		for ctx.Err() == nil { // never reads
			frame := ping
			if i%2 == 1 {
				frame = big
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.Write(wctx, websocket.MessageText, frame)
			cancel()
			if err != nil {
				st.count("closed by the relay")
				return
			}
			st.sent.Add(1)
		}
	})
}

func attackReplay(ctx context.Context, o options, st *stats) {
	topics := make([]string, 100)
	for i := range topics {
		topics[i] = fmt.Sprintf("attack.replay.%d", i)
	}
	sub, _ := json.Marshal(map[string]any{"type": "subscribe", "topics": topics, "offset": "earliest"})
	workers(ctx, cmp(o.conns, 300), func(ctx context.Context, _ int) {
		c := dialWS(ctx, o, st)
		if c == nil {
			return
		}
		defer c.CloseNow()
		if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
			return
		}
		st.sent.Add(1)
		<-ctx.Done() // never reads
	})
}

func attackChurn(ctx context.Context, o options, st *stats) {
	var seq atomic.Int64
	workers(ctx, cmp(o.conns, 4), func(ctx context.Context, _ int) {
		c := dialWS(ctx, o, st)
		if c == nil {
			return
		}
		defer c.CloseNow()
		go func() { // read and discard, so only churn is measured
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
		for ctx.Err() == nil {
			topics := make([]string, 100)
			for i := range topics {
				topics[i] = "churn." + strconv.FormatInt(seq.Add(1), 36)
			}
			for _, typ := range []string{"subscribe", "unsubscribe"} {
				b, _ := json.Marshal(map[string]any{"type": typ, "topics": topics})
				if err := c.Write(ctx, websocket.MessageText, b); err != nil {
					st.count("closed by the relay")
					return
				}
			}
			st.sent.Add(int64(len(topics)))
		}
	})
}

func cmp(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// prober samples RSS and /health.
type prober struct {
	o         options
	client    *http.Client
	mu        sync.Mutex
	lat       []time.Duration // keep-alive probes that answered 200
	fails     int             // keep-alive probes that did not
	failWhy   map[string]int
	freshOK   int
	freshFail map[string]int
	rss       []int64 // kB
	rssStart  int64
	rssEnd    int64
	aborted   time.Duration   // when -max-rss stopped the attack; 0: it did not
	slow      []string        // "at 12.3s: 143ms": when each probe over 100 ms was sent
	after     []time.Duration // keep-alive probes in the 2 s after the attack that answered 200
	afterFail int
}

func newProber(o options) *prober {
	p := &prober{o: o, freshFail: map[string]int{}, failWhy: map[string]int{},
		client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: o.probeDialer().DialContext,
			MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, IdleConnTimeout: 10 * time.Minute}}}
	p.health(p.client) // open the keep-alive connection before the attack
	p.rssStart = rssKB(o.pid)
	return p
}

func (o options) probeDialer() *net.Dialer {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if o.probeIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.probeIP)}
	}
	return d
}

func (p *prober) health(c *http.Client) (time.Duration, error) {
	start := time.Now()
	resp, err := c.Get("http://" + p.o.addr + "/health")
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return time.Since(start), nil
}

func (p *prober) run(ctx context.Context, abort context.CancelFunc) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			p.teardown()
			p.rssEnd = rssKB(p.o.pid) // what the relay holds 2 s after
			return
		case <-tick.C:
		}
		if kb := rssKB(p.o.pid); kb > 0 {
			p.mu.Lock()
			p.rss = append(p.rss, kb)
			p.mu.Unlock()
			if kb > p.o.maxRSS<<10 && p.aborted == 0 {
				p.aborted = time.Duration(n) * 100 * time.Millisecond
				abort()
			}
		}
		d, err := p.health(p.client)
		p.mu.Lock()
		if err != nil {
			p.fails++
			p.failWhy[shortErr(err)]++
		} else {
			p.lat = append(p.lat, d)
			if d > 100*time.Millisecond {
				p.slow = append(p.slow, fmt.Sprintf("at %.1fs: %s", float64(n)/10, d.Round(time.Millisecond)))
			}
		}
		p.mu.Unlock()
		if n%10 == 0 {
			fresh := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: p.o.probeDialer().DialContext, DisableKeepAlives: true}}
			_, err := p.health(fresh)
			p.mu.Lock()
			if err != nil {
				p.freshFail[shortErr(err)]++
			} else {
				p.freshOK++
			}
			p.mu.Unlock()
		}
	}
}

// teardown probes every 20 ms for 2 s from the attack's end, while the
// attacker's connections close.
func (p *prober) teardown() {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); <-tick.C {
		d, err := p.health(p.client)
		p.mu.Lock()
		if err != nil {
			p.afterFail++
		} else {
			p.after = append(p.after, d)
		}
		p.mu.Unlock()
	}
}

func shortErr(err error) string {
	s := err.Error()
	for _, k := range []string{"status 503", "reset", "EOF", "timeout", "refused"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return s
}

func rssKB(pid int) int64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(v)), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func report(o options, st *stats, p *prober) {
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.Sort(p.lat)
	q := func(f float64) time.Duration {
		if len(p.lat) == 0 {
			return 0
		}
		return p.lat[min(len(p.lat)-1, int(f*float64(len(p.lat))))]
	}
	var maxRSS int64
	for _, v := range p.rss {
		maxRSS = max(maxRSS, v)
	}
	over := 0
	for _, d := range p.lat {
		if d > 100*time.Millisecond {
			over++
		}
	}
	fmt.Printf("attack=%s duration=%s attacker_ops=%d\n", o.attack, o.duration, st.sent.Load())
	if p.aborted > 0 {
		fmt.Printf("STOPPED EARLY after %s: RSS passed -max-rss %d MiB\n", p.aborted, o.maxRSS)
	}
	fmt.Printf("rss_mib start=%.0f max=%.0f end=%.0f (2 s after)\n", float64(p.rssStart)/1024, float64(maxRSS)/1024, float64(p.rssEnd)/1024)
	fmt.Printf("health keep-alive: probes=%d ok=%d failed=%d p50=%s p99=%s max=%s over_100ms=%d\n",
		len(p.lat)+p.fails, len(p.lat), p.fails, q(0.5).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond),
		q(1).Round(10*time.Microsecond), over)
	if len(p.slow) > 0 {
		fmt.Printf("health probes over 100 ms (time into the attack): %s\n", strings.Join(p.slow, ", "))
	}
	if p.fails > 0 {
		fmt.Printf("health keep-alive failures: %v\n", p.failWhy)
	}
	fmt.Printf("health fresh connection: ok=%d refused=%v\n", p.freshOK, p.freshFail)
	var afterMax time.Duration
	afterOver := 0
	for _, d := range p.after {
		afterMax = max(afterMax, d)
		if d > 100*time.Millisecond {
			afterOver++
		}
	}
	fmt.Printf("health after the attack (every 20 ms for 2 s, as its connections close): probes=%d failed=%d max=%s over_100ms=%d\n",
		len(p.after)+p.afterFail, p.afterFail, afterMax.Round(10*time.Microsecond), afterOver)
	keys := make([]string, 0, len(st.codes))
	for k := range st.codes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, st.codes[k]))
	}
	fmt.Printf("attacker saw: %s\n", strings.Join(parts, ", "))
}
