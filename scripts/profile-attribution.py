#!/usr/bin/env python3
"""Reads `perf script -F ip,sym` of a trainer benchmark (scripts/profile-trainer.sh)
and prints, in milliseconds per trainer run, where the samples inside
trainbus::Trainer::Run went: the model's forward and backward, the optimizer
step, the plugins and the session (by the outermost hook function below the
bus, or the innermost function when no hook is on the stack), and the rest.
--function NAME prints the total of each function whose name contains NAME,
with what it calls, wherever it is on the stack inside Trainer::Run.

    perf script -i trainer.perf -F ip,sym | scripts/profile-attribution.py --runs 19 --hz 5000
"""

import argparse
import collections
import re
import sys

HOOK = re.compile(r"(::On[A-Z]\w*|::CloseAll)( \(inlined\))?$")


def stacks(lines):
    """One list of function names per sample, leaf first."""
    frames = []
    for line in lines:
        line = line.strip()
        if not line:
            if frames:
                yield frames
            frames = []
            continue
        parts = line.split(" ", 1)
        frames.append(parts[1] if len(parts) > 1 else parts[0])
    if frames:
        yield frames


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, required=True, help="trainer runs in the profile")
    parser.add_argument("--hz", type=float, required=True, help="perf's sampling frequency")
    parser.add_argument("--top", type=int, default=15, help="hook functions to list")
    parser.add_argument("--function", action="append", default=[],
                        help="also print this function's total, callees included (repeatable)")
    args = parser.parse_args()
    ms = 1000.0 / args.hz / args.runs  # one sample, in ms per run

    parts = collections.Counter()
    hooks = collections.Counter()
    rest = collections.Counter()
    functions = collections.Counter()
    for frames in stacks(sys.stdin):
        outer = list(reversed(frames))  # root first
        at = next((i for i, f in enumerate(outer) if f.endswith("trainbus::Trainer::Run")), None)
        if at is None:
            continue
        below = outer[at + 1:]
        for name in args.function:
            if any(name in f for f in below):
                functions[name] += 1
        text = " | ".join(below)
        if "Session::" in text or "Bus::" in text:
            parts["plugins and session"] += 1
            hook = next((f for f in below if HOOK.search(f)), below[-1] if below else "?")
            hooks[hook] += 1
        elif "ForwardBackward" in text:
            parts["model: forward and backward"] += 1
        elif "OptimizerStep" in text:
            parts["optimizer step"] += 1
        else:
            parts["rest of the loop (batches, ...)"] += 1
            rest[" < ".join(below[:3])] += 1
    total = sum(parts.values())
    if total == 0:
        sys.exit("profile-attribution: no sample inside trainbus::Trainer::Run")
    print(f"ms per trainer run ({args.runs} runs, {total} samples):")
    print(f"  {total * ms:9.2f}  Trainer::Run")
    for name, n in parts.most_common():
        print(f"  {n * ms:9.2f}  {name}")
    print("plugins and session, by the hook function below the bus (else the innermost function):")
    for name, n in hooks.most_common(args.top):
        print(f"  {n * ms:9.3f}  {name[:140]}")
    print("rest of the loop:")
    for name, n in rest.most_common(5):
        print(f"  {n * ms:9.3f}  {name[:140]}")
    if args.function:
        print("functions, callees included:")
        for name in args.function:
            print(f"  {functions[name] * ms:9.3f}  {name}")


if __name__ == "__main__":
    main()
