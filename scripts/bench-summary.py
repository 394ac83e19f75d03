#!/usr/bin/env python3
"""Prints what docs/BENCHMARKS.md quotes from a Google Benchmark JSON file:
for each benchmark, the median and the range (min-max) over its repetitions
of its time, its rate and each counter. For a paired benchmark (one with a
`ratio` counter) it also prints how far the median can be trusted: the 95 %
confidence interval of the median ratio, of the model's own work
(`model_ratio`), and of the time the variant added outside the model's work
(`added_ms` as a share of `bare_ms`), each repetition taken as one
independent sample.

    scripts/bench-summary.py build-bench/results/tensorboard_writer.json
    scripts/bench-summary.py build-bench/results/trainer_overhead.json '^BM_Paired'

The JSON must hold the single repetitions (run the benchmark with
--benchmark_repetitions=N and --benchmark_display_aggregates_only=true, not
--benchmark_report_aggregates_only, which drops them from the file).
"""

import json
import math
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


def median_interval(values, level=0.95):
    """The distribution-free confidence interval of the median: the order
    statistics x(k) and x(n+1-k) (1-based), with k the largest for which
    P(Binomial(n, 1/2) < k) <= (1 - level) / 2. None when n is too small
    (below 6 for 95 %): no two order statistics reach that level."""
    xs = sorted(values)
    n = len(xs)
    below = 0.0  # P(Binomial(n, 1/2) < k), k from 1 up
    k = 0
    for j in range(n):
        below += math.comb(n, j) / 2.0 ** n
        if below > (1 - level) / 2:
            break
        k = j + 1
    if k == 0:
        return None
    return xs[k - 1], xs[n - k], k


def percent_interval(label, values):
    """'label: median +1.23 %, 95 % confidence interval of the median [+0.4, +2.0] %'."""
    med = 100 * (statistics.median(values) - 1)
    ci = median_interval(values)
    if ci is None:
        return "  %s: median %+.2f %% (too few repetitions for a 95 %% interval)" % (label, med)
    lo, hi, k = ci
    return ("  %s: median %+.2f %%, 95 %% confidence interval of the median [%+.2f, %+.2f] %% "
            "(order statistics %d and %d of %d)" % (label, med, 100 * (lo - 1), 100 * (hi - 1), k,
                                                    len(values) + 1 - k, len(values)))


def added_share(rep):
    """1 + the time a paired variant added outside the model's work / the bare loop's time."""
    added, bare = rep.get("added_ms"), rep.get("bare_ms")
    if isinstance(added, (int, float)) and isinstance(bare, (int, float)) and bare:
        return 1 + added / bare
    return None


# The ratios of a paired benchmark that get a 95 % interval of their median:
# (label, the ratio of one repetition, or None when it lacks the counters).
INTERVALS = (
    ("variant / bare loop", lambda r: r.get("ratio")),
    ("the model's own work, variant / bare loop", lambda r: r.get("model_ratio")),
    ("one iteration's model work at its median, variant / bare loop",
     lambda r: r.get("model_p50_ratio")),
    ("time added outside the model's work, / bare loop", added_share),
)


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
        for label, value in INTERVALS:
            values = [value(r) for r in reps]
            if all(isinstance(v, (int, float)) for v in values):
                print(percent_interval(label, values))

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: bench-summary.py RESULTS.json [NAME_REGEX]")
    main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
