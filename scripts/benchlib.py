"""benchlib: what the Python parts of the bench scripts share.

scripts/bench-bounds.py imports it from its own directory; bench-compare.sh
runs its heredocs with PYTHONPATH=scripts for the same import.
"""
import glob
import json
import os
import statistics


def reports(d, label, target):
    """The `relay bench --json` reports LABEL.TARGET.N.json in directory d."""
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(d, f"{label}.{target}.*.json")))]


def median_of(d, label, target, key):
    """The median of key over those reports, skipping reports where it is
    missing or zero; None when no report has it."""
    vals = [r[key] for r in reports(d, label, target) if r.get(key)]
    return statistics.median(vals) if vals else None
