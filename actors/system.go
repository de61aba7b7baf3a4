package actors

import (
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// NewActorSystem returns a protoactor system whose own logs go through logger
// (at logger's level), not protoactor's default tint handler on stderr.
func NewActorSystem(logger *slog.Logger) *actor.ActorSystem {
	return actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return logger.With("lib", "protoactor")
		}),
		actor.WithDeadLetterThrottleInterval(10*time.Second),
		actor.WithDeadLetterRequestLogging(false),
	)
}

// monoBase anchors monotonic timestamps carried in messages as int64.
var monoBase = time.Now()

// monoNow returns nanoseconds on the monotonic clock since process start.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// monoSince returns the time elapsed since a monoNow reading.
func monoSince(t int64) time.Duration { return time.Duration(monoNow() - t) }
