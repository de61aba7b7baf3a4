// Package valkeytest starts a throwaway Valkey-compatible server for tests.
//
// Start looks for valkey-server on PATH, then redis-server. When neither is
// installed the test is skipped, unless the environment sets
// RELAY_REQUIRE_VALKEY=1 (CI does), in which case it fails. Each server
// listens on a free 127.0.0.1 port, keeps its data (AOF, appendfsync
// everysec, no RDB snapshots) in a temporary directory of the test, and is
// stopped by t.Cleanup.
//
// StartCluster and SharedCluster start a Valkey/Redis Cluster of six such
// servers (three masters, three replicas) formed with valkey-cli or
// redis-cli; SharedCluster starts one per test binary, which TestMain stops
// with StopSharedCluster.
//
// The package is for tests only; it imports nothing from this repository.
package valkeytest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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

// RequireEnv is the environment variable that turns a missing server binary
// from a skip into a failure.
const RequireEnv = "RELAY_REQUIRE_VALKEY"

// readyTimeout bounds how long Start and Restart wait for PING to answer.
const readyTimeout = 10 * time.Second

// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
const stopTimeout = 5 * time.Second

// Option configures a server before Start.
type Option func(*config)

type config struct {
	password string
	args     []string
}

// WithPassword makes the server require a password (requirepass): clients
// must AUTH with it (as the default user).
func WithPassword(pw string) Option { return func(c *config) { c.password = pw } }

// WithArgs appends raw server arguments, e.g. WithArgs("--appendfsync",
// "always"); a later directive overrides an earlier one.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is one running (or stopped) server process. Its methods are safe for
// concurrent use; Stop, Kill and Restart serialise.
type Server struct {
	tb   testing.TB
	bin  string
	port int
	dir  string
	args []string
	pw   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Binary returns the path of valkey-server or redis-server, whichever is
// found first on PATH, or "" when neither is.
func Binary() string {
	for _, name := range []string{"valkey-server", "redis-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Start runs a fresh server for tb and waits until it answers PING. It skips
// tb when no server binary exists (fails when RELAY_REQUIRE_VALKEY=1) and
// fails tb when the server does not come up. The server is stopped when tb
// ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin := requireBinary(tb)
	var c config
	for _, o := range opts {
		o(&c)
	}
	s, err := launch(tb, bin, tb.TempDir(), c)
	if s != nil {
		tb.Cleanup(s.Stop)
	}
	if err != nil {
		tb.Fatalf("valkeytest: start %s: %v", bin, err)
	}
	return s
}

// requireBinary returns Binary(), or skips tb (fails it when
// RELAY_REQUIRE_VALKEY=1) when there is none.
func requireBinary(tb testing.TB) string {
	tb.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("valkeytest: neither valkey-server nor redis-server is on PATH and %s=1", RequireEnv)
		}
		tb.Skip("valkeytest: neither valkey-server nor redis-server is on PATH; set " + RequireEnv + "=1 to fail instead")
	}
	return bin
}

// launch starts a server keeping its data in dir (tb may be nil: then
// Restart panics on failure instead of failing a test).
func launch(tb testing.TB, bin, dir string, c config) (*Server, error) {
	s := &Server{tb: tb, bin: bin, dir: dir, pw: c.password}
	// A free port can be taken by someone else between our probe and the
	// server's bind; try a few ports before giving up.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			continue
		}
		s.args = []string{
			"--port", strconv.Itoa(s.port),
			"--bind", "127.0.0.1",
			"--dir", s.dir,
			"--save", "",
			"--appendonly", "yes",
			"--appendfsync", "everysec",
			"--daemonize", "no",
			"--protected-mode", "no",
		}
		if c.password != "" {
			s.args = append(s.args, "--requirepass", c.password)
		}
		s.args = append(s.args, c.args...)
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// Addr returns the server's "127.0.0.1:port"; it stays the same across
// Restart.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Password returns the password set with WithPassword, or "".
func (s *Server) Password() string { return s.pw }

// Dir returns the server's data directory; it survives Restart.
func (s *Server) Dir() string { return s.dir }

// Stop ends the server gracefully (SIGTERM, so the AOF is flushed), then
// with SIGKILL if it has not exited within a few seconds, and waits for it.
// Stopping a stopped server does nothing.
func (s *Server) Stop() { s.halt(syscall.SIGTERM) }

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill() { s.halt(syscall.SIGKILL) }

// Pause freezes the server (SIGSTOP): connections stay open but nothing is
// answered, as with a stalled Valkey. Resume undoes it; Stop, Kill and
// Restart resume a paused server first.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Restart stops the server if it runs, then starts it again on the same port
// with the same data directory (so AOF data survives) and waits until it
// answers PING. It fails the test if the server does not come back.
func (s *Server) Restart() {
	s.Stop()
	if err := s.start(); err != nil {
		if s.tb == nil {
			panic(fmt.Sprintf("valkeytest: restart on %s: %v", s.Addr(), err))
		}
		s.tb.Helper()
		s.tb.Fatalf("valkeytest: restart on %s: %v", s.Addr(), err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	logPath := filepath.Join(s.dir, "server.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Own process group: a Ctrl-C to `go test` does not race our shutdown.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-done:
			s.cmd, s.done = nil, nil
			return fmt.Errorf("server exited during start-up: %s", tail(logPath))
		default:
		}
		if ready(s.Addr(), s.pw, cmd.Process.Pid) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			s.cmd, s.done = nil, nil
			return fmt.Errorf("no answer to PING within %s: %s", readyTimeout, tail(logPath))
		}
		time.Sleep(5 * time.Millisecond) // polling for readiness
	}
}

func (s *Server) halt(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server must run to exit
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd, s.done = nil, nil
}

// ready reports whether the server on addr is up, done loading, and is
// the process pid: another test's server that took the same port between
// our probe and our bind must not pass for ours. It sends AUTH (when there
// is a password), PING and INFO server.
func ready(addr, password string, pid int) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	r := bufio.NewReader(c)
	if password != "" {
		if _, err := readReply(c, r, "AUTH", password); err != nil {
			return err
		}
	}
	if _, err := readReply(c, r, "PING"); err != nil {
		return err // -LOADING while the AOF is replayed
	}
	info, err := readReply(c, r, "INFO", "server")
	if err != nil {
		return err
	}
	if !strings.Contains(info, "\nprocess_id:"+strconv.Itoa(pid)+"\r") {
		return fmt.Errorf("another server answers on %s", addr)
	}
	return nil
}

// readReply sends one command and reads a simple, error or bulk string reply.
func readReply(c net.Conn, r *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bad reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", errors.New(line)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of the server log, for failure messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no server log)"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "server log:\n" + string(bytes.TrimSpace(b))
}
