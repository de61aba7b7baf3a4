//go:build race

package gateway

// raceOn: the race detector is on. Its sync.Pool drops a quarter of what is
// put back, so code that allocates nothing from a warm pool allocates now
// and then.
const raceOn = true
