package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/policy"
)

// adminProcess runs the relay binary on a free loopback port with env; it
// returns the running command, its base URL and its logs.
func adminProcess(t *testing.T, env ...string) (*exec.Cmd, string, *relaytest.SyncBuffer, chan error) {
	t.Helper()
	bin, err := relaytest.BuildRelay() // shared with the scale-out tests: one build per package
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Dir = t.TempDir() // no stray .env
	cmd.Env = append(os.Environ(), append([]string{"RELAY_HTTP_ADDR=" + addr, "RELAY_LOG_FORMAT=json"}, env...)...)
	logs := &relaytest.SyncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	return cmd, "http://" + addr, logs, done
}

func waitHealthy(t *testing.T, url string, logs *relaytest.SyncBuffer, done chan error) {
	t.Helper()
	adminEventually(t, 20*time.Second, "the relay process to serve /health", func() bool {
		select {
		case err := <-done:
			t.Fatalf("relay exited: %v; logs:\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// TestSIGHUPReloadsPolicies: a real relay process with RELAY_POLICIES_FILE;
// the file is rewritten and the process gets SIGHUP: the running topic
// actor of jobs.a reports the new mailbox size in the admin view, and its
// subscriber is still connected. A bad file on SIGHUP is logged with its
// line and field and the policies in force stay.
func TestSIGHUPReloadsPolicies(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policies.yaml")
	write := func(doc string) {
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("version: 1\ntopics:\n  jobs.*:\n    mailbox_size: 300\n")
	cmd, url, logs, done := adminProcess(t, "RELAY_POLICIES_FILE="+file)
	waitHealthy(t, url, logs, done)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(url, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","topics":["jobs.a"]}`))
	if _, data, err := ws.Read(ctx); err != nil || !strings.Contains(string(data), `"subscribed"`) {
		t.Fatalf("subscribe: %s %v", data, err)
	}
	mailbox := func() string {
		v, ok := adminTopic(t, url, "jobs.a")
		if !ok {
			return ""
		}
		return v.Policy.Value("mailbox_size")
	}
	adminEventually(t, 10*time.Second, "jobs.a's actor with mailbox 300", func() bool { return mailbox() == "300" })

	write("version: 1\ntopics:\n  jobs.*:\n    mailbox_size: 777\n    slow_consumer: drop-oldest\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	adminEventually(t, 10*time.Second, "jobs.a's actor with mailbox 777 after SIGHUP", func() bool { return mailbox() == "777" })
	var set policy.SetView
	if code, body := adminCall(t, "GET", url+"/api/v1/admin/policies", "", "", "", &set); code != 200 || set.Source != file {
		t.Fatalf("GET policies: %d %s", code, body)
	}

	write("version: 1\ntopics:\n  jobs.*:\n    mailbox_size: many\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	adminEventually(t, 10*time.Second, "the refused reload in the logs", func() bool {
		l := logs.String()
		return strings.Contains(l, "policies refused") && strings.Contains(l, "line 4") && strings.Contains(l, "mailbox_size")
	})
	if got := mailbox(); got != "777" {
		t.Fatalf("after a bad reload jobs.a runs with mailbox %s, want 777", got)
	}

	// The subscriber was never cut: it receives a message published now.
	req, _ := http.NewRequest("POST", url+"/api/v1/messages", strings.NewReader(`{"topic":"jobs.a","payload":{"after":"reloads"}}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("publish: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, data, err := ws.Read(ctx); err != nil || !strings.Contains(string(data), `"reloads"`) {
		t.Fatalf("the subscriber after two reloads: %s %v", data, err)
	}
}

// TestBadPolicyFileStopsStartup: a bad RELAY_POLICIES_FILE stops start-up
// with a message naming the line and field.
func TestBadPolicyFileStopsStartup(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policies.json")
	if err := os.WriteFile(file, []byte("{\"version\": 1,\n \"topics\": {\"jobs.*\": {\"slow_consumer\": \"drop-newest\"}}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, logs, done := adminProcess(t, "RELAY_POLICIES_FILE="+file)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("relay started with a bad policy file")
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("relay still running with a bad policy file; logs:\n%s", logs.String())
	}
	l := logs.String()
	if !strings.Contains(l, "RELAY_POLICIES_FILE") || !strings.Contains(l, "line 2") || !strings.Contains(l, "slow_consumer") {
		t.Fatalf("start-up error does not name the setting, line and field:\n%s", l)
	}
}
