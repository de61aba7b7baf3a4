package loadgen

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsDefaults(t *testing.T) {
	c, err := parseFlags(nil, io.Discard, time.Unix(1700000000, 0), 77)
	if err != nil {
		t.Fatal(err)
	}
	if c.Target != TargetRelay || c.Addr != "127.0.0.1:8080" || c.Subscribers != 100 || c.Messages != 1000 || c.Prefix != "bench-77-1700000000" {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestParseFlagsRejects(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "10.0.0.1:8080"}, "only 127.0.0.1 or localhost"},
		{[]string{"--addr", "example.com:80"}, "only 127.0.0.1 or localhost"},
		{[]string{"--addr", "[::1]:80"}, "only 127.0.0.1 or localhost"},
		{[]string{"--addr", "127.0.0.1"}, "missing port"},
		{[]string{"--addr", "127.0.0.1:0"}, "bad port"},
		{[]string{"--target", "nats"}, "--target"},
		{[]string{"--target", "centrifugo"}, "--api-key"},
		{[]string{"--subscribers", "1000000"}, "--subscribers"},
		{[]string{"--messages", "-1"}, "--messages"},
		{[]string{"--publishers", "0"}, "--publishers"},
		{[]string{"--duration", "2h"}, "--duration"},
		{[]string{"--rate", "-3"}, "--rate"},
		{[]string{"--topic-prefix", "a:b"}, "--topic-prefix"},
		{[]string{"--format", "xml"}, "--format"},
		{[]string{"--bulk", "101"}, "--bulk"},
		{[]string{"extra"}, "unexpected arguments"},
	}
	for _, tc := range tests {
		_, err := parseFlags(tc.args, io.Discard, time.Now(), 1)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestLoopbackDialerRefusesOtherAddresses(t *testing.T) {
	d := loopbackDialer(100 * time.Millisecond)
	// 192.0.2.0/24 is TEST-NET-1: the Control hook must refuse before any packet.
	if _, err := d.Dial("tcp", "192.0.2.1:80"); err == nil || !strings.Contains(err.Error(), "non-loopback") {
		t.Fatalf("dial 192.0.2.1: err = %v, want a non-loopback refusal", err)
	}
}
