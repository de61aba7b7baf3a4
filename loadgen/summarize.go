package loadgen

import "io"

func summarizeMain(args []string, stdout, stderr io.Writer) int { return exitUsage }
