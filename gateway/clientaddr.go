package gateway

import (
	"net"
	"net/netip"
)

// clientAddrKey is the key the per-client limits count a remote host by
// (the HTTP connections per client, the upgrade pace, the identity of an
// anonymous client): its IPv4 address, or its IPv6 /64. A host is commonly
// given a whole IPv6 /64, so counting single IPv6 addresses would give one
// host 2^64 shares of every per-client limit.
func clientAddrKey(host string) string {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if a.Is4() {
		return host // as given: no allocation on the common path
	}
	if a.Is4In6() {
		return a.Unmap().String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// v6Prefix masks an IPv6 address to its /64 (see clientAddrKey).
var v6Prefix = net.CIDRMask(64, 128)

// clientIP is the listener's key for a connection's peer: clientAddrKey's
// rule on the address's 16 bytes.
func clientIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip4 := ta.IP.To4(); ip4 != nil {
			return string(ip4.To16())
		}
		return string(ta.IP.Mask(v6Prefix))
	}
	return clientAddrKey(hostOf(a.String()))
}

// hostOf is the host of a "host:port" remote address (the address itself
// when it has no port).
func hostOf(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}
