package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
