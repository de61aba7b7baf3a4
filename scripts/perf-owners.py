#!/usr/bin/env python3
"""perf-owners: split a server's sampled CPU by who owns the code it ran.

Usage: perf-owners.py REPORT [--own PREFIX]

REPORT is `perf report --stdio --no-children --sort symbol -g none` output
(self time per symbol). Prints one JSON object: the share (percent of the
samples) of each owner:

  kernel     [k] symbols: system calls, loopback TCP, scheduling
  gc         Go's allocator and garbage collector (what the server's own
             allocations cost; charged to the server in the bound below)
  runtime    the rest of Go's runtime (scheduler, timers, channels, memmove)
  stdlib     Go's standard library (net, net/http, internal/poll, sync, ...)
  own        the server's own packages (--own, a Go import path prefix)
  protoactor, valkey-go, websocket, prometheus, chi: libraries by name
  other      everything else (other modules, unknown symbols)

The point of the split: whatever is not "own" is the cost the server would
still pay if its own functions took no time at all, so CPU per unit of work
times (100 - own)/100 is a lower bound that no change to the server's own
code can beat, with the same libraries, runtime and system calls; and
(100 - own - gc)/100 one that holds even when every allocation is charged
to the server's own code.
"""
import json
import re
import sys

LIBS = [
    ("protoactor", "github.com/asynkron/protoactor-go"),
    ("valkey-go", "github.com/valkey-io/valkey-go"),
    ("valkey-go", "github.com/redis/rueidis"),
    ("websocket", "github.com/coder/websocket"),
    ("websocket", "github.com/gorilla/websocket"),
    ("prometheus", "github.com/prometheus/"),
    ("chi", "github.com/go-chi/chi"),
]
# Go runtime symbols, including assembly helpers without a package path.
RUNTIME = re.compile(
    r"^(runtime[./]|internal/runtime/|internal/abi|internal/bytealg|internal/godebug|sync/atomic|"
    r"gogo|mcall|morestack|memeqbody|cmpbody|indexbyte|countbyte|aeshash|gcWriteBarrier|"
    r"_rt0|asmcgocall|__vdso|type:|go:)"
)

GC = re.compile(
    r"^runtime\.(malloc|newobject|makeslice|growslice|gc|scan|sweep|mark|heapBits|"
    r"\(\*mspan\)|\(\*mheap\)|\(\*mcache\)|\(\*mcentral\)|\(\*gcWork\)|\(\*spanSet\)|tryDeferToSpanScan|"
    r"greyobject|findObject|wbBuf|bulkBarrier|memclrNoHeapPointers|nextFreeFast|deductAssist|"
    r"typePointers|\(\*gcBits\)|spanOf|refillAllocCache|mProf)|^internal/runtime/gc/|^gcWriteBarrier"
)


def standard(sym):
    """Whether sym is in Go's standard library: its import path's first
    element has no dot (net/http, internal/poll, sync), unlike a module's
    (github.com/..., golang.org/x/...). vendor/ is the standard library's
    own copy of golang.org/x packages."""
    if sym.startswith("vendor/"):
        return True
    if "/" in sym:
        return "." not in sym.split("/")[0]
    return re.match(r"^[a-z0-9_]+\.", sym) is not None

LINE = re.compile(r"^\s*([0-9.]+)%\s+\[(.)\]\s+(\S+)")


def owner(kind, sym, own):
    if kind == "k":
        return "kernel"
    if own and sym.startswith(own):
        return "own"
    for name, prefix in LIBS:
        if sym.startswith(prefix):
            return name
    if GC.match(sym):
        return "gc"
    if RUNTIME.match(sym):
        return "runtime"
    if standard(sym):
        return "stdlib"
    return "other"


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    report, own = args[0], ""
    if "--own" in args:
        own = args[args.index("--own") + 1]
    shares = {}
    for line in open(report, errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        pct, kind, sym = float(m.group(1)), m.group(2), m.group(3)
        o = owner(kind, sym, own)
        shares[o] = shares.get(o, 0.0) + pct
    print(json.dumps({k: round(v, 1) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}))


if __name__ == "__main__":
    main()
