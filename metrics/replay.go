package metrics

import "github.com/pulsar-relay/relay/actors"

var _ actors.ReplayObserver = (*Registry)(nil)

// ReplayBytes implements actors.ReplayObserver.
func (r *Registry) ReplayBytes(delta int) { r.replayBytes.Add(float64(delta)) }

// ReplayWaited implements actors.ReplayObserver.
func (r *Registry) ReplayWaited() { r.replayWaits.Inc() }
