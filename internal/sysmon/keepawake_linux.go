package sysmon

import (
	"os"
	"syscall"
)

// KeepAwake re-executes the process (same pid, arguments and open files)
// with Env's GODEBUG, so the runtime starts with Setting. It returns only
// when there is nothing to do (GODEBUG names schedtrace already, which is
// also the case after the re-execution) or when the execution failed, and
// then the process goes on with the runtime's default. Call it first thing
// in main, before any file, listener or goroutine of the program's own:
// execve keeps open files without close-on-exec, and discards the rest.
func KeepAwake() {
	env, changed := Env(os.Environ())
	if !changed {
		return
	}
	// /proc/self/exe, not os.Args[0] or os.Executable(): it names the
	// running binary even when its path was replaced or removed since.
	_ = syscall.Exec("/proc/self/exe", os.Args, env)
}
