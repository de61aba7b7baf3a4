package valkeytest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ClusterSize is the number of nodes of a test cluster: three masters, each
// with one replica.
const ClusterSize = 6

// clusterReadyTimeout bounds how long StartCluster waits for the cluster to
// cover every slot.
const clusterReadyTimeout = 30 * time.Second

// Cluster is a Valkey/Redis Cluster of ClusterSize nodes on loopback
// (cluster-enabled servers joined by `valkey-cli|redis-cli --cluster create
// --cluster-replicas 1`), each node a Server with its own data directory.
type Cluster struct {
	Nodes []*Server
	dir   string // removed by Stop when the cluster owns it
}

// Addrs returns every node's address: a client given them as seeds finds
// the whole cluster.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// Masters returns the nodes that are masters now.
func (c *Cluster) Masters() []*Server {
	var out []*Server
	for _, n := range c.Nodes {
		if info, err := command(n.Addr(), "INFO", "replication"); err == nil && strings.Contains(info, "role:master") {
			out = append(out, n)
		}
	}
	return out
}

// Flush empties every master (FLUSHALL), so a test that shares the
// cluster starts from nothing; replicas follow their masters.
func (c *Cluster) Flush(tb testing.TB) {
	tb.Helper()
	for _, n := range c.Masters() {
		if _, err := command(n.Addr(), "FLUSHALL"); err != nil {
			tb.Fatalf("valkeytest: FLUSHALL on %s: %v", n.Addr(), err)
		}
	}
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// StartCluster starts a fresh cluster for tb, stopped when tb ends. It skips
// or fails like Start when no server binary is installed, and fails when
// the cluster does not form. Forming one takes a few seconds: prefer
// SharedCluster for tests that can share one.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	bin, cli := requireBinary(tb), requireCLI(tb)
	c, err := startCluster(tb, bin, cli, tb.TempDir())
	if c != nil {
		tb.Cleanup(c.Stop)
	}
	if err != nil {
		tb.Fatalf("valkeytest: cluster: %v", err)
	}
	return c
}

var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// SharedCluster returns the package's one cluster, started by its first
// caller and kept for every later test of the package (call Flush to
// start clean); TestMain stops it with StopSharedCluster after m.Run.
func SharedCluster(tb testing.TB) *Cluster {
	tb.Helper()
	bin, cli := requireBinary(tb), requireCLI(tb)
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "valkeytest-cluster-")
		if err != nil {
			shared.err = err
			return
		}
		shared.c, shared.err = startCluster(nil, bin, cli, dir)
		if shared.c != nil {
			shared.c.dir = dir
		} else {
			_ = os.RemoveAll(dir)
		}
	})
	if shared.err != nil {
		tb.Fatalf("valkeytest: shared cluster: %v", shared.err)
	}
	return shared.c
}

// StopSharedCluster stops the shared cluster if one was started.
func StopSharedCluster() {
	if shared.c != nil {
		shared.c.Stop()
	}
}

// CLIBinary returns the path of valkey-cli or redis-cli, whichever is found
// first on PATH, or "" when neither is.
func CLIBinary() string {
	for _, name := range []string{"valkey-cli", "redis-cli"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// requireCLI returns CLIBinary(), or skips tb (fails it when
// RELAY_REQUIRE_VALKEY=1) when there is none.
func requireCLI(tb testing.TB) string {
	tb.Helper()
	cli := CLIBinary()
	if cli == "" {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("valkeytest: neither valkey-cli nor redis-cli is on PATH and %s=1", RequireEnv)
		}
		tb.Skip("valkeytest: neither valkey-cli nor redis-cli is on PATH (needed to form a cluster)")
	}
	return cli
}

func startCluster(tb testing.TB, bin, cli, dir string) (*Cluster, error) {
	c := &Cluster{}
	for i := range ClusterSize {
		nodeDir := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			return c, err
		}
		n, err := launch(tb, bin, nodeDir, config{args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
		}})
		if err != nil {
			return c, fmt.Errorf("node %d: %w", i, err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return c, fmt.Errorf("%s --cluster create: %v: %s", cli, err, out)
	}
	deadline := time.Now().Add(clusterReadyTimeout)
	for _, n := range c.Nodes {
		for {
			info, err := command(n.Addr(), "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") {
				break
			}
			if time.Now().After(deadline) {
				return c, fmt.Errorf("node %s not ready within %s: %q %v", n.Addr(), clusterReadyTimeout, info, err)
			}
			time.Sleep(20 * time.Millisecond) // polling for the cluster to form
		}
	}
	return c, nil
}

// command sends one command to addr and returns a simple or bulk reply.
func command(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	return readReply(conn, bufio.NewReader(conn), args...)
}
