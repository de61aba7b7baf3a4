package sysmon

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// childEnv makes this test binary act as a program that calls KeepAwake
// first thing (TestMain), then reports its pid and GODEBUG and, with
// "panic", dies of an unrecovered panic.
const childEnv = "SYSMON_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		KeepAwake()
		fmt.Printf("pid=%d godebug=%s\n", os.Getpid(), os.Getenv("GODEBUG"))
		if mode == "panic" {
			panic("child dies")
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(t *testing.T, mode string, env ...string) (pid int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+mode), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if mode == "panic" {
		if err == nil {
			t.Fatalf("the panicking child exited 0; stderr:\n%s", errb.String())
		}
	} else if err != nil {
		t.Fatalf("child: %v; stderr:\n%s", err, errb.String())
	}
	return cmd.Process.Pid, out.String(), errb.String()
}

// The process re-executes itself in place (same pid) with Setting, and the
// runtime takes it: an unrecovered panic's report then starts with the
// scheduler's state ("SCHED"), which the runtime prints only with a
// schedtrace period set.
func TestKeepAwakeReexecutesWithTheSetting(t *testing.T) {
	pid, out, _ := runChild(t, "report", "GODEBUG=gctrace=0")
	want := fmt.Sprintf("pid=%d godebug=gctrace=0,%s\n", pid, Setting)
	if out != want {
		t.Fatalf("child reported %q; want %q", out, want)
	}
	_, _, stderr := runChild(t, "panic", "GODEBUG=")
	if !strings.Contains(stderr, "SCHED ") || !strings.Contains(stderr, "child dies") {
		t.Fatalf("the panic's report has no scheduler state; stderr:\n%s", stderr)
	}
}

// An operator's schedtrace is kept, and schedtrace=0 gives the runtime's
// default: no re-execution, no scheduler state in a panic's report.
func TestKeepAwakeKeepsTheOperatorsSchedtrace(t *testing.T) {
	pid, out, _ := runChild(t, "report", "GODEBUG=schedtrace=0")
	if want := "pid=" + strconv.Itoa(pid) + " godebug=schedtrace=0\n"; out != want {
		t.Fatalf("child reported %q; want %q", out, want)
	}
	_, _, stderr := runChild(t, "panic", "GODEBUG=schedtrace=0")
	if strings.Contains(stderr, "SCHED ") || !strings.Contains(stderr, "child dies") {
		t.Fatalf("with schedtrace=0 the panic's report should be the default one; stderr:\n%s", stderr)
	}
}
