#!/usr/bin/env python3
"""bench-bounds: the part of BENCHMARKS.md that says, for each CPU target of
issue 13, how far the relay's own code could move it.

Usage: bench-bounds.py OWNERS_DIR RESULTS_DIR WS_FLOOR_FILE NCPU

OWNERS_DIR holds LABEL.TARGET.json from scripts/perf-owners.py (self time
by owner in the profiled run of a scenario) and, from scripts/bench-floor.sh,
http-ingest.relay.json and http-ingest.cpu ("floor relay" CPU µs/request
under wrk). RESULTS_DIR holds the runs' `relay bench --json` reports,
WS_FLOOR_FILE the fan-out write floor figures (CPU µs per write, one per
line). Prints markdown; prints nothing when nothing was profiled.

The bound: a server's CPU per unit of work times the share of its samples
that is not its own code (and, stricter, not its own code nor the allocator
and GC, which its allocations drive) is what it would still cost with its
own functions free, on the same libraries, runtime and kernel. A target
that even the stricter figure misses cannot be reached by changing the
relay's own functions; the Go scheduling and system calls its design asks
for are outside the bound and are discussed in bench/STATUS.md.
"""
import json
import os
import statistics
import sys

from benchlib import median_of as median

OWNER_COLS = [("kernel", "kernel"), ("runtime", "Go runtime"), ("gc", "allocator and GC"),
              ("stdlib", "standard library"), ("libs", "libraries"), ("own", "own code")]
NAMED = {k for k, _ in OWNER_COLS}

# label, unit key, unit name: the profiled scenarios of bench-compare.sh.
SCENARIOS = [
    ("fanout-memory", "cpu_us_per_delivery", "delivery"),
    ("many-topics-memory", "cpu_us_per_delivery", "delivery"),
    ("ingest-valkey", "cpu_us_per_publish", "publish"),
    ("ingest-valkey-1topic", "cpu_us_per_publish", "publish"),
]
UNIT = {label: key for label, key, _ in SCENARIOS}


def owners(odir, label, target):
    try:
        o = json.load(open(os.path.join(odir, f"{label}.{target}.json")))
    except (OSError, ValueError):
        return None
    o["libs"] = round(sum(v for k, v in o.items() if k not in NAMED), 1)
    return o


def free(m, o):
    """(measured, own code free, own code and GC free) CPU per unit."""
    own, gc = o.get("own", 0) / 100, o.get("gc", 0) / 100
    return m, m * (1 - own), m * (1 - own - gc)


def verdict(met, reachable):
    return "met" if met else ("yes" if reachable else "no")


