package relaytest

import (
	"testing"

	"go.uber.org/goleak"
)

// CheckLeaks fails t if goroutines started during the test outlive it. Call
// it first in a test, before Start: cleanups run last-in first-out, so the
// check runs after the relay and its clients have shut down.
func CheckLeaks(t *testing.T) {
	t.Helper()
	baseline := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		HTTPClient.CloseIdleConnections()
		if err := goleak.Find(append(IgnoreLibraryTimers(), baseline)...); err != nil {
			t.Errorf("goroutines outlived the test: %v", err)
		}
	})
}

// IgnoreLibraryTimers lists goroutines that end by themselves shortly and
// are not the relay's: protoactor's dead-letter log throttle runs one
// throttle interval after a dead letter.
func IgnoreLibraryTimers() []goleak.Option {
	return []goleak.Option{goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1")}
}
