package main

import (
	"context"
	"io"

	"github.com/pulsar-relay/relay/loadgen"
)

// benchCmd runs the load generator (`relay bench -h` lists its flags).
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return loadgen.Main(ctx, args, stdout, stderr)
}
