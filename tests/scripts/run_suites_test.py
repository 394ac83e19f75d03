#!/usr/bin/env python3
"""Checks tools/sanitizers/run_suites.sh, which runs the C++ suites under the
sanitizers in the test command, on stand-in suite programs: one that passes,
one that fails, one that hangs (stopped after SUITE_TIMEOUT and named), and
that arguments reach every suite.

    python3 tests/scripts/run_suites_test.py
"""

import os
import stat
import subprocess
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                      "sanitizers", "run_suites.sh")

PASSING = """#!/bin/sh
echo "[ RUN      ] A.B args=$*"
echo "[  PASSED  ] 3 tests."
"""
FAILING = """#!/bin/sh
echo "[ RUN      ] Failing.Case"
echo "==1==ERROR: AddressSanitizer: heap-use-after-free"
echo "[  FAILED  ] Failing.Case"
exit 1
"""
# Stands for a suite stuck in a test: it never ends by itself.
HANGING = """#!/bin/sh
echo "[ RUN      ] Stuck.Forever"
exec sleep 600
"""
# The same, deaf to SIGTERM (the signal stays ignored across exec).
DEAF = """#!/bin/sh
trap '' TERM
echo "[ RUN      ] Deaf.Forever"
exec sleep 600
"""


class RunSuitesTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="run_suites_test_")
        self.addCleanup(self.dir.cleanup)
        self.logs = os.path.join(self.dir.name, "logs")

    def suite(self, name, text):
        folder = os.path.join(self.dir.name, name)
        os.makedirs(folder)
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
        return path

    def run_suites(self, *argv, timeout_s="900", jobs="2", bound_s=300):
        env = dict(os.environ, SUITE_TIMEOUT=timeout_s, JOBS=jobs)
        # The hang is stopped after SUITE_TIMEOUT; bound_s only keeps a
        # broken script from holding up ctest (the stand-in sleeps 600 s).
        return subprocess.run(["bash", SCRIPT, self.logs, *argv], capture_output=True, text=True,
                              env=env, timeout=bound_s)

    def assert_passed(self, result, *names):
        for name in names:
            self.assertIn("sanitizers: %s: [  PASSED  ] 3 tests." % name, result.stdout)

    def test_passing_suites_exit_zero_and_each_says_so(self):
        a = self.suite("a_test", PASSING)
        b = self.suite("b_test", PASSING)
        r = self.run_suites(a, b)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assert_passed(r, "a_test", "b_test")

    def test_arguments_after_the_separator_reach_every_suite(self):
        a = self.suite("a_test", PASSING)
        b = self.suite("b_test", PASSING)
        r = self.run_suites(a, b, "--", "--gtest_filter=Bus*")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name in ("a_test", "b_test"):
            with open(os.path.join(self.logs, name + ".log")) as f:
                self.assertIn("args=--gtest_filter=Bus*", f.read())

    def test_a_failing_suite_fails_the_run_with_its_error_lines(self):
        a = self.suite("a_test", PASSING)
        c = self.suite("c_test", FAILING)
        r = self.run_suites(a, c)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assert_passed(r, "a_test")
        self.assertIn("sanitizers: c_test FAILED (exit 1", r.stdout)
        self.assertIn("  ==1==ERROR: AddressSanitizer: heap-use-after-free", r.stdout)
        self.assertIn("  [  FAILED  ] Failing.Case", r.stdout)

    def test_a_hanging_suite_is_stopped_and_named_and_the_others_still_run(self):
        h = self.suite("h_test", HANGING)
        a = self.suite("a_test", PASSING)
        b = self.suite("b_test", PASSING)
        r = self.run_suites(h, a, b, timeout_s="2")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("sanitizers: h_test TIMED OUT: still running after 2 s (SUITE_TIMEOUT)",
                      r.stdout)
        self.assertIn("sanitizers: h_test FAILED (exit 124", r.stdout)
        # Its log's tail says where it was stuck, though no error line matched.
        self.assertIn("  | [ RUN      ] Stuck.Forever", r.stdout)
        self.assert_passed(r, "a_test", "b_test")
        # Beside it, not after it: they finished while it hung.
        self.assertLess(r.stdout.index("sanitizers: b_test:"), r.stdout.index("h_test TIMED OUT"))

    def test_a_suite_deaf_to_sigterm_is_killed_and_named(self):
        d = self.suite("d_test", DEAF)
        r = self.run_suites(d, timeout_s="1")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("sanitizers: d_test KILLED: it ignored SIGTERM after SUITE_TIMEOUT (1 s)",
                      r.stdout)
        self.assertIn("sanitizers: d_test FAILED (exit 137", r.stdout)

    def test_no_suites_is_a_usage_error(self):
        r = self.run_suites(bound_s=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage:", r.stderr)
        r = self.run_suites("--", "--gtest_filter=Bus*", bound_s=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn('no suite programs given before "--"', r.stderr)
        a = self.suite("a_test", PASSING)
        r = self.run_suites(a, jobs="0", bound_s=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("JOBS must be a whole number >= 1, got '0'", r.stderr)


if __name__ == "__main__":
    unittest.main()
