package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
)

func envOf(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, envOf(nil), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || len(c.ValkeyAddrs) != 0 || c.Store.Retention != 24*time.Hour || c.Store.MaxMessages != 1_000_000 ||
		c.Gateway.MaxConnections != 10_000 || c.Gateway.MaxMessageSize != 1<<20 || c.Actors.HotTierRetention != 600*time.Second ||
		c.Actors.Supervisor.MaxRestarts != 10 || c.Actors.Supervisor.Window != 10*time.Second || c.Actors.Supervisor.Backoff != 100*time.Millisecond ||
		c.Actors.SlowConsumerPolicy != actors.PolicyDisconnect || c.LogLevel != "info" || c.LogFormat != "text" || c.Auth.Rates.Connections != 1024 || c.Auth.Rates.Subscriptions != 10_000 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigPrecedence(t *testing.T) {
	dotenv := strings.NewReader("# comment\nRELAY_HTTP_ADDR=:1111\nexport RELAY_RETENTION=\"90\"\nRELAY_LOG_LEVEL=debug\n")
	env := envOf(map[string]string{"RELAY_HTTP_ADDR": ":2222", "RELAY_VALKEY_ADDR": "a:1, b:2"})
	c, err := parseConfig([]string{"--http-addr", "127.0.0.1:3333", "--slow-consumer-policy=drop-oldest"}, env, dotenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:3333" {
		t.Errorf("flag should win: %q", c.HTTPAddr)
	}
	if c.Store.Retention != 90*time.Second || c.LogLevel != "debug" {
		t.Errorf(".env values: retention %v level %q", c.Store.Retention, c.LogLevel)
	}
	if len(c.ValkeyAddrs) != 2 || c.ValkeyAddrs[1] != "b:2" {
		t.Errorf("valkey addrs %q", c.ValkeyAddrs)
	}
	if c.Actors.SlowConsumerPolicy != actors.PolicyDropOldest {
		t.Errorf("policy %q", c.Actors.SlowConsumerPolicy)
	}
}

func TestConfigRejectsBadValuesNamingTheSetting(t *testing.T) {
	for _, tc := range []struct{ env, value string }{
		{"RELAY_RETENTION", "forever"},
		{"RELAY_RETENTION", "-5s"},
		{"RELAY_MAX_CONNECTIONS", "many"},
		{"RELAY_MAX_CONNECTIONS", "0"},
		{"RELAY_MAX_MESSAGE_SIZE", "12"},
		{"RELAY_SLOW_CONSUMER_POLICY", "ignore"},
		{"RELAY_LOG_FORMAT", "xml"},
		{"RELAY_VALKEY_DB", "-1"},
		{"RELAY_SUPERVISOR_BACKOFF", "0"},
		{"RELAY_RATE_PUBLISH", "NaN"}, // NaN compares false with every bound
		{"RELAY_RATE_WS_FRAMES", "NaN"},
		{"RELAY_WS_UPGRADE_RATE", "nan"},
		{"RELAY_WS_READ_RATE", "NaN"},
		{"RELAY_RATE_PUBLISH", "+Inf"},
	} {
		_, err := parseConfig(nil, envOf(map[string]string{tc.env: tc.value}), nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.env) {
			t.Errorf("%s=%q: got %v, want an error naming %s", tc.env, tc.value, err, tc.env)
		}
	}
	if _, err := parseConfig([]string{"--no-such-flag"}, envOf(nil), nil, io.Discard); err == nil {
		t.Error("unknown flag accepted")
	}
	if _, err := parseConfig(nil, envOf(nil), strings.NewReader("garbage line"), io.Discard); err == nil {
		t.Error("bad .env accepted")
	}
}

// TestEverySettingIsInTheREADME: the README's settings tables name every
// RELAY_* variable the relay reads, so an operator finds each one there.
func TestEverySettingIsInTheREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var c config
	for _, s := range c.settings() {
		if !bytes.Contains(readme, []byte("`"+s.env+"`")) {
			t.Errorf("README.md does not mention `%s` (%s)", s.env, s.help)
		}
	}
}
