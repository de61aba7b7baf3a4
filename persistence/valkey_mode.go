package persistence

import "github.com/valkey-io/valkey-go"

// IsCluster reports whether the store talks to a Valkey Cluster (valkey-go
// chose its cluster client: a cluster node's address, or several seeds),
// and whether it knows yet (false until connected).
func (s *ValkeyStore) IsCluster() (cluster, known bool) {
	vc := s.client.Load()
	if vc == nil {
		return false, false
	}
	return vc.c.Mode() == valkey.ClientModeCluster, true
}
