package persistence

import (
	"os"
	"testing"

	"github.com/pulsar-relay/relay/internal/valkeytest"
)

// TestMain stops the package's shared Valkey Cluster, if a test started
// one.
func TestMain(m *testing.M) {
	code := m.Run()
	valkeytest.StopSharedCluster()
	os.Exit(code)
}
