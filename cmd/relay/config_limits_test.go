package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestConfigLimitsDefaultsAndSizes(t *testing.T) {
	c, err := parseConfig(nil, envOf(nil), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gateway
	if g.MaxBulkSize != 4<<20 || g.MaxHTTPConnections != 4096 || g.MaxBodyBytesInFlight != 64<<20 ||
		g.HTTPReadTimeout != 30*time.Second || g.HTTPWriteTimeout != 30*time.Second || g.HistoryMaxBytes != 4<<20 || c.MemoryLimit != 0 {
		t.Fatalf("limit defaults: %+v memory %d", g, c.MemoryLimit)
	}
	c, err = parseConfig([]string{"--memory-limit", "512MiB", "--max-bulk-size=2097152"}, envOf(map[string]string{"RELAY_HISTORY_MAX_BYTES": "1GiB"}), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MemoryLimit != 512<<20 || c.Gateway.MaxBulkSize != 2<<20 || c.Gateway.HistoryMaxBytes != 1<<30 {
		t.Errorf("sizes: memory %d bulk %d history %d", c.MemoryLimit, c.Gateway.MaxBulkSize, c.Gateway.HistoryMaxBytes)
	}
	for _, tc := range []struct{ env, value string }{
		{"RELAY_MEMORY_LIMIT", "lots"},
		{"RELAY_MEMORY_LIMIT", "1KiB"},
		{"RELAY_MAX_BULK_SIZE", "-1"},
		{"RELAY_MAX_HTTP_CONNECTIONS", "0"},
		{"RELAY_HTTP_WRITE_TIMEOUT", "0"},
		{"RELAY_MAX_BODY_BYTES_IN_FLIGHT", "9999999PiB"},
	} {
		_, err := parseConfig(nil, envOf(map[string]string{tc.env: tc.value}), nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.env) {
			t.Errorf("%s=%q: got %v, want an error naming %s", tc.env, tc.value, err, tc.env)
		}
	}
}
