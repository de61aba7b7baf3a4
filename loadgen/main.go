package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"
)

// Exit codes of Main.
const (
	exitOK    = 0 // the run completed and its report was written (it may show loss)
	exitFail  = 1 // the run or the report could not be completed
	exitUsage = 2 // bad flags
)

// Main runs `relay bench` with args (the arguments after "bench") and returns
// the process exit code. The report goes to stdout (a table, or JSON with
// --format json) and, with --json PATH, to that file as JSON; progress and
// errors go to stderr. `bench summarize ...` instead turns saved JSON
// reports into a Markdown comparison (see summarizeMain), and `bench merge
// ...` simultaneous hold runs against several servers into one report (see
// mergeMain).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "summarize":
			return summarizeMain(args[1:], stdout, stderr)
		case "merge":
			return mergeMain(args[1:], stdout, stderr)
		}
	}
	cfg, err := parseFlags(args, stderr, time.Now(), os.Getpid())
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitUsage
	}
	want := uint64(cfg.Subscribers + 2*cfg.Publishers + 256)
	if got, err := raiseNoFile(want); err != nil {
		fmt.Fprintf(stderr, "bench: warning: %v; open files limited to %d\n", err, got)
	}
	var d driver
	spread := &spreadDriver{}
	for _, addr := range cfg.Addrs {
		pubClient, wsClient := newClients(addr, cfg.Publishers, cfg.ReqTimeout)
		defer pubClient.closeIdle()
		switch cfg.Target {
		case TargetCentrifugo:
			d = newCentrifugoDriver(addr, cfg.APIKey, pubClient, wsClient)
		default:
			rd := newRelayDriver(addr, pubClient, wsClient).withToken(cfg.Token)
			d = rd
			if cfg.Transport != TransportWS {
				d = newConsumerDriver(rd, cfg.Transport, cfg.Subscribers)
			}
		}
		spread.ds = append(spread.ds, d)
	}
	if len(spread.ds) > 1 {
		d = spread
	}
	var progress io.Writer
	if !cfg.Quiet {
		progress = stderr
	}
	if cfg.CPUProfile != "" {
		stop, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return exitFail
		}
		defer stop()
	}
	rep, err := run(ctx, cfg, d, progress)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitFail
	}
	if err := writeReports(rep, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitFail
	}
	return exitOK
}

// startCPUProfile profiles this process into path until the returned stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeReports writes the report to stdout in cfg.Format and, if asked, as
// JSON to cfg.JSONPath.
func writeReports(rep *Report, cfg Config, stdout io.Writer) error {
	if cfg.JSONPath != "" {
		f, err := os.Create(cfg.JSONPath)
		if err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		if err := rep.writeJSON(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write report %s: %w", cfg.JSONPath, err)
		}
	}
	if cfg.Format == "json" {
		return rep.writeJSON(stdout)
	}
	return rep.writeTable(stdout)
}
