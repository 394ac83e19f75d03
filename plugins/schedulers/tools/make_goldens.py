#!/usr/bin/python3
"""Writes the golden learning-rate sequences the schedulers tests compare with.

Runs PyTorch's own torch.optim.lr_scheduler (Debian's python3-torch 1.13.1;
run it with /usr/bin/python3, the interpreter that package is installed for):

    /usr/bin/python3 plugins/schedulers/tools/make_goldens.py \
        [--out tests/schedulers/goldens/lr_goldens.txt]

Each case is a schedule config in the plugin's JSON form (PyTorch class name
and argument names), the param groups' initial lrs, a number of steps and, for
ReduceLROnPlateau, a synthetic metric sequence. The schedules are built the way
a Python program builds them: children of SequentialLR / ChainedScheduler
first, in order, on the same optimizer, then the parent. Then, for each step:
optimizer.step(); scheduler.step() (or scheduler.step(metric)), recording the
lr of every group.

File format (text, one item per line):
    case <name>
    config <JSON>
    lrs <lr of each group>
    metrics <count> <values...>
    steps <n> error_at <k or -1>
    <n + 1 lines: lr of each group after construction, then after each step>
    end
error_at is the 1-based index of the step() call that raised (the rows stop
before it). Doubles are printed with %.17g (exact round trip).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import warnings

import torch
from torch.optim import lr_scheduler

warnings.filterwarnings("ignore")

G1 = [0.1]
G2 = [0.1, 0.01]
G3 = [0.5, 0.05, 0.003]


def build(cfg, opt):
    """One schedule from its config, like the plugin's factory."""
    cfg = dict(cfg)
    kind = cfg.pop("type")
    cfg.pop("monitor", None)  # the plugin's own key
    if kind == "SequentialLR":
        subs = [build(c, opt) for c in cfg.pop("schedulers")]
        return lr_scheduler.SequentialLR(opt, subs, **cfg)
    if kind == "ChainedScheduler":
        subs = [build(c, opt) for c in cfg.pop("schedulers")]
        return lr_scheduler.ChainedScheduler(subs)
    # JSON numbers: PyTorch checks some arguments are int and others float.
    for key in ("step_size", "total_iters", "T_max", "T_0", "T_mult", "total_steps", "epochs",
                "steps_per_epoch", "patience", "cooldown"):
        if key in cfg and isinstance(cfg[key], float) and cfg[key].is_integer():
            cfg[key] = int(cfg[key])
    if "pct_start" in cfg:
        cfg["pct_start"] = float(cfg["pct_start"])
    return getattr(lr_scheduler, kind)(opt, **cfg)


