package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/internal/sysmon"
)

// buildRelay is relaytest's: one build of cmd/relay per test binary,
// removed by TestMain.
var buildRelay = relaytest.BuildRelay

func TestMain(m *testing.M) {
	code := m.Run()
	relaytest.RemoveRelayBinary()
	os.Exit(code)
}

// relayProcess is a relay binary running on a free loopback port with JSON
// logs captured.
type relayProcess struct {
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan error
}

// syncBuffer is relaytest's; the CLI tests name it often.
type syncBuffer = relaytest.SyncBuffer

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs the binary on a free loopback port with JSON logs and
// waits until /health answers.
func startProcess(t *testing.T, env ...string) *relayProcess {
	t.Helper()
	bin, err := buildRelay()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve")
	cmd.Dir = t.TempDir() // no stray .env
	cmd.Env = append(os.Environ(), append([]string{"RELAY_HTTP_ADDR=" + addr, "RELAY_LOG_FORMAT=json"}, env...)...)
	p := &relayProcess{cmd: cmd, addr: addr, logs: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay did not start; logs:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProcessServePublishSubscribeShutdown runs the real binary: publish,
// subscribe, then SIGTERM: the subscriber sees 1001, the process exits 0
// within 10 s, and every log line is JSON with level, msg and time.
func TestProcessServePublishSubscribeShutdown(t *testing.T) {
	p := startProcess(t, "RELAY_LOG_LEVEL=debug")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+p.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","topics":["notifications"]}`))
	if _, data, err := c.Read(ctx); err != nil || !strings.Contains(string(data), `"subscribed"`) {
		t.Fatalf("subscribe: %s %v", data, err)
	}
	req, _ := http.NewRequest("POST", "http://"+p.addr+"/api/v1/messages",
		strings.NewReader(`{"topic":"notifications","payload":{"user_id":123,"message":"Hello"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "req-under-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("publish: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, data, err := c.Read(ctx); err != nil || !strings.Contains(string(data), `"Hello"`) {
		t.Fatalf("message: %s %v", data, err)
	}

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
		t.Errorf("subscriber got %v, want close 1001", err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not exit within 10 s of SIGTERM")
	}
	t.Logf("shutdown took %v", time.Since(start))

	if !strings.Contains(p.logs.String(), `"msg":"relay serving"`) {
		t.Errorf("no start-up line in the logs")
	}
	sawRequest := false
	for _, line := range strings.Split(strings.TrimSpace(p.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["level"] == nil || rec["msg"] == nil || rec["time"] == nil {
			t.Fatalf("log line lacks level/msg/time: %q", line)
		}
		if rec["request_id"] == "req-under-test" {
			sawRequest = true
		}
	}
	if !sawRequest {
		t.Errorf("no log line carries the request id; logs:\n%s", p.logs.String())
	}
}

func TestProcessLogLevelWarnSilencesInfo(t *testing.T) {
	p := startProcess(t, "RELAY_LOG_LEVEL=warn")
	resp, err := http.Post("http://"+p.addr+"/api/v1/messages", "application/json",
		strings.NewReader(`{"topic":"t","payload":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if logs := p.logs.String(); strings.Contains(logs, `"level":"INFO"`) || strings.Contains(logs, `"level":"DEBUG"`) {
		t.Fatalf("RELAY_LOG_LEVEL=warn still logs info:\n%s", logs)
	}
}

func TestProcessRefusesBadConfig(t *testing.T) {
	bin, err := buildRelay()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "RELAY_RETENTION=forever")
	out, err := cmd.CombinedOutput()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 2 || !strings.Contains(string(out), "RELAY_RETENTION") {
		t.Fatalf("got %v, output %q; want exit 2 naming RELAY_RETENTION", err, out)
	}
}

// godebugOf returns the GODEBUG in the environment of the process pid runs
// now (after any re-execution), from /proc.
func godebugOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			return v
		}
	}
	return ""
}

// `relay serve` re-executes itself in place (the pid it was started as)
// with sysmon.Setting added to GODEBUG, says so in its first log lines, and
// keeps an operator's schedtrace (schedtrace=0: Go's default sysmon).
func TestProcessServeKeepsSysmonAwake(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("sysmon.KeepAwake re-executes on Linux only")
	}
	p := startProcess(t, "GODEBUG=gctrace=0")
	if got, want := godebugOf(t, p.cmd.Process.Pid), "gctrace=0,"+sysmon.Setting; got != want {
		t.Fatalf("GODEBUG of the serving process = %q, want %q", got, want)
	}
	if logs := p.logs.String(); !strings.Contains(logs, `"msg":"go runtime","GODEBUG":"gctrace=0,`+sysmon.Setting+`"`) {
		t.Fatalf("no go runtime line with the setting; logs:\n%s", logs)
	}
	p = startProcess(t, "GODEBUG=schedtrace=0")
	if got := godebugOf(t, p.cmd.Process.Pid); got != "schedtrace=0" {
		t.Fatalf("GODEBUG of the serving process = %q, want the operator's schedtrace=0", got)
	}
}
