package relaytest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildRelay compiles cmd/relay (without the race detector: the processes
// are the system under test, the test binary is the one under -race) once
// per test binary and returns its path. The binary lives in a temporary
// directory that RemoveRelayBinary deletes.
var BuildRelay = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "relaytest-bin-")
	if err != nil {
		return "", err
	}
	binDir.Store(dir, true)
	bin := filepath.Join(dir, "relay")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/pulsar-relay/relay/cmd/relay").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build cmd/relay: %v\n%s", err, out)
	}
	return bin, nil
})

var binDir sync.Map

// RemoveRelayBinary deletes what BuildRelay built (call it from TestMain
// after m.Run).
func RemoveRelayBinary() {
	binDir.Range(func(k, _ any) bool {
		_ = os.RemoveAll(k.(string))
		return true
	})
}

// Process is a relay binary serving on a free loopback port, its logs
// (JSON) captured. It is killed in the test's cleanup.
type Process struct {
	URL   string // http://127.0.0.1:port
	WSURL string // ws://127.0.0.1:port/ws
	Env   []string

	t       testing.TB
	bin     string
	addr    string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	exitErr error         // cmd.Wait's, set before done closes
	logs    *SyncBuffer
}

// SyncBuffer collects output written from several goroutines (a
// process's logs, a command's stdout); the zero value is ready. Bounded:
// it keeps the first 8 MiB.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 8<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeAddr returns a free 127.0.0.1 address (free when it returns).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StartProcess runs `relay serve` with env (RELAY_*=value entries; the
// address and a JSON log format are set here) and waits until /health
// answers.
func StartProcess(t testing.TB, env ...string) *Process {
	t.Helper()
	p := LaunchProcess(t, env...)
	p.waitHealthy()
	return p
}

// LaunchProcess is StartProcess without the wait: for a process that is
// expected to stop at start-up (see Exited).
func LaunchProcess(t testing.TB, env ...string) *Process {
	t.Helper()
	bin, err := BuildRelay()
	if err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	p := &Process{URL: "http://" + addr, WSURL: "ws://" + addr + "/ws", Env: env, t: t, bin: bin, addr: addr, logs: &SyncBuffer{}}
	p.launch()
	t.Cleanup(p.Kill)
	return p
}

func (p *Process) launch() {
	p.t.Helper()
	cmd := exec.Command(p.bin, "serve")
	cmd.Dir = p.t.TempDir() // no stray .env
	cmd.Env = append(os.Environ(), append([]string{"RELAY_HTTP_ADDR=" + p.addr, "RELAY_LOG_FORMAT=json"}, p.Env...)...)
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// Exited is closed when the process has exited; ExitErr then says how.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// ExitErr is the process's exit error (nil: exit status 0), once Exited
// is closed.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// Signal sends sig to the running process (SIGHUP: reload policies).
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	return cmd.Process.Signal(sig)
}

// waitHealthy waits until /health answers 200; it fails the test if the
// process exits first or does not answer within 20 s.
func (p *Process) waitHealthy() {
	p.t.Helper()
	done := p.Exited()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := HTTPClient.Get(p.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-done:
			p.t.Fatalf("relay exited at start; logs:\n%s", p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("relay did not start; logs:\n%s", p.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs returns what the process logged so far.
func (p *Process) Logs() string { return p.logs.String() }

// Kill SIGKILLs the process and waits for it (once it is gone, later calls
// do nothing).
func (p *Process) Kill() { p.halt(syscall.SIGKILL) }

// Stop SIGTERMs the process (graceful shutdown) and waits for it.
func (p *Process) Stop() { p.halt(syscall.SIGTERM) }

func (p *Process) halt(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Ready reports /ready's status code and body.
func (p *Process) Ready() (int, string) {
	resp, err := HTTPClient.Get(p.URL + "/ready")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// Metric sums the samples of the Prometheus metric name whose label text
// contains every one of labels (e.g. `reason="link"`), from GET /metrics.
func (p *Process) Metric(name string, labels ...string) (float64, error) {
	resp, err := HTTPClient.Get(p.URL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}
