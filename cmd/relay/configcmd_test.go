package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/policy"
)

// TestConfigShowsEffectiveRedacted: `relay config` reports each setting's
// value and source with serve's precedence, and never prints a secret.
func TestConfigShowsEffectiveRedacted(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("RELAY_RETENTION=2h\nRELAY_MAX_BATCH=64\nRELAY_VALKEY_PASSWORD=from-dotenv-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := envOf(map[string]string{
		"RELAY_MAX_BATCH":       "128",
		"RELAY_VALKEY_PASSWORD": "hunter2",
		"RELAY_VALKEY_ADDR":     "redis://user:pw-in-url@127.0.0.1:6379,127.0.0.1:6380",
		"RELAY_VALKEY_USERNAME": "",
	})
	var out, errOut syncBuffer
	code := configCmd([]string{"--http-addr", "127.0.0.1:9999"}, cliIO{stdout: &out, stderr: &errOut, env: env})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	text := out.String()
	for _, want := range []string{
		"RELAY_HTTP_ADDR=127.0.0.1:9999  # flag\n",
		"RELAY_RETENTION=2h  # .env\n",
		"RELAY_MAX_BATCH=128  # env\n",
		"RELAY_VALKEY_PASSWORD=<redacted>  # env\n",
		"RELAY_VALKEY_USERNAME=  # env\n",
		"RELAY_VALKEY_ADDR=redis://user:<redacted>@127.0.0.1:6379,127.0.0.1:6380  # env\n",
		"RELAY_LOG_LEVEL=info  # default\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	for _, secret := range []string{"hunter2", "from-dotenv-secret", "pw-in-url"} {
		if strings.Contains(text, secret) {
			t.Errorf("output shows the secret %q", secret)
		}
	}
	var c config
	if n := strings.Count(text, "\n"); n != len(c.settings()) {
		t.Errorf("%d lines for %d settings", n, len(c.settings()))
	}

	out = syncBuffer{}
	if code := configCmd([]string{"--json"}, cliIO{stdout: &out, stderr: &errOut, env: env}); code != 0 {
		t.Fatalf("--json exit %d", code)
	}
	var settings []effectiveSetting
	if err := json.Unmarshal([]byte(out.String()), &settings); err != nil || len(settings) != len(c.settings()) {
		t.Fatalf("--json: %v %s", err, out.String())
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Fatal("--json shows a secret")
	}
}

func TestConfigRefusesBadValue(t *testing.T) {
	t.Chdir(t.TempDir())
	var out, errOut syncBuffer
	code := configCmd(nil, cliIO{stdout: &out, stderr: &errOut, env: envOf(map[string]string{"RELAY_RETENTION": "forever"})})
	if code != 2 || !strings.Contains(errOut.String(), "RELAY_RETENTION") || out.String() != "" {
		t.Fatalf("exit %d, stderr %q, out %q", code, errOut.String(), out.String())
	}
}

func TestRedact(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"RELAY_JWT_SECRET", "s", redacted},
		{"RELAY_ADMIN_TOKEN", "t", redacted},
		{"RELAY_API_KEYS", "a,b", redacted},
		{"RELAY_VALKEY_PASSWORD", "", ""},
		{"RELAY_HTTP_ADDR", ":8080", ":8080"},
		{"RELAY_VALKEY_ADDR", "rediss://:p@h:1", "rediss://:<redacted>@h:1"},
		{"RELAY_VALKEY_ADDR", "redis://u@h:1", "redis://u@h:1"},
	} {
		if got := redact(c.name, c.in); got != c.want {
			t.Errorf("redact(%s, %q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

// TestCLIArgsAnywhere: flags may follow the positional arguments.
func TestCLIArgsAnywhere(t *testing.T) {
	code := publishCmd(context.Background(), []string{"t", "--url", "ftp://x", "{}"}, cliIO{stdout: &syncBuffer{}, stderr: &syncBuffer{}, env: noEnv})
	if code != 2 {
		t.Fatalf("a bad --url after the topic: exit %d, want 2", code)
	}
}

// TestBasePolicy: the process-wide policy sets every field from the serve
// configuration, so a resolved policy is complete.
func TestBasePolicy(t *testing.T) {
	cfg, err := parseConfig([]string{"--topic-mailbox-size", "77", "--slow-consumer-policy", "drop-oldest", "--retention", "1h"}, envOf(nil), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := basePolicy(cfg)
	js, _ := b.MarshalJSON()
	for _, name := range policy.FieldNames() {
		if b.Value(name) == "" {
			t.Errorf("base leaves %s unset: %s", name, js)
		}
	}
	if *b.MailboxSize != 77 || *b.SlowConsumer != policy.DropOldest || *b.Retention != time.Hour ||
		*b.HotRetention != 600*time.Second || *b.MaxBatch != 512 || *b.SupervisorBackoff != 100*time.Millisecond {
		t.Fatalf("base %s", js)
	}
	// hot_retention is capped at the retention, as the server caps it.
	short, err := parseConfig([]string{"--retention", "60s"}, envOf(nil), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := *basePolicy(short).HotRetention; got != time.Minute {
		t.Fatalf("hot_retention %s under a 60s retention, want 1m0s (the server's)", got)
	}
	// anonymous_read is the server's base: allowed without auth, refused
	// with it unless a rule allows it.
	if !*b.AnonymousRead {
		t.Fatal("without auth the base refuses anonymous reads")
	}
	withAuth, err := parseConfig(nil, envOf(map[string]string{"RELAY_JWT_SECRET": strings.Repeat("k", 32)}), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if *basePolicy(withAuth).AnonymousRead {
		t.Fatal("with auth on the base allows anonymous reads; the server's does not")
	}
}

// TestPoliciesCheckTopic: `relay policies --check FILE --topic T` shows T's
// policy under the file over this machine's serve configuration.
func TestPoliciesCheckTopic(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	_ = os.WriteFile(".env", []byte("RELAY_CONNECTION_QUEUE_SIZE=99\n"), 0o600)
	_ = os.WriteFile("p.yaml", []byte("topics:\n  jobs.*:\n    mailbox_size: 5\n"), 0o600)
	var out, errOut syncBuffer
	code := policiesCmd(t.Context(), []string{"--check", "p.yaml", "--topic", "jobs.x"}, cliIO{stdout: &out, stderr: &errOut, env: noEnv})
	var view policy.TopicPolicyView
	if code != 0 || json.Unmarshal([]byte(out.String()), &view) != nil {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	if *view.Policy.MailboxSize != 5 || *view.Policy.ConnectionQueueSize != 99 || len(view.Matched) != 1 {
		t.Fatalf("view %+v", view)
	}
}
