package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/policy"
)

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
	p := relaytest.StartProcess(t, "RELAY_POLICIES_FILE="+file)
	url := p.URL

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
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	adminEventually(t, 10*time.Second, "jobs.a's actor with mailbox 777 after SIGHUP", func() bool { return mailbox() == "777" })
	var set policy.SetView
	if code, body := adminCall(t, "GET", url+"/api/v1/admin/policies", "", "", "", &set); code != 200 || set.Source != file {
		t.Fatalf("GET policies: %d %s", code, body)
	}

	write("version: 1\ntopics:\n  jobs.*:\n    mailbox_size: many\n")
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	adminEventually(t, 10*time.Second, "the refused reload in the logs", func() bool {
		l := p.Logs()
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
	p := relaytest.LaunchProcess(t, "RELAY_POLICIES_FILE="+file)
	select {
	case <-p.Exited():
		if p.ExitErr() == nil {
			t.Fatal("relay exited 0 with a bad policy file")
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("relay still running with a bad policy file; logs:\n%s", p.Logs())
	}
	l := p.Logs()
	if !strings.Contains(l, "RELAY_POLICIES_FILE") || !strings.Contains(l, "line 2") || !strings.Contains(l, "slow_consumer") {
		t.Fatalf("start-up error does not name the setting, line and field:\n%s", l)
	}
}
