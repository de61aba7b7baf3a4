package valkeytest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// do sends one inline command and returns the first reply line.
func do(t *testing.T, addr, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "%s\r\n", cmd)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return strings.TrimSpace(line)
}

func TestStartStopRestartKeepsData(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	if got := do(t, addr, "SET k v"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}
	s.Stop()
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("server still accepts connections after Stop")
	}
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	if got := do(t, addr, "EXISTS k"); got != ":1" {
		t.Fatalf("after Stop and Restart EXISTS k = %q, want :1 (AOF)", got)
	}
	s.Kill()
	s.Restart()
	if got := do(t, addr, "EXISTS k"); got != ":1" {
		t.Fatalf("after Kill and Restart EXISTS k = %q, want :1 (AOF)", got)
	}
}

func TestPassword(t *testing.T) {
	s := Start(t, WithPassword("pw"))
	if got := do(t, s.Addr(), "GET k"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("GET without AUTH = %q, want -NOAUTH", got)
	}
	if got := do(t, s.Addr(), "AUTH pw"); got != "+OK" {
		t.Fatalf("AUTH = %q", got)
	}
}

func TestPauseResume(t *testing.T) {
	s := Start(t)
	pid := s.cmd.Process.Pid
	s.Pause()
	if err := ready(s.Addr(), "", pid); err == nil {
		t.Fatalf("a paused server answered PING")
	}
	s.Resume()
	if err := ready(s.Addr(), "", pid); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	if err := ready(s.Addr(), "", pid+1); err == nil {
		t.Fatalf("ready accepted a server with another process id")
	}
	s.Pause() // Cleanup must stop a paused server
}

func TestClusterForms(t *testing.T) {
	c := StartCluster(t)
	if len(c.Nodes) != ClusterSize || len(c.Masters()) != 3 {
		t.Fatalf("%d nodes, %d masters; want %d and 3", len(c.Nodes), len(c.Masters()), ClusterSize)
	}
	for _, n := range c.Nodes {
		if info := do(t, n.Addr(), "CLUSTER INFO"); !strings.HasPrefix(info, "$") {
			t.Fatalf("CLUSTER INFO on %s: %s", n.Addr(), info)
		}
	}
	c.Flush(t)
}
