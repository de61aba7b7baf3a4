//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// logDescriptors logs the open-file limit the relay runs under and warns
// when it is below what the configured connection limits need. Go (1.19 and
// later, on Unix) already raises the soft limit to the hard one at start, so
// the soft limit logged here is the hard limit unless something lowered it.
func logDescriptors(cfg *config, logger *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	need := descriptorsNeeded(cfg)
	if lim.Cur < uint64(need) {
		logger.Warn("open-file limit below what the connection limits need: raise it (ulimit -n, LimitNOFILE=) or lower RELAY_MAX_CONNECTIONS / RELAY_MAX_HTTP_CONNECTIONS",
			"limit", lim.Cur, "hard", lim.Max, "need", need)
		return
	}
	logger.Info("open-file limit", "limit", lim.Cur, "hard", lim.Max, "need", need)
}
