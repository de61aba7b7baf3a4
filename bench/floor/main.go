// Command floor measures this machine's physical floors for the relay's two
// hot paths, so BENCHMARKS.md can put the relay's CPU per unit of work next
// to what the kernel and net/http alone cost here:
//
//	floor http [-addr 127.0.0.1:0] [-timeouts]
//	    serves a bare net/http handler: POST reads the body and answers 201
//	    with a fixed JSON body of the relay's size. Prints "listening ADDR"
//	    and "pid PID", then serves until killed. Drive it with wrk
//	    (scripts/bench-floor.sh does, with scripts/wrk-publish.lua).
//	    -timeouts gives its http.Server the relay's default timeouts (read
//	    and write 30s, headers 10s, idle 120s): what net/http's deadlines
//	    cost per request, apart from the relay's code.
//	floor ws [-conns 1000] [-rate 100] [-duration 5s] [-size 180] [-batch 1]
//	    one loop writing one WebSocket text frame of -size bytes (header
//	    included) to each of -conns loopback TCP connections, -rate rounds per
//	    second (0: flat out). The reading side runs in a child process
//	    ("floor sink"), so the CPU reported (utime+stime of this process over
//	    the writing, from /proc/self/stat) is the writer's alone, kernel send
//	    path included, as for the relay. -batch k writes k frames per
//	    connection in one write(2): the floor for coalesced deliveries.
//	floor valkey [-addr 127.0.0.1:0] [-valkey 127.0.0.1:6379]
//	    the least a relay-shaped server does per publish with Valkey (see
//	    valkey.go): publishes stored by one script call and answered 201,
//	    delivered to WebSocket subscribers from one pattern subscription.
//	    Speaks the part of the relay's contract that `relay bench` uses.
//	floor actor [-addr 127.0.0.1:0] [-valkey 127.0.0.1:6379]
//	    the Valkey floor's work in the relay's shape (see actor.go): stock
//	    protoactor-go, an actor per topic and per subscriber, and the
//	    relay's hand-offs per publish; none of the relay's guarantees.
//
// It is a bench tool, not part of the relay.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/pulsar-relay/relay/internal/sysmon"
)

func main() {
	// The floors run under the relay server's runtime setting (sysmon kept
	// out of its deep sleep), so what separates them from the relay is the
	// relay's work, not the runtime's policy.
	sysmon.KeepAwake()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: floor http|ws|valkey|actor|sink [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "http":
		err = serveHTTP(os.Args[2:])
	case "ws":
		err = wsFloor(os.Args[2:])
	case "sink":
		err = sink(os.Args[2:])
	case "valkey":
		err = serveValkey(os.Args[2:])
	case "actor":
		err = serveActor(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// reply is the size and shape of the relay's 201 answer to a publish.
var reply = []byte(`{"message_id":"1732679000000-0","topic":"bench-0","timestamp":"2026-11-27T03:18:00.000000Z"}` + "\n")

func serveHTTP(args []string) error {
	fs := flag.NewFlagSet("http", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	timeouts := fs.Bool("timeouts", false, "the relay's default server timeouts")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\npid %d\n", ln.Addr(), os.Getpid())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(reply)
	})
	srv := &http.Server{Handler: h}
	if *timeouts { // as gateway.Server.HTTPServer with the default config
		srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
		srv.ReadHeaderTimeout, srv.IdleTimeout = 10*time.Second, 120*time.Second
	}
	return srv.Serve(ln)
}

// frame returns an unmasked server-to-client text frame of size bytes in all
// (128 and 129, which no frame has, come out 2 bytes short), its payload
// shaped like a relay delivery.
func frame(size int) []byte {
	payload := []byte(`{"type":"message","topic":"bench-0","message_id":"1732679000000-0","timestamp":"2026-11-27T03:18:00.000000Z","payload":{"seq":1,"sent_ns":1732679000000000000,"pub":0}}`)
	n := max(size-2, 0) // the payload after a 2-byte header
	if n > 125 {
		n = size - 4 // a 4-byte header
	}
	for len(payload) < n {
		payload = append(payload, ' ')
	}
	return appendFrame(nil, payload[:n])
}

func wsFloor(args []string) error {
	fs := flag.NewFlagSet("ws", flag.ExitOnError)
	conns := fs.Int("conns", 1000, "loopback connections")
	rate := fs.Float64("rate", 100, "rounds per second; 0: flat out")
	dur := fs.Duration("duration", 5*time.Second, "how long to write")
	size := fs.Int("size", 180, "frame size in bytes, header included")
	batch := fs.Int("batch", 1, "frames per connection per write(2)")
	fs.Parse(args)

	child := exec.Command(os.Args[0], "sink")
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening "))
	cs := make([]net.Conn, *conns)
	for i := range cs {
		if cs[i], err = net.Dial("tcp", addr); err != nil {
			return err
		}
		defer cs[i].Close()
	}
	f := bytes.Repeat(frame(*size), *batch)
	time.Sleep(200 * time.Millisecond)

	start, cpu0 := time.Now(), selfCPU()
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) / *rate)
	}
	writes := 0
	next := start
	for time.Since(start) < *dur {
		for _, c := range cs {
			if _, err := c.Write(f); err != nil {
				return err
			}
			writes++
		}
		if interval > 0 {
			next = next.Add(interval)
			time.Sleep(time.Until(next))
		}
	}
	cpu := selfCPU() - cpu0
	el := time.Since(start)
	frames := writes * *batch
	fmt.Printf("conns %d rate %g batch %d: %d writes (%d frames) in %.2fs, %.0f frames/s, CPU %.2fs, %.3f CPU-us/write, %.3f CPU-us/frame\n",
		*conns, *rate, *batch, writes, frames, el.Seconds(), float64(frames)/el.Seconds(), cpu.Seconds(),
		float64(cpu.Microseconds())/float64(writes), float64(cpu.Microseconds())/float64(frames))
	return nil
}

// sink accepts connections and discards what they send, until killed.
func sink(args []string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					c.Close()
					return
				}
			}
		}()
	}
}

// selfCPU is this process's utime+stime from /proc/self/stat.
func selfCPU() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	f := bytes.Fields(b[i+1:])
	u, _ := strconv.ParseInt(string(f[11]), 10, 64)
	s, _ := strconv.ParseInt(string(f[12]), 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}
