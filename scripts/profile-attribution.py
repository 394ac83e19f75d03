#!/usr/bin/env python3
"""Reads `perf script -F ip,sym` of a trainer benchmark (scripts/profile-trainer.sh)
and prints, in milliseconds per trainer run, where the samples inside
trainbus::Trainer::Run went: the model's forward and backward, the optimizer
step, the plugins and the session (by the outermost hook function below the
bus, or the innermost function when no hook is on the stack), and the rest.
--function NAME prints the total of each function whose name contains NAME,
with what it calls, wherever it is on the stack inside Trainer::Run.
--bare-runs N also splits the bare loop's samples (RunBareLoop, N runs) into
the LibTorch calls both loops make, beside the trainer's: whether the same
model work costs the same CPU in both (the wall-clock `model_ratio` of the
paired bench is too noisy to say).

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


# The LibTorch work both loops do, by a function on the sample's stack (first match).
MODEL_WORK = (
    ("forward", ("SequentialImpl::forward", "AnyModule")),
    ("loss", ("cross_entropy",)),
    ("backward", ("autograd::Engine", "run_backward", "autograd::backward")),
    ("optimizer step", ("SGD::step",)),
    ("zero_grad", ("zero_grad",)),
    ("loss.item()", ("_local_scalar_dense",)),
    ("batches (index_select, slice)", ("index_select", "at::Tensor::slice")),
)


def model_work(text):
    """The MODEL_WORK name of a stack below a loop's function (its frames joined
    by " | "), or None."""
    if "RecordModelGraph" in text:  # the tensorboard plugin's own forward pass
        return None
    for name, markers in MODEL_WORK:
        if any(m in text for m in markers):
            return name
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, required=True, help="trainer runs in the profile")
    parser.add_argument("--hz", type=float, required=True, help="perf's sampling frequency")
    parser.add_argument("--top", type=int, default=15, help="hook functions to list")
    parser.add_argument("--function", action="append", default=[],
                        help="also print this function's total, callees included (repeatable)")
    parser.add_argument("--bare-runs", type=int, default=0,
                        help="bare loop runs in the profile: compare their LibTorch work")
    args = parser.parse_args()
    ms = 1000.0 / args.hz / args.runs  # one sample, in ms per run

    parts = collections.Counter()
    hooks = collections.Counter()
    rest = collections.Counter()
    functions = collections.Counter()
    work = {"bare": collections.Counter(), "trainer": collections.Counter()}
    for frames in stacks(sys.stdin):
        outer = list(reversed(frames))  # root first
        if args.bare_runs:
            loop = next((i for i, f in enumerate(outer) if f.endswith("RunBareLoop")), None)
            if loop is not None:
                work["bare"][model_work(" | ".join(outer[loop + 1:]))] += 1
                continue
        at = next((i for i, f in enumerate(outer) if f.endswith("trainbus::Trainer::Run")), None)
        if at is None:
            continue
        below = outer[at + 1:]
        text = " | ".join(below)
        work["trainer"][model_work(text)] += 1
        for name in args.function:
            if any(name in f for f in below):
                functions[name] += 1
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
    if args.bare_runs:
        bare_ms = 1000.0 / args.hz / args.bare_runs
        print(f"the same LibTorch calls, ms per run: bare loop ({args.bare_runs} runs), trainer:")
        for name, _ in MODEL_WORK:
            b, t = work["bare"][name] * bare_ms, work["trainer"][name] * ms
            ratio = f"{t / b:6.3f}" if b else "     -"
            print(f"  {b:9.2f}  {t:9.2f}  {ratio}  {name}")
    if args.function:
        print("functions, callees included:")
        for name in args.function:
            print(f"  {functions[name] * ms:9.3f}  {name}")


if __name__ == "__main__":
    main()
