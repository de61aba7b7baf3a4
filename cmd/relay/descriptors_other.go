//go:build !unix

package main

import "log/slog"

func logDescriptors(*config, *slog.Logger) {}