def main():
    odir, res, floor_file, ncpu = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    http = None
    try:
        hfloor, hrelay = (float(x) for x in open(os.path.join(odir, "http-ingest.cpu")).read().split())
        ho = owners(odir, "http-ingest", "relay")
        if ho:
            http = (hfloor, hrelay, ho)
    except (OSError, ValueError):
        pass
    rows = []
    if http:
        rows.append(("http-ingest (wrk)", "relay", "request", http[1], http[2]))
    for label, key, unit in SCENARIOS:
        for target, name in (("relay", "relay"), ("centrifugo", "Centrifugo")):
            o, m = owners(odir, label, target), median(res, label, target, key)
            if o and m:
                rows.append((label, name, unit, m, o))
    if not rows:
        return

    print("### Self time by owner\n")
    print("Self time of each profiled run, by who owns the function (`scripts/perf-owners.py`): kernel")
    print("symbols; Go's runtime; its allocator and garbage collector; the standard library; third-party")
    print("libraries (protoactor-go, valkey-go, coder/websocket, chi, ...); the server's own packages")
    print("(Centrifugo's: github.com/centrifugal/..., its centrifuge library included). CPU per unit is the")
    print("median of the scenario's measured runs (http-ingest: of the wrk rounds in the floors section).")
    print("The kernel column in µs shows whether one server's system calls cost more than the other's.\n")
    print("| scenario | server | CPU µs/unit | kernel µs/unit | " + " | ".join(c for _, c in OWNER_COLS) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(OWNER_COLS))
    for label, name, unit, m, o in rows:
        cells = " | ".join(f"{o.get(k, 0):.1f}%" for k, _ in OWNER_COLS)
        print(f"| {label} | {name} | {m:.2f}/{unit} | {m * o.get('kernel', 0) / 100:.2f} | {cells} |")

    print("\n### The CPU targets with the relay's own code free\n")
    print("Each CPU target against what the relay would still cost if its own functions took no time")
    print("(\"own code free\") and, stricter, if its allocations cost nothing either (\"and GC free\").")
    print("\"no\": even the stricter figure misses the target, so no change to the relay's own functions")
    print("reaches it with these libraries, this runtime and these system calls; \"yes\": it could, in")
    print("principle; \"met\": the measured figure meets it.\n")
    print("| target | needed | relay measured | own code free | and GC free | reachable by the relay's code |")
    print("|---|---:|---:|---:|---:|---|")

    def ratio_row(what, base, need, b):
        print(f"| {what} | <= {need:.2f} µs | {b[0]:.2f} ({b[0] / base:.2f}x) | {b[1]:.2f} ({b[1] / base:.2f}x) "
              f"| {b[2]:.2f} ({b[2] / base:.2f}x) | {verdict(b[0] <= need, b[2] <= need)} |")

    def relay_bound(label):
        o, m = owners(odir, label, "relay"), median(res, label, "relay", UNIT[label])
        return free(m, o) if o and m else None

    if http:
        hfloor, hrelay, ho = http
        ratio_row(f"HTTP ingest: CPU/publish <= 1.5x the bare net/http handler ({hfloor:.2f} µs, wrk)",
                  hfloor, 1.5 * hfloor, free(hrelay, ho))
    try:
        floor = statistics.median(float(x) for x in open(floor_file).read().split())
    except (OSError, ValueError, statistics.StatisticsError):
        floor = None
    b = relay_bound("fanout-memory")
    if b and floor:
        ratio_row(f"fan-out at 100 msgs/s: CPU/delivery <= 1.15x the write floor ({floor:.2f} µs)", floor, 1.15 * floor, b)
    b, cf = relay_bound("many-topics-memory"), median(res, "many-topics-memory", "centrifugo", "cpu_us_per_delivery")
    if b and cf:
        ratio_row(f"many topics: CPU/delivery <= 0.8x Centrifugo's ({cf:.2f} µs)", cf, 0.8 * cf, b)
    for label, what in (("ingest-valkey", "10 topics"), ("ingest-valkey-1topic", "1 topic")):
        b = relay_bound(label)
        cf = median(res, label, "centrifugo", "publishes_per_s")
        got = median(res, label, "relay", "publishes_per_s")
        store = median(res, label, "relay", "store_cpu_us_per_publish")
        lg = median(res, label, "relay", "loadgen_cpu_us_per_publish")
        if not (b and cf and got and store and lg):
            continue
        # On NCPU cores shared by the server, Valkey and the load generator,
        # publishes/s cannot exceed NCPU seconds over their CPU per publish.
        ceil = [ncpu * 1e6 / (x + store + lg) for x in b]
        need = 1.5 * cf
        print(f"| Valkey ingest, {what}: publishes/s >= 1.5x Centrifugo's {cf:.0f}/s | >= {need:.0f}/s "
              f"| {got:.0f}/s (ceiling {ceil[0]:.0f}/s) | ceiling {ceil[1]:.0f}/s | ceiling {ceil[2]:.0f}/s "
              f"| {verdict(got >= need, ceil[2] >= need)} |")
    print("\nValkey rows: the ceiling is what the machine's cores allow when the relay, Valkey and the")
    print("load generator share them: cores / (relay + Valkey + load generator CPU per publish, the")
    print("relay runs' medians); measured runs reach about 80-90% of it. The load generator pays more")
    print("per publish against the relay than against Centrifugo: Centrifugo joins the publications")
    print("queued for a connection into one WebSocket message, newline-separated, while the relay keeps")
    print("one message per frame (no client changes), so its subscribers read more messages.\n")


if __name__ == "__main__":
    main()
