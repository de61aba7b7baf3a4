#!/usr/bin/env python3
"""bench-bounds: the part of BENCHMARKS.md that says, for each CPU target,
how far the relay's own code could move it.

Usage: bench-bounds.py OWNERS_DIR RESULTS_DIR WS_FLOOR_FILE NCPU

OWNERS_DIR holds LABEL.TARGET.json from scripts/perf-owners.py (self time
by owner in the profiled run of a scenario), RESULTS_DIR the runs'
`relay bench --json` reports, WS_FLOOR_FILE the fan-out write floor figures
(CPU µs per write, one per line). Prints markdown.

The bound: a server's CPU per unit of work times the share of its samples
that is not its own code (and, stricter, not its own code nor the
allocator and GC, which its allocations drive) is what it would still cost
with its own functions free, on the same libraries, runtime and kernel. A
target below that bound cannot be reached by changing the relay's code
alone.
"""
import glob
import json
import os
import statistics
import sys

OWNER_COLS = [("kernel", "kernel"), ("runtime", "Go runtime"), ("gc", "allocator and GC"),
              ("stdlib", "standard library"), ("libs", "libraries"), ("own", "own code")]


def median(res, label, target, key):
    vals = []
    for f in glob.glob(os.path.join(res, f"{label}.{target}.*.json")):
        v = json.load(open(f)).get(key)
        if v:
            vals.append(v)
    return statistics.median(vals) if vals else None


def owners(d, label, target):
    try:
        o = json.load(open(os.path.join(d, f"{label}.{target}.json")))
    except (OSError, ValueError):
        return None
    named = {"kernel", "runtime", "gc", "stdlib", "own"}
    o["libs"] = round(sum(v for k, v in o.items() if k not in named), 1)
    return o


def main():
    odir, res, floor_file, ncpu = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    scen = [  # label, unit key, unit name
        ("fanout-memory", "cpu_us_per_delivery", "delivery"),
        ("many-topics-memory", "cpu_us_per_delivery", "delivery"),
        ("ingest-valkey", "cpu_us_per_publish", "publish"),
        ("ingest-valkey-1topic", "cpu_us_per_publish", "publish"),
    ]
    rows = []
    for label, key, unit in scen:
        for target, name in (("relay", "relay"), ("centrifugo", "Centrifugo")):
            o, m = owners(odir, label, target), median(res, label, target, key)
            if o and m:
                rows.append((label, name, unit, m, o))
    if not rows:
        return
    print("### Self time by owner\n")
    print("Self time of each profiled run above, by who owns the function (`scripts/perf-owners.py`:")
    print("kernel symbols; Go's runtime; its allocator and garbage collector; the standard library;")
    print("third-party libraries such as protoactor-go, valkey-go, coder/websocket; the server's own")
    print("packages). CPU per unit is the median of the scenario's measured runs; the kernel column")
    print("in µs shows whether one server makes more costly system calls than the other.\n")
    print("| scenario | server | CPU µs/unit | kernel µs/unit | " + " | ".join(c for _, c in OWNER_COLS) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(OWNER_COLS))
    for label, name, unit, m, o in rows:
        cells = " | ".join(f"{o.get(k, 0):.1f}%" for k, _ in OWNER_COLS)
        print(f"| {label} | {name} | {m:.2f}/{unit} | {m * o.get('kernel', 0) / 100:.2f} | {cells} |")

    def bound(label):
        o, m = owners(odir, label, "relay"), median(res, label, "relay", "cpu_us_per_delivery" if "ingest" not in label else "cpu_us_per_publish")
        if not o or not m:
            return None
        return m, m * (1 - o.get("own", 0) / 100), m * (1 - (o.get("own", 0) + o.get("gc", 0)) / 100)

    print("\n### The CPU targets with the relay's own code free\n")
    print("What each missed CPU target would need, against what the relay would still cost if its own")
    print("functions took no time (\"own code free\") and, stricter, if its allocations cost nothing")
    print("either (\"and GC free\"). Where even the stricter figure misses the target, no change to")
    print("the relay's own code reaches it with these libraries, this runtime and these system calls.\n")
    print("| target | needed | relay measured | own code free | and GC free | reachable by the relay's code |")
    print("|---|---:|---:|---:|---:|---|")
    try:
        floor = statistics.median(float(x) for x in open(floor_file).read().split())
    except (OSError, ValueError, statistics.StatisticsError):
        floor = None
    b = bound("fanout-memory")
    if b and floor:
        need = 1.15 * floor
        print(f"| fan-out at 100 msgs/s: CPU/delivery <= 1.15x the write floor ({floor:.2f} µs) | <= {need:.2f} µs "
              f"| {b[0]:.2f} ({b[0] / floor:.2f}x) | {b[1]:.2f} ({b[1] / floor:.2f}x) | {b[2]:.2f} ({b[2] / floor:.2f}x) "
              f"| {'yes' if b[2] <= need else 'no'} |")
    b, cf = bound("many-topics-memory"), median(res, "many-topics-memory", "centrifugo", "cpu_us_per_delivery")
    if b and cf:
        need = 0.8 * cf
        print(f"| many topics: CPU/delivery <= 0.8x Centrifugo's ({cf:.2f} µs) | <= {need:.2f} µs "
              f"| {b[0]:.2f} ({b[0] / cf:.2f}x) | {b[1]:.2f} ({b[1] / cf:.2f}x) | {b[2]:.2f} ({b[2] / cf:.2f}x) "
              f"| {'yes' if b[2] <= need else 'no'} |")
    for label, what in (("ingest-valkey", "10 topics"), ("ingest-valkey-1topic", "1 topic")):
        b = bound(label)
        cf = median(res, label, "centrifugo", "publishes_per_s")
        store = median(res, label, "relay", "store_cpu_us_per_publish")
        lg = median(res, label, "relay", "loadgen_cpu_us_per_publish")
        if not (b and cf and store and lg):
            continue
        # On NCPU cores shared by the server, Valkey and the load generator,
        # publishes/s cannot exceed NCPU seconds over their CPU per publish.
        ceil = [ncpu * 1e6 / (x + store + lg) for x in b]
        need = 1.5 * cf
        print(f"| Valkey ingest, {what}: >= 1.5x Centrifugo's {cf:.0f} publishes/s | >= {need:.0f}/s "
              f"| ceiling {ceil[0]:.0f}/s | ceiling {ceil[1]:.0f}/s | ceiling {ceil[2]:.0f}/s "
              f"| {'yes' if ceil[2] >= need else 'no'} |")
    print("\nValkey rows: the ceiling is what the machine's cores allow when the relay, Valkey and the")
    print("load generator share them: cores / (relay + Valkey + load generator CPU per publish, the")
    print("relay's medians); measured runs reach about 85-90% of it. The load generator's and Valkey's")
    print("shares are the relay runs' own. The load generator pays more per publish against the relay:")
    print("Centrifugo joins the publications queued for a connection into one WebSocket message,")
    print("newline-separated, while the relay keeps one message per frame (no client changes), so")
    print("its subscribers read more messages.\n")


if __name__ == "__main__":
    main()