def metric_sequence(n, seed, kind):
    """Deterministic synthetic metric: trends, plateaus, noise and spikes."""
    state = seed
    out = []
    for t in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        noise = ((state >> 11) / float(1 << 53)) - 0.5
        if kind == "loss":  # decreasing, with flat stretches
            base = 2.0 / (1.0 + t / 50.0)
            if 200 <= t < 400 or 600 <= t < 900:
                base = 2.0 / (1.0 + 200 / 50.0)
            out.append(base + 0.02 * noise)
        elif kind == "acc":  # increasing to a ceiling, for mode max
            out.append(min(0.95, 0.3 + t / 1500.0) + 0.01 * noise)
        elif kind == "steps":  # piecewise constant with exact ties
            out.append(float(10 - (t // 37) % 7))
        else:  # pure noise around 1
            out.append(1.0 + noise)
    return out


def cases():
    c = []

    def add(name, config, lrs, steps, metrics=None):
        c.append((name, config, lrs, steps, metrics))

    add("step_30_0.1", {"type": "StepLR", "step_size": 30, "gamma": 0.1}, G2, 1000)
    add("step_7_0.5", {"type": "StepLR", "step_size": 7, "gamma": 0.5}, G3, 1000)
    add("step_100_default", {"type": "StepLR", "step_size": 100}, G1, 1000)
    add("step_1_0.999", {"type": "StepLR", "step_size": 1, "gamma": 0.999}, G3, 1200)
    add("multistep_3", {"type": "MultiStepLR", "milestones": [100, 300, 700], "gamma": 0.1}, G2, 1000)
    add("multistep_4", {"type": "MultiStepLR", "milestones": [5, 10, 500, 999], "gamma": 0.5}, G3, 1000)
    add("multistep_zero", {"type": "MultiStepLR", "milestones": [0, 50]}, G1, 1000)
    add("constant_default", {"type": "ConstantLR"}, G2, 1000)
    add("constant_0.5_200", {"type": "ConstantLR", "factor": 0.5, "total_iters": 200}, G3, 1000)
    add("constant_0.1_0", {"type": "ConstantLR", "factor": 0.1, "total_iters": 0}, G1, 1000)
    add("linear_default", {"type": "LinearLR"}, G2, 1000)
    add("linear_warmup_500", {"type": "LinearLR", "start_factor": 0.01, "end_factor": 1.0,
                              "total_iters": 500}, G3, 1000)
    add("linear_decay_900", {"type": "LinearLR", "start_factor": 1.0, "end_factor": 0.1,
                             "total_iters": 900}, G1, 1000)
    add("linear_to_zero", {"type": "LinearLR", "start_factor": 0.25, "end_factor": 0.0,
                           "total_iters": 1000}, G2, 1100)
    add("exp_0.99", {"type": "ExponentialLR", "gamma": 0.99}, G2, 1000)
    add("exp_0.999", {"type": "ExponentialLR", "gamma": 0.999}, G3, 1500)
    add("exp_1", {"type": "ExponentialLR", "gamma": 1.0}, G1, 1000)
    add("poly_default", {"type": "PolynomialLR"}, G2, 1000)
    add("poly_800_2", {"type": "PolynomialLR", "total_iters": 800, "power": 2.0}, G3, 1000)
    add("poly_1000_0.5", {"type": "PolynomialLR", "total_iters": 1000, "power": 0.5}, G1, 1100)
    add("poly_1200_1", {"type": "PolynomialLR", "total_iters": 1200, "power": 1.0}, G2, 1200)
    add("cos_1000", {"type": "CosineAnnealingLR", "T_max": 1000}, G2, 1300)
    add("cos_100_min", {"type": "CosineAnnealingLR", "T_max": 100, "eta_min": 0.001}, G3, 1000)
    add("cos_3", {"type": "CosineAnnealingLR", "T_max": 3, "eta_min": 0.0001}, G1, 1000)
    add("cos_777", {"type": "CosineAnnealingLR", "T_max": 777, "eta_min": 0.002}, G2, 2000)
    add("warm_10", {"type": "CosineAnnealingWarmRestarts", "T_0": 10}, G2, 1000)
    add("warm_50_2", {"type": "CosineAnnealingWarmRestarts", "T_0": 50, "T_mult": 2,
                      "eta_min": 0.0001}, G3, 1000)
    add("warm_1_3", {"type": "CosineAnnealingWarmRestarts", "T_0": 1, "T_mult": 3}, G1, 1000)
    add("cyclic_tri", {"type": "CyclicLR", "base_lr": 0.001, "max_lr": 0.1, "step_size_up": 200,
                       "cycle_momentum": False}, G1, 1000)
    add("cyclic_tri2", {"type": "CyclicLR", "base_lr": [0.001, 0.0001], "max_lr": [0.1, 0.01],
                        "step_size_up": 100, "step_size_down": 50, "mode": "triangular2"}, G2, 1000)
    add("cyclic_exp", {"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.2, "step_size_up": 75,
                       "mode": "exp_range", "gamma": 0.999}, G3, 1000)
    add("cyclic_frac", {"type": "CyclicLR", "base_lr": 0.002, "max_lr": 0.05, "step_size_up": 33.5,
                        "step_size_down": 61}, G2, 1000)
    add("onecycle_cos", {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 1000}, G2, 1000)
    add("onecycle_linear_3", {"type": "OneCycleLR", "max_lr": [0.5, 0.05, 0.01], "total_steps": 1200,
                              "anneal_strategy": "linear", "three_phase": True}, G3, 1200)
    add("onecycle_epochs", {"type": "OneCycleLR", "max_lr": 0.2, "epochs": 10, "steps_per_epoch": 100,
                            "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}, G1, 1000)
    add("onecycle_cos_3", {"type": "OneCycleLR", "max_lr": [0.3, 0.03], "total_steps": 1000,
                           "three_phase": True, "pct_start": 0.4}, G2, 1000)
    # Steps total_steps times (allowed), then once more: PyTorch raises.
    add("onecycle_past_end", {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 1000,
                              "anneal_strategy": "linear"}, G1, 1005)
    add("plateau_default", {"type": "ReduceLROnPlateau"}, G2, 1000,
        metric_sequence(1000, 1, "loss"))
    add("plateau_max_abs", {"type": "ReduceLROnPlateau", "mode": "max", "threshold_mode": "abs",
                            "threshold": 0.01, "patience": 3, "cooldown": 5,
                            "min_lr": [0.0001, 0.00001]}, G2, 1000, metric_sequence(1000, 2, "acc"))
    add("plateau_min_abs", {"type": "ReduceLROnPlateau", "threshold_mode": "abs", "threshold": 0.001,
                            "patience": 0, "cooldown": 2, "factor": 0.5, "min_lr": 0.001}, G3, 1000,
        metric_sequence(1000, 3, "loss"))
    add("plateau_eps", {"type": "ReduceLROnPlateau", "factor": 0.9, "patience": 2, "eps": 0.0005},
        [0.02, 0.005], 1000, metric_sequence(1000, 4, "noise"))
    add("plateau_max_rel", {"type": "ReduceLROnPlateau", "mode": "max", "threshold": 0.1,
                            "patience": 5, "factor": 0.7}, G3, 1000, metric_sequence(1000, 5, "steps"))
    add("plateau_ties", {"type": "ReduceLROnPlateau", "threshold": 0.0, "patience": 4, "cooldown": 1,
                         "factor": 0.8, "min_lr": 1e-6}, G1, 1000, metric_sequence(1000, 6, "steps"))
    add("seq_warmup_cos", {"type": "SequentialLR", "milestones": [500], "schedulers": [
        {"type": "LinearLR", "start_factor": 0.01, "total_iters": 500},
        {"type": "CosineAnnealingLR", "T_max": 1000}]}, G2, 1600)
    add("seq_const_exp", {"type": "SequentialLR", "milestones": [2], "schedulers": [
        {"type": "ConstantLR", "factor": 0.1, "total_iters": 2},
        {"type": "ExponentialLR", "gamma": 0.99}]}, G1, 1000)
    add("seq_three", {"type": "SequentialLR", "milestones": [100, 600], "schedulers": [
        {"type": "LinearLR", "start_factor": 0.1, "total_iters": 100},
        {"type": "StepLR", "step_size": 100, "gamma": 0.5},
        {"type": "CosineAnnealingWarmRestarts", "T_0": 50, "T_mult": 2}]}, G3, 1200)
    add("seq_onecycle_exp", {"type": "SequentialLR", "milestones": [500], "schedulers": [
        {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 500},
        {"type": "ExponentialLR", "gamma": 0.995}]}, G2, 1000)
    add("seq_linear_cyclic", {"type": "SequentialLR", "milestones": [200], "schedulers": [
        {"type": "LinearLR", "start_factor": 0.5, "total_iters": 200},
        {"type": "CyclicLR", "base_lr": 0.001, "max_lr": 0.05, "step_size_up": 100}]}, G2, 1000)
    add("seq_poly_multistep", {"type": "SequentialLR", "milestones": [300], "schedulers": [
        {"type": "PolynomialLR", "total_iters": 300, "power": 2.0},
        {"type": "MultiStepLR", "milestones": [100, 400], "gamma": 0.3}]}, G1, 1000)
    add("seq_cos_const_linear", {"type": "SequentialLR", "milestones": [400, 700], "schedulers": [
        {"type": "CosineAnnealingLR", "T_max": 400, "eta_min": 0.001},
        {"type": "ConstantLR", "factor": 0.5, "total_iters": 100},
        {"type": "LinearLR", "start_factor": 1.0, "end_factor": 0.05, "total_iters": 300}]}, G2, 1100)
    add("chain_const_exp", {"type": "ChainedScheduler", "schedulers": [
        {"type": "ConstantLR", "factor": 0.1, "total_iters": 20},
        {"type": "ExponentialLR", "gamma": 0.99}]}, G2, 1000)
    add("chain_linear_cos", {"type": "ChainedScheduler", "schedulers": [
        {"type": "LinearLR", "start_factor": 0.1, "total_iters": 100},
        {"type": "CosineAnnealingLR", "T_max": 1000, "eta_min": 0.0}]}, G3, 1000)
    add("chain_step_seq_multi", {"type": "ChainedScheduler", "schedulers": [
        {"type": "StepLR", "step_size": 50, "gamma": 0.9},
        {"type": "SequentialLR", "milestones": [100], "schedulers": [
            {"type": "LinearLR", "start_factor": 0.2, "total_iters": 100},
            {"type": "ExponentialLR", "gamma": 0.999}]},
        {"type": "MultiStepLR", "milestones": [300, 800], "gamma": 0.5}]}, G2, 1000)
    add("chain_warm_poly", {"type": "ChainedScheduler", "schedulers": [
        {"type": "CosineAnnealingWarmRestarts", "T_0": 100, "eta_min": 0.0},
        {"type": "PolynomialLR", "total_iters": 900, "power": 1.5}]}, G1, 1000)
    add("chain_cyclic_const", {"type": "ChainedScheduler", "schedulers": [
        {"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 50},
        {"type": "ConstantLR", "factor": 0.5, "total_iters": 300}]}, G2, 1000)
    return c


def fmt(v):
    return "%.17g" % v


def run_case(name, config, lrs, steps, metrics):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0],
                          momentum=0.9)
    sched = build(config, opt)
    rows = [[g["lr"] for g in opt.param_groups]]
    error_at = -1
    for t in range(steps):
        opt.step()
        try:
            if metrics is not None:
                sched.step(metrics[t])
            else:
                sched.step()
        except ValueError:
            error_at = t + 1
            break
        rows.append([g["lr"] for g in opt.param_groups])
    return rows, error_at


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.normpath(
        os.path.join(here, "..", "..", "..", "tests", "schedulers", "goldens", "lr_goldens.txt"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=default_out)
    args = ap.parse_args()
    if not torch.__version__.startswith("1.13."):
        print("warning: goldens are meant to come from PyTorch 1.13.x, this is", torch.__version__,
              file=sys.stderr)
    try:  # Debian's build reports __version__ 1.13.0a0; the package says 1.13.1
        package = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-torch"],
                                 capture_output=True, text=True).stdout.strip()
    except OSError:
        package = ""
    lines = ["# Golden lr sequences from torch.optim.lr_scheduler (torch %s%s)." % (
        torch.__version__, ", python3-torch " + package if package else ""),
             "# Made by plugins/schedulers/tools/make_goldens.py; do not edit."]
    n_rows = 0
    for name, config, lrs, steps, metrics in cases():
        rows, error_at = run_case(name, config, lrs, steps, metrics)
        lines.append("case " + name)
        lines.append("config " + json.dumps(config, separators=(",", ":")))
        lines.append("lrs " + " ".join(fmt(v) for v in lrs))
        m = metrics or []
        lines.append("metrics %d %s" % (len(m), " ".join(fmt(v) for v in m)))
        lines.append("steps %d error_at %d" % (steps, error_at))
        for r in rows:
            lines.append(" ".join(fmt(v) for v in r))
        lines.append("end")
        n_rows += len(rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d cases, %d rows, %d bytes" % (args.out, len(cases()), n_rows,
                                                     os.path.getsize(args.out)))


if __name__ == "__main__":
    main()
