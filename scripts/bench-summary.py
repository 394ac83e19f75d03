#!/usr/bin/env python3
"""Prints what docs/BENCHMARKS.md quotes from a Google Benchmark JSON file:
for each benchmark, the median and the range (min-max) over its repetitions
of its time, its rate and each counter.

    scripts/bench-summary.py build-bench/results/tensorboard_writer.json
    scripts/bench-summary.py build-bench/results/trainer_overhead.json '^BM_Paired'

The JSON must hold the single repetitions (run the benchmark with
--benchmark_repetitions=N and --benchmark_display_aggregates_only=true, not
--benchmark_report_aggregates_only, which drops them from the file).
"""

import json
import re
import statistics
import sys
from collections import OrderedDict

# Fields of a run that are not counters.
NOT_COUNTERS = {
    "name", "family_index", "per_family_instance_index", "run_name", "run_type", "repetitions",
    "repetition_index", "threads", "iterations", "real_time", "cpu_time", "time_unit",
    "aggregate_name", "aggregate_unit", "error_occurred", "error_message", "label",
    "bytes_per_second", "items_per_second",
}


def number(v):
    """Three significant digits, with M/k for rates."""
    a = abs(v)
    if a >= 1e6:
        return "%.3g M" % (v / 1e6)
    if a >= 1e4:
        return "%.3g k" % (v / 1e3)
    return "%.3g" % v


def spread(values, unit=""):
    med = statistics.median(values)
    if len(values) == 1:
        return "%s%s" % (number(med), unit)
    return "%s%s [%s-%s]" % (number(med), unit, number(min(values)).strip(), number(max(values)).strip())


def main(path, name_filter=None):
    with open(path) as f:
        data = json.load(f)
    ctx = data.get("context", {})
    print("  %s, %s CPUs at %s MHz, %s" % (ctx.get("date", "?"), ctx.get("num_cpus", "?"),
                                          ctx.get("mhz_per_cpu", "?"), ctx.get("host_name", "?")))
    runs = OrderedDict()
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration" or b.get("error_occurred"):
            continue
        if name_filter and not re.search(name_filter, b["run_name"]):
            continue
        runs.setdefault(b["run_name"], []).append(b)
    if not runs:
        sys.exit("bench-summary: %s has no single repetitions; run the benchmark with "
                 "--benchmark_display_aggregates_only=true, not report_aggregates_only" % path)
    for name, reps in runs.items():
        unit = reps[0].get("time_unit", "ns")
        parts = ["time %s" % spread([r["real_time"] for r in reps], " " + unit)]
        if "items_per_second" in reps[0]:
            parts.append("%s/s" % spread([r["items_per_second"] for r in reps]))
        keys = OrderedDict((k, None) for r in reps for k in r)  # every counter of any repetition
        for key in keys:
            values = [r[key] for r in reps if isinstance(r.get(key), (int, float))]
            if key in NOT_COUNTERS or not values:
                continue
            # A counter some repetitions lack is summarised over those that have it.
            note = "" if len(values) == len(reps) else " (in %d of %d runs)" % (len(values), len(reps))
            parts.append("%s %s%s" % (key, spread(values), note))
        print("%s (%d runs): %s" % (name, len(reps), ", ".join(parts)))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: bench-summary.py RESULTS.json [NAME_REGEX]")
    main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
