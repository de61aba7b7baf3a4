package gateway

import (
	"net"
	"testing"
)

// TestClientAddrKey: per-client limits count an IPv6 host by its /64 (so
// one host cannot rotate through its addresses), an IPv4 host (mapped or
// not) by its address; the listener's key follows the same rule.
func TestClientAddrKey(t *testing.T) {
	same := [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
		{"2001:db8:1:2::1", "2001:db8:1:2:abcd::9%eth0"},
		{"192.0.2.7", "::ffff:192.0.2.7"},
	}
	for _, p := range same {
		if a, b := clientAddrKey(p[0]), clientAddrKey(p[1]); a != b {
			t.Errorf("%s and %s: keys %q and %q, want one", p[0], p[1], a, b)
		}
		ta := &net.TCPAddr{IP: net.ParseIP(p[0]), Port: 1}
		tb := &net.TCPAddr{IP: net.ParseIP(stripZone(p[1])), Port: 2}
		if clientIP(ta) != clientIP(tb) {
			t.Errorf("listener: %s and %s counted apart", p[0], p[1])
		}
	}
	apart := [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
		{"192.0.2.7", "192.0.2.8"},
		{"::1", "2001:db8::1"},
	}
	for _, p := range apart {
		if clientAddrKey(p[0]) == clientAddrKey(p[1]) {
			t.Errorf("%s and %s share a key %q", p[0], p[1], clientAddrKey(p[0]))
		}
		if clientIP(&net.TCPAddr{IP: net.ParseIP(p[0])}) == clientIP(&net.TCPAddr{IP: net.ParseIP(p[1])}) {
			t.Errorf("listener: %s and %s counted together", p[0], p[1])
		}
	}
	if got := clientAddrKey("not an address"); got != "not an address" {
		t.Errorf("a host that is not an address: %q", got)
	}
	if got := remoteClient("[2001:db8:1:2::5]:443"); got != clientAddrKey("2001:db8:1:2::1") {
		t.Errorf("remoteClient of an IPv6 peer: %q", got)
	}
}

func stripZone(s string) string {
	for i := range s {
		if s[i] == '%' {
			return s[:i]
		}
	}
	return s
}
