package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
)

// TestConfigScaleoutSettings: the scale-out settings parse, default as
// documented, and refuse bad values naming the setting.
func TestConfigScaleoutSettings(t *testing.T) {
	c, err := parseConfig(nil, envOf(nil), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ValkeyCluster || c.ValkeyWaitReplicas != 0 || c.Actors.PositionCheckInterval != actors.DefaultPositionCheckInterval {
		t.Fatalf("defaults: cluster %v, wait %d, check %s", c.ValkeyCluster, c.ValkeyWaitReplicas, c.Actors.PositionCheckInterval)
	}
	c, err = parseConfig(nil, envOf(map[string]string{
		"RELAY_VALKEY_CLUSTER": "1", "RELAY_VALKEY_WAIT_REPLICAS": "2", "RELAY_POSITION_CHECK_INTERVAL": "750ms",
	}), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.ValkeyCluster || c.ValkeyWaitReplicas != 2 || c.Actors.PositionCheckInterval != 750*time.Millisecond {
		t.Fatalf("set: cluster %v, wait %d, check %s", c.ValkeyCluster, c.ValkeyWaitReplicas, c.Actors.PositionCheckInterval)
	}
	for env, value := range map[string]string{
		"RELAY_VALKEY_CLUSTER": "yes", "RELAY_VALKEY_WAIT_REPLICAS": "-1", "RELAY_POSITION_CHECK_INTERVAL": "0",
	} {
		_, err := parseConfig(nil, envOf(map[string]string{env: value}), nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), env) {
			t.Errorf("%s=%s: %v, want an error naming it", env, value, err)
		}
	}
}
