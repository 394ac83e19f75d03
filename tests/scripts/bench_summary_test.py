#!/usr/bin/env python3
"""Checks scripts/bench-summary.py's confidence interval of a median against
the order statistics that statistics tables give (n = 30: the 10th and 21st;
n = 100: the 40th and 61st), and its paired-benchmark lines on a small JSON.

    python3 tests/scripts/bench_summary_test.py
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "bench-summary.py")


def load():
    spec = importlib.util.spec_from_file_location("bench_summary", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class MedianIntervalTest(unittest.TestCase):
    def setUp(self):
        self.m = load()

    def test_thirty_repetitions_use_the_10th_and_21st(self):
        values = [float(v) for v in range(30, 0, -1)]  # unsorted on purpose
        self.assertEqual(self.m.median_interval(values), (10.0, 21.0, 10))

    def test_a_hundred_repetitions_use_the_40th_and_61st(self):
        self.assertEqual(self.m.median_interval(list(range(1, 101))), (40, 61, 40))

    def test_six_repetitions_need_the_whole_range(self):
        self.assertEqual(self.m.median_interval([3, 1, 2, 6, 5, 4]), (1, 6, 1))

    def test_five_repetitions_are_too_few(self):
        self.assertIsNone(self.m.median_interval([1, 2, 3, 4, 5]))
        self.assertIn("too few repetitions", self.m.percent_interval("x", [1, 1, 1, 1, 1]))


class PairedOutputTest(unittest.TestCase):
    def test_a_paired_benchmark_gets_an_interval_per_ratio_it_has(self):
        reps = [{"name": "BM_PairedX", "run_name": "BM_PairedX", "run_type": "iteration",
                 "real_time": 1.0, "time_unit": "ms", "ratio": 1.0 + i / 100.0,
                 "model_p50_ratio": 1.0 + i / 100.0, "added_ms": float(i), "bare_ms": 100.0}
                for i in range(1, 31)]
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "paired.json")
            with open(path, "w") as f:
                json.dump({"context": {}, "benchmarks": reps}, f)
            out = subprocess.run([sys.executable, SCRIPT, path], capture_output=True, text=True,
                                 check=True).stdout
        # Medians +15.5 %; the 10th and 21st values are +10 % and +21 %.
        self.assertIn("variant / bare loop: median +15.50 %, 95 % confidence interval of the "
                      "median [+10.00, +21.00] %", out)
        self.assertIn("time added outside the model's work, / bare loop: median +15.50 %", out)
        self.assertIn("one iteration's model work at its median, variant / bare loop: "
                      "median +15.50 %", out)
        # No model_ratio in these repetitions: no line for it.
        self.assertNotIn("the model's own work", out)


if __name__ == "__main__":
    unittest.main()
