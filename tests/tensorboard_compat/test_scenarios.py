"""TensorBoard compatibility scenarios.

Each class runs `trainbus` for real into a temp log root (a fresh run, a
resume, a kill, an interrupt, an early stop, a failure, two ranks, two runs,
the embedding example, a live read) and checks what the real TensorBoard
shows through both of its loaders (the Python EventMultiplexer and the Rust
data server), against what the scenario must give and against
`trainbus inspect --json`.

Every class also runs the common checks (the Scenario mixin) on every state
it captured: both loaders show the same runs, tags, steps, wall times and
values; every tag's steps strictly increase; inspect's per-tag counts equal
what each loader shows; images and audio decode; the HParams dashboard shows
the same in both loaders; every Custom Scalars regex resolves.

Classes are independent (own temp dir, own servers), so each can be its own
ctest test:
  TRAINBUS_BIN=build/bin/trainbus TRAINBUS_SOURCE_DIR=. \\
    build/test-tools/venv/bin/python -m unittest tests/tensorboard_compat/test_scenarios.py -v
Set TBCOMPAT_KEEP=1 to keep the temp dirs and TensorBoard logs.
"""

import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tbcompat as tb  # noqa: E402

LOADERS = ("python", "fast")
# inspect's kinds -> the dashboard that shows them as points (a video is an
# animated GIF in the Images dashboard).
DASHBOARD_OF_KIND = {"scalar": "scalars", "histogram": "histograms", "image": "images",
                     "video": "images", "text": "text", "pr_curve": "pr_curves", "audio": "audio"}
RUN = "shapes-cnn"          # the default example's run name
ITERS_PER_EPOCH = 63        # 4000 samples, batch 64
# One progress line per iteration, so a test can signal trainbus at a known point.
PROGRESS_EVERY_ITERATION = ("plugins.progress.options.mode=lines",
                            "plugins.progress.options.every_n_iterations=1")


class Phase:
    """One captured state of the log root: both loaders' snapshots and inspect."""

    def __init__(self, label, snaps, report, runs_on_disk):
        self.label = label
        self.snaps = snaps
        self.report = report
        self.runs_on_disk = runs_on_disk

    def loader_name(self, loader):
        return self.snaps[loader].loader


def canonical(x):
    """JSON value with every list sorted, for order-insensitive comparison."""
    if isinstance(x, dict):
        return {k: canonical(v) for k, v in x.items()}
    if isinstance(x, list):
        return sorted((canonical(v) for v in x), key=lambda v: json.dumps(v, sort_keys=True))
    return x


def json_diff(a, b, path="", out=None, limit=8):
    """Where two JSON values differ, as 'path: a != b' lines."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append("%s/%s: %s" % (path, k, "only in the data server" if k in b
                                          else "only in the Python loader"))
            else:
                json_diff(a[k], b[k], "%s/%s" % (path, k), out, limit)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            json_diff(x, y, "%s[%d]" % (path, i), out, limit)
    elif a != b:
        out.append("%s: %s != %s" % (path or "/", json.dumps(a)[:200], json.dumps(b)[:200]))
    return out


def same_value(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def close(a, b):
    """Histogram buckets: the two loaders compute bucket edges with different
    float precision (seen: ~1e-8 relative), so numbers compare to 1e-6."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def compare_points(kind, py, fast):
    """'' when both loaders show the same points, else what differs."""
    sp, sf = [p[0] for p in py], [p[0] for p in fast]
    if sp != sf:
        return ("steps differ: Python loader %s; data server %s"
                % (tb.diff_steps(sp, sf), tb.diff_steps(sf, sp)))
    bad = []
    for a, b in zip(py, fast):
        if a[1] != b[1]:
            bad.append("step %d wall_time %r (Python) vs %r (data server)" % (a[0], a[1], b[1]))
        if kind in ("histograms", "distributions"):
            if not close(a[2], b[2]):
                bad.append("step %d buckets %s vs %s" % (a[0], str(a[2])[:160], str(b[2])[:160]))
        elif not all(same_value(x, y) for x, y in zip(a[2:], b[2:])):
            bad.append("step %d value %s (Python) vs %s (data server)"
                       % (a[0], str(a[2:])[:160], str(b[2:])[:160]))
    if not bad:
        return ""
    return "%d of %d points differ: %s" % (len(bad), len(py), "; ".join(bad[:5]))


def parse_hparam_text(text):
    """As the tensorboard plugin types an hparam: number, bool, else text."""
    if text in ("true", "false"):
        return text == "true"
    try:
        return float(text)
    except ValueError:
        return text


def config_table(html):
    """{hyperparameter: value} from the rendered run/config text."""
    rows = re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*</tr>", html, re.S)
    return {k.strip(): parse_hparam_text(v.strip()) for k, v in rows}


class Scenario:
    """Mixin for a scenario class (with unittest.TestCase).

    A subclass defines run_scenario() (a classmethod) which trains and calls
    capture(label) for every state to check; the common checks below run on
    every captured phase.
    """

    phases = []

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Fails (never skips) with the setup hint when the venv is missing.
        tb.cached_tensorboard_command()
        tb.check_trainbus()
        cls.tmp = Path(tempfile.mkdtemp(prefix="tbcompat-%s-" % cls.__name__))
        if not os.environ.get("TBCOMPAT_KEEP"):
            cls.addClassCleanup(shutil.rmtree, str(cls.tmp), True)
        cls.root = cls.tmp / "runs"
        cls.phases = []
        cls.results = {}
        started = time.monotonic()
        cls.run_scenario()
        cls.seconds = time.monotonic() - started
        sys.stderr.write("\n[%s: scenario and loading took %.1f s]\n" % (cls.__name__, cls.seconds))

    # -- scenario building blocks

    @classmethod
    def train(cls, key, *sets, timeout=120, **kwargs):
        result = tb.run_trainbus(tb.train_args(cls.root, *sets, **kwargs), timeout=timeout)
        cls.results[key] = result
        return result

    @classmethod
    def capture(cls, label, expect=None, root=None):
        root = root or cls.root
        runs = tb.event_runs(root)
        snaps = tb.load_both(root, runs, expect)
        phase = Phase(label, snaps, tb.inspect(root), runs)
        cls.phases.append(phase)
        return phase

    def phase(self, label):
        for ph in self.phases:
            if ph.label == label:
                return ph
        self.fail("no phase %r was captured (captured: %s)" % (label, [p.label for p in self.phases]))

    # -- assertion helpers (each collects every problem, then fails once)

    def report(self, problems, context=""):
        if problems:
            self.fail("%s%d problem(s):\n  %s" % (context, len(problems), "\n  ".join(problems)))

    def points(self, ph, loader, kind, run, tag):
        return ph.snaps[loader].series[kind].get(run, {}).get(tag)

    def expect_steps(self, ph, run, tag, expected, kind="scalars", problems=None):
        """Both loaders show exactly these steps for the tag (each once, in order)."""
        own = problems is None
        problems = [] if own else problems
        expected = list(expected)
        found = {}
        for loader in LOADERS:
            pts = self.points(ph, loader, kind, run, tag)
            if pts is None:
                found[loader] = "missing (the run's %s tags: %s)" % (kind, ph.snaps[loader].tags(kind, run))
                continue
            steps = [p[0] for p in pts]
            if steps != expected:
                found[loader] = "expected steps %s (%d points); shows %s" % (
                    tb.compress_ranges(expected), len(expected), tb.diff_steps(steps, expected))
        # One line when both loaders show the same problem.
        if len(found) == len(LOADERS) and len(set(found.values())) == 1:
            problems.append("[%s] both loaders, run %r, %s tag %r: %s"
                            % (ph.label, run, kind, tag, found[LOADERS[0]]))
        else:
            for loader, text in found.items():
                problems.append("[%s] %s, run %r, %s tag %r: %s"
                                % (ph.label, ph.loader_name(loader), run, kind, tag, text))
        if own:
            self.report(problems)
        return problems

    def expect_whole_run_once(self, result_key, label):
        """The run `result_key` exited 0 and phase `label` shows the whole
        default run: every iteration's tags at every step, the epoch-end tags
        at every epoch end (an interrupted epoch ends once, after the resume)."""
        r = self.results[result_key]
        self.assertEqual(r.returncode, 0, r.describe())
        ph = self.phase(label)
        problems = []
        for tag in ("train/loss", "train/accuracy", "lr/group0"):
            self.expect_steps(ph, RUN, tag, range(self.EPOCHS * ITERS_PER_EPOCH), problems=problems)
        for tag in ("val/loss", "val/accuracy", "epoch/mean_loss"):
            self.expect_steps(ph, RUN, tag, [ITERS_PER_EPOCH * (e + 1) - 1 for e in range(self.EPOCHS)],
                              problems=problems)
        self.report(problems)

    def shown_steps(self, ph, run, tag, kind="scalars", loader="fast"):
        pts = self.points(ph, loader, kind, run, tag)
        return [p[0] for p in pts] if pts else []

    def session(self, ph, loader, run):
        """(session group, session) of the HParams dashboard for a run."""
        for group in ph.snaps[loader].session_groups.get("sessionGroups", []):
            for s in group.get("sessions", []):
                if s.get("name") == run:
                    return group, s
        return None, None

    def config_hparams(self, ph, run, loader="python"):
        """The run's hyperparameters as its (latest) run/config text lists them."""
        pts = self.points(ph, loader, "text", run, "run/config")
        if not pts:
            self.fail("[%s] %s: run %r has no run/config text (text tags: %s)"
                      % (ph.label, ph.loader_name(loader), run, ph.snaps[loader].tags("text", run)))
        table = config_table(pts[-1][2])
        if not table:
            self.fail("[%s] run/config of %r has no hyperparameter table: %s" % (ph.label, run, pts[-1][2][:300]))
        return table

    def check_hparams(self, ph, run, status, values=None, metrics=("train/loss", "val/loss", "val/accuracy"),
                      problems=None):
        """The HParams dashboard (both loaders): the run's hparams are
        columns, `metrics` are metric columns, the run's session has `values`
        (default: its run/config table) and `status`; its metric values are
        the last point of each metric's scalar series."""
        own = problems is None
        problems = [] if own else problems
        values = self.config_hparams(ph, run) if values is None else values
        for loader in LOADERS:
            snap = ph.snaps[loader]
            where = "[%s] %s, HParams" % (ph.label, snap.loader)
            columns = {h["name"] for h in snap.experiment.get("hparamInfos", [])}
            missing = sorted(set(values) - columns)
            if missing:
                problems.append("%s: experiment lacks hparam columns %s of run %r (columns: %s)"
                                % (where, missing, run, sorted(columns)))
            metric_cols = {m["name"]["tag"] for m in snap.experiment.get("metricInfos", [])}
            missing = sorted(set(metrics) - metric_cols)
            if missing:
                problems.append("%s: experiment lacks metric columns %s (metrics: %s)"
                                % (where, missing, sorted(metric_cols)))
            group, sess = self.session(ph, loader, run)
            if sess is None:
                problems.append("%s: no session for run %r (sessions: %s)" % (
                    where, run, [s.get("name") for g in snap.session_groups.get("sessionGroups", [])
                                 for s in g.get("sessions", [])]))
                continue
            got = sess.get("status", "STATUS_UNKNOWN")
            if got != status:
                problems.append("%s: run %r has status %s, expected %s" % (where, run, got, status))
            for k, v in sorted(values.items()):
                if k not in group.get("hparams", {}):
                    problems.append("%s: run %r session has no value for hparam %r (expected %r)"
                                    % (where, run, k, v))
                elif not same_value(group["hparams"][k], v):
                    problems.append("%s: run %r hparam %r = %r, expected %r"
                                    % (where, run, k, group["hparams"][k], v))
            shown = {m["name"]["tag"]: m for m in sess.get("metricValues", [])}
            for m in metrics:
                series = snap.series["scalars"].get(run, {}).get(m)
                if not series:
                    continue  # reported by the scenario's own checks
                last_step, _, last_value = series[-1]
                if m not in shown:
                    problems.append("%s: run %r session shows no value for metric %r" % (where, run, m))
                elif shown[m].get("trainingStep") != last_step or not same_value(shown[m].get("value"), last_value):
                    problems.append("%s: run %r metric %r shows %r at step %r; its last scalar point is %r at step %d"
                                    % (where, run, m, shown[m].get("value"), shown[m].get("trainingStep"),
                                       last_value, last_step))
        if own:
            self.report(problems)
        return problems

    def compare_scalar_values(self, ref, got, run, ref_name, got_name, from_step=0):
        """Every scalar (but time/*, wall-clock measurements) at steps >=
        from_step: the same steps and bit-identical values in both phases."""
        problems = []
        for loader in LOADERS:
            want = ref.snaps[loader].series["scalars"].get(run, {})
            have = got.snaps[loader].series["scalars"].get(run, {})
            for tag in sorted(set(want) | set(have)):
                if tag.startswith("time/"):
                    continue
                a = {p[0]: p[2] for p in want.get(tag, []) if p[0] >= from_step}
                b = {p[0]: p[2] for p in have.get(tag, []) if p[0] >= from_step}
                only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
                differ = [(st, a[st], b[st]) for st in sorted(set(a) & set(b)) if not same_value(a[st], b[st])]
                if only_a or only_b or differ:
                    problems.append(
                        "%s, run %r, %s: steps only in the %s run %s; only in the %s run %s; %d value(s) differ%s"
                        % (ref.loader_name(loader), run, tag, ref_name, tb.compress_ranges(only_a), got_name,
                           tb.compress_ranges(only_b), len(differ),
                           (": " + ", ".join("step %%d: %%.9g (%s) vs %%.9g (%s)" % (ref_name, got_name) % d
                                             for d in differ[:4])) if differ else ""))
        return problems

    # -- the common checks, on every phase

    def test_common_loaders_show_the_same(self):
        """Both loaders: same runs, same tags of every kind, same points
        (step, wall_time, value; scalars exactly)."""
        problems = []
        for ph in self.phases:
            py, fast = ph.snaps["python"], ph.snaps["fast"]
            if sorted(py.runs) != sorted(fast.runs):
                problems.append("[%s] runs: Python loader %s, data server %s" % (ph.label, sorted(py.runs),
                                                                                 sorted(fast.runs)))
            if sorted(fast.runs) != ph.runs_on_disk:
                problems.append("[%s] runs with event files on disk %s, data server shows %s"
                                % (ph.label, ph.runs_on_disk, sorted(fast.runs)))
            for kind in tb.Snapshot.KINDS:
                for run in sorted(set(py.series[kind]) | set(fast.series[kind])):
                    pt, ft = py.series[kind].get(run, {}), fast.series[kind].get(run, {})
                    if set(pt) != set(ft):
                        problems.append("[%s] run %r %s tags only in the Python loader: %s; only in the data server: %s"
                                        % (ph.label, run, kind, sorted(set(pt) - set(ft)), sorted(set(ft) - set(pt))))
                    for tag in sorted(set(pt) & set(ft)):
                        d = compare_points(kind, pt[tag], ft[tag])
                        if d:
                            problems.append("[%s] run %r %s tag %r: %s" % (ph.label, run, kind, tag, d))
        self.report(problems)

    def test_common_steps_strictly_increase(self):
        """No tag of any kind shows a step twice or a step going back, in either loader."""
        problems = []
        for ph in self.phases:
            for loader in LOADERS:
                snap = ph.snaps[loader]
                for kind in tb.Snapshot.KINDS:
                    for run, tags in sorted(snap.series[kind].items()):
                        for tag, pts in sorted(tags.items()):
                            p = tb.step_problems([x[0] for x in pts])
                            if p:
                                problems.append("[%s] %s, run %r, %s tag %r (%d points): %s"
                                                % (ph.label, snap.loader, run, kind, tag, len(pts), p))
        self.report(problems)

    def test_common_inspect_counts_equal_tensorboard(self):
        """`trainbus inspect --json`: per tag, "count" = the data server's
        points, "count_legacy" = the Python loader's, no duplicate or
        backward steps, no corruption; and it lists every tag TensorBoard shows."""
        problems = []
        for ph in self.phases:
            rep = ph.report
            if rep.get("exit_code") != 0 or rep.get("corrupt"):
                problems.append("[%s] inspect exit code %s, corrupt %s, problems %s" % (
                    ph.label, rep.get("exit_code"), rep.get("corrupt"),
                    [p for r in rep.get("runs", []) for p in r.get("problems", [])][:5]))
            for run, tags in sorted(rep["by_run"].items()):
                for tag, e in sorted(tags.items()):
                    kind = DASHBOARD_OF_KIND.get(e.get("kind"))
                    if kind is None:
                        continue  # hparams, custom_scalars: not shown as points
                    for key, loader in (("count", "fast"), ("count_legacy", "python")):
                        pts = self.points(ph, loader, kind, run, tag) or []
                        if e.get(key) != len(pts):
                            problems.append(
                                "[%s] run %r %s tag %r: inspect %s=%s (written %s), %s shows %d point(s) (steps %s)"
                                % (ph.label, run, e.get("kind"), tag, key, e.get(key), e.get("written"),
                                   ph.loader_name(loader), len(pts), tb.compress_ranges([p[0] for p in pts])))
                    if e.get("duplicate_steps") or e.get("backward_steps"):
                        problems.append("[%s] run %r %s tag %r: inspect reports duplicate_steps=%s backward_steps=%s"
                                        " (written %s, count %s, count_legacy %s)"
                                        % (ph.label, run, e.get("kind"), tag, e.get("duplicate_steps"),
                                           e.get("backward_steps"), e.get("written"), e.get("count"),
                                           e.get("count_legacy")))
            for loader in LOADERS:
                snap = ph.snaps[loader]
                for kind in tb.Snapshot.KINDS:
                    if kind == "distributions":
                        continue  # the histograms, shown twice
                    for run, tags in snap.series[kind].items():
                        for tag in tags:
                            e = rep["by_run"].get(run, {}).get(tag)
                            if e is None or DASHBOARD_OF_KIND.get(e.get("kind")) != kind:
                                problems.append("[%s] %s shows %s tag %r of run %r; inspect has %s"
                                                % (ph.label, snap.loader, kind, tag, run,
                                                   "no such tag" if e is None else "kind %r" % e.get("kind")))
        self.report(problems)

    def test_common_images_and_audio_decode(self):
        problems = []
        for ph in self.phases:
            for loader in LOADERS:
                snap = ph.snaps[loader]
                problems += ["[%s] %s: %s" % (ph.label, snap.loader, e) for e in snap.blob_errors]
                for kind in ("images", "audio"):
                    for run, tags in snap.series[kind].items():
                        for tag, pts in tags.items():
                            for p in pts:
                                if p[2] is None:
                                    problems.append("[%s] %s: %s %r of run %r at step %d was not fetched"
                                                    % (ph.label, snap.loader, kind, tag, run, p[0]))
        self.report(problems)

    def test_common_hparams_same_in_both_loaders(self):
        problems = []
        for ph in self.phases:
            py, fast = ph.snaps["python"], ph.snaps["fast"]
            for what in ("experiment", "session_groups"):
                a, b = canonical(getattr(py, what)), canonical(getattr(fast, what))
                if a != b:
                    problems.append("[%s] HParams %s differs between the loaders: %s"
                                    % (ph.label, what, "; ".join(json_diff(a, b))))
        self.report(problems)

    def test_common_custom_scalars_regexes_resolve(self):
        """Every chart regex of the Custom Scalars layout matches at least one
        scalar tag of every run that wrote a layout (both loaders)."""
        problems = []
        for ph in self.phases:
            layout_runs = sorted(run for run, tags in ph.report["by_run"].items()
                                 if any(e.get("kind") == "custom_scalars" for e in tags.values()))
            for loader in LOADERS:
                snap = ph.snaps[loader]
                if layout_runs and not snap.layout.get("category"):
                    problems.append("[%s] %s: runs %s wrote a layout, the Custom Scalars layout is empty: %s"
                                    % (ph.label, snap.loader, layout_runs, snap.layout))
                for run in layout_runs:
                    for rx, (valid, tags) in sorted(snap.custom_scalar_matches.get(run, {}).items()):
                        if not valid or not tags:
                            problems.append("[%s] %s: Custom Scalars regex %r %s for run %r (its scalar tags: %s)"
                                            % (ph.label, snap.loader, rx, "is invalid" if not valid else
                                               "matches no tag", run, snap.tags("scalars", run)))
        self.report(problems)


# ---------------------------------------------------------------------------


class DefaultExampleTest(Scenario, unittest.TestCase):
    """The default example, 5 epochs x 63 iterations = steps 0..314."""

    STEPS = 315

    @classmethod
    def run_scenario(cls):
        cls.train("run")
        cls.capture("default run")

    def test_exit_code(self):
        r = self.results["run"]
        self.assertEqual(r.returncode, 0, r.describe())

    def test_train_loss_and_lr_every_step(self):
        ph = self.phase("default run")
        problems = []
        for tag in ("train/loss", "train/accuracy", "lr/group0"):
            self.expect_steps(ph, RUN, tag, range(self.STEPS), problems=problems)
        self.report(problems)

    def test_validation_once_per_epoch_end(self):
        ph = self.phase("default run")
        ends = [ITERS_PER_EPOCH * (e + 1) - 1 for e in range(5)]  # 62, 125, 188, 251, 314
        problems = []
        for tag in ("val/loss", "val/accuracy", "epoch/mean_loss"):
            self.expect_steps(ph, RUN, tag, ends, problems=problems)
        self.report(problems)

    def test_timing_every_10_steps(self):
        ph = self.phase("default run")
        problems = []
        for tag in ("time/iteration_ms", "time/samples_per_second"):
            self.expect_steps(ph, RUN, tag, range(9, self.STEPS, 10), problems=problems)
        self.report(problems)

    def test_histograms_and_distributions(self):
        ph = self.phase("default run")
        problems = []
        for kind in ("histograms", "distributions"):
            tags = sorted(set(ph.snaps["python"].tags(kind, RUN)) | set(ph.snaps["fast"].tags(kind, RUN)))
            for prefix in ("weights/", "grads/"):
                if not any(t.startswith(prefix) for t in tags):
                    problems.append("no %s tag %s* (tags: %s)" % (kind, prefix, tags))
            for tag in tags:
                # histograms_every_n is 50 in the example config: after every
                # 50th iteration (trainbus::EveryN), steps 49, 99, ...
                self.expect_steps(ph, RUN, tag, range(49, self.STEPS, 50), kind=kind, problems=problems)
                for loader in LOADERS:
                    for step, _, buckets in self.points(ph, loader, kind, RUN, tag) or []:
                        if not buckets or kind == "histograms" and sum(b[2] for b in buckets) <= 0:
                            problems.append("%s: %s %r at step %d is empty: %s"
                                            % (ph.loader_name(loader), kind, tag, step, buckets))
        self.report(problems)

    def test_inputs_image(self):
        """One image at step 0: the first 16 inputs (28x28) tiled 8 per row."""
        ph = self.phase("default run")
        n, cols = 16, 8
        rows = -(-n // cols)
        expected = (cols * 28, rows * 28)  # PIL size: (width, height)
        problems = []
        for loader in LOADERS:
            pts = self.points(ph, loader, "images", RUN, "inputs")
            if not pts:
                problems.append("%s: no image 'inputs' (image tags: %s)"
                                % (ph.loader_name(loader), ph.snaps[loader].tags("images", RUN)))
                continue
            if [p[0] for p in pts] != [0]:
                problems.append("%s: image 'inputs' at steps %s, expected [0]" % (ph.loader_name(loader), [p[0] for p in pts]))
            info = pts[0][2]
            if info is None or info[1] != "PNG" or tuple(info[2]) != expected:
                problems.append("%s: image 'inputs' decodes as %s, expected a PNG of %dx%d"
                                % (ph.loader_name(loader), info and info[:3], expected[0], expected[1]))
        self.report(problems)

    def test_graph_projector_and_video(self):
        """The model graph (Graphs), the last validation's outputs (Projector)
        and the video of the first 16 iterations' inputs (Images)."""
        ph = self.phase("default run")
        problems = []
        for loader in LOADERS:
            snap, name = ph.snaps[loader], ph.loader_name(loader)
            nodes = snap.graphs.get(RUN)
            if not nodes:
                problems.append("%s: no run graph (graph runs: %s)" % (name, sorted(snap.graphs)))
            else:
                conv = nodes.get("Sequential/Conv2d[0]/convolution")
                # The default CNN: conv 3x3 1 -> 8 channels on the first batch of 64.
                if conv is None or conv[1][0] != "input" or conv[2] != [64, 8, 28, 28]:
                    problems.append("%s: graph node Sequential/Conv2d[0]/convolution is %s"
                                    % (name, conv))
                out = nodes.get("output")
                if out is None or out[2] != [64, 6]:
                    problems.append("%s: graph output is %s, expected shape [64, 6]" % (name, out))
                for n, (_, inputs, _) in nodes.items():
                    problems += ["%s: graph node %r reads %r, which is no node" % (name, n, i)
                                 for i in inputs if i not in nodes]
            embeddings = {e["tensorName"]: e for e in snap.projector.get(RUN, [])}
            e = embeddings.get("val/outputs:00314")
            if e is None or e.get("tensorShape") != [256, 6] or \
                    e.get("sprite", {}).get("singleImageDim") != [28, 28]:
                problems.append("%s: Projector embedding val/outputs:00314 is %s (all: %s)"
                                % (name, e, sorted(embeddings)))
            pts = self.points(ph, loader, "images", RUN, "inputs/video")
            if not pts or [p[0] for p in pts] != [0] or pts[0][2] is None or \
                    pts[0][2][1] != "GIF" or tuple(pts[0][2][2]) != (28, 28):
                problems.append("%s: inputs/video is %s, expected one 28x28 GIF at step 0"
                                % (name, pts))
        self.report(problems)

    def test_run_config_text(self):
        ph = self.phase("default run")
        problems = []
        for loader in LOADERS:
            pts = self.points(ph, loader, "text", RUN, "run/config")
            if not pts:
                problems.append("%s: no text run/config" % ph.loader_name(loader))
                continue
            html = pts[-1][2]
            table = config_table(html)
            if [p[0] for p in pts] != [0]:
                problems.append("%s: run/config at steps %s, expected [0]" % (ph.loader_name(loader), [p[0] for p in pts]))
            if table.get("optimizer") != "sgd" or table.get("epochs") != 5 or table.get("momentum") != 0.9:
                problems.append("%s: run/config does not render the config's hyperparameters: %s"
                                % (ph.loader_name(loader), table))
            if "315 iterations in total" not in html:
                problems.append("%s: run/config does not state the plan: %s" % (ph.loader_name(loader), html[-200:]))
        self.report(problems)

    def test_hparams(self):
        ph = self.phase("default run")
        values = self.config_hparams(ph, RUN)
        problems = []
        for k, v in (("optimizer", "sgd"), ("epochs", 5.0), ("lr", 0.05), ("momentum", 0.9)):
            if values.get(k) != v:
                problems.append("run/config lists %s=%r, the config says %r" % (k, values.get(k), v))
        self.check_hparams(ph, RUN, "STATUS_SUCCESS", values, problems=problems)
        self.report(problems)

    def test_custom_scalars_layout(self):
        ph = self.phase("default run")
        problems = []
        for loader in LOADERS:
            layout = ph.snaps[loader].layout
            titles = [c.get("title") for cat in layout.get("category", []) for c in cat.get("chart", [])]
            for t in ("loss: train vs val", "accuracy: train vs val", "learning rate"):
                if t not in titles:
                    problems.append("%s: Custom Scalars chart %r missing (charts: %s)" % (ph.loader_name(loader), t, titles))
        self.report(problems)


class ResumeMoreEpochsTest(Scenario, unittest.TestCase):
    """3 epochs, then --resume with trainer.epochs=5: one run, steps 0..314 once."""

    @classmethod
    def run_scenario(cls):
        cls.train("first", "trainer.epochs=3")
        cls.capture("after 3 epochs")
        cls.train("resume", "trainer.epochs=5", resume=cls.root / RUN / "checkpoints")
        cls.capture("after the resume to 5 epochs")

    def test_exit_codes(self):
        for key in ("first", "resume"):
            self.assertEqual(self.results[key].returncode, 0, self.results[key].describe())

    def test_first_session(self):
        ph = self.phase("after 3 epochs")
        problems = self.expect_steps(ph, RUN, "train/loss", range(3 * ITERS_PER_EPOCH), problems=[])
        self.check_hparams(ph, RUN, "STATUS_SUCCESS", problems=problems)
        self.report(problems)

    def test_each_step_once_after_resume(self):
        ph = self.phase("after the resume to 5 epochs")
        problems = []
        for tag in ("train/loss", "train/accuracy", "lr/group0"):
            self.expect_steps(ph, RUN, tag, range(5 * ITERS_PER_EPOCH), problems=problems)
        for tag in ("val/loss", "val/accuracy", "epoch/mean_loss"):
            self.expect_steps(ph, RUN, tag, [ITERS_PER_EPOCH * (e + 1) - 1 for e in range(5)], problems=problems)
        self.report(problems)

    def test_hparams_show_the_resumed_session(self):
        ph = self.phase("after the resume to 5 epochs")
        values = self.config_hparams(ph, RUN)
        problems = []
        if values.get("epochs") != 5:
            problems.append("the latest run/config text lists epochs=%r, expected 5" % values.get("epochs"))
        values["epochs"] = 5.0
        self.check_hparams(ph, RUN, "STATUS_SUCCESS", values, problems=problems)
        self.report(problems)


class ResumeOlderCheckpointTest(Scenario, unittest.TestCase):
    """A finished run resumed from an older checkpoint: each step once, and
    from the resume step on the points are the second session's."""

    KEEP = ("plugins.checkpoint.options.keep_last=5",)

    @classmethod
    def run_scenario(cls):
        cls.train("first", *cls.KEEP)
        cls.first = cls.capture("finished run")
        cls.first_end = max(p[1] for k in tb.Snapshot.KINDS
                            for tags in cls.first.snaps["python"].series[k].values()
                            for pts in tags.values() for p in pts)
        kept = tb.list_checkpoints(cls.root / RUN / "checkpoints")
        cls.kept = kept
        older = [(s, p) for s, p in kept if s < 5 * ITERS_PER_EPOCH]
        # step-00000189 (after epoch 3) if kept, else the oldest one kept.
        pick = [c for c in older if c[0] == 3 * ITERS_PER_EPOCH] or older[:1]
        if not pick:
            raise AssertionError("no checkpoint older than the last kept: %s" % kept)
        cls.resume_step, path = pick[0]
        cls.train("resume", *cls.KEEP, resume=path)
        cls.capture("resumed from %s" % path.name)
        cls.second = cls.phases[-1]

    def test_exit_codes(self):
        for key in ("first", "resume"):
            self.assertEqual(self.results[key].returncode, 0, self.results[key].describe())

    def test_each_step_once(self):
        problems = []
        for tag in ("train/loss", "train/accuracy", "lr/group0"):
            self.expect_steps(self.first, RUN, tag, range(315), problems=problems)
            self.expect_steps(self.second, RUN, tag, range(315), problems=problems)
        for tag in ("val/loss", "val/accuracy", "epoch/mean_loss"):
            self.expect_steps(self.second, RUN, tag, [ITERS_PER_EPOCH * (e + 1) - 1 for e in range(5)],
                              problems=problems)
        self.report(problems)

    def test_points_from_the_resume_step_are_the_second_sessions(self):
        """Before the resume step: the first session's points, unchanged.
        From it on: written after the first session ended."""
        s = self.resume_step
        problems = []
        for loader in LOADERS:
            after, before = self.second.snaps[loader], self.first.snaps[loader]
            for kind in tb.Snapshot.KINDS:
                for run, tags in after.series[kind].items():
                    for tag, pts in tags.items():
                        old_pts = {p[0]: p for p in before.series[kind].get(run, {}).get(tag, []) if p[0] < s}
                        stale = [p[0] for p in pts if p[0] >= s and p[1] <= self.first_end]
                        changed = [p[0] for p in pts if p[0] < s and p[0] in old_pts and
                                   (p[1] != old_pts[p[0]][1] or kind == "scalars" and not same_value(p[2], old_pts[p[0]][2]))]
                        lost = sorted(set(old_pts) - {p[0] for p in pts})
                        if stale:
                            problems.append("%s: run %r %s tag %r: points at steps %s (>= resume step %d) are the "
                                            "first session's (wall_time <= its end %.3f)"
                                            % (after.loader, run, kind, tag, tb.compress_ranges(stale), s, self.first_end))
                        if changed or lost:
                            problems.append("%s: run %r %s tag %r: points before the resume step changed at steps %s, "
                                            "lost at steps %s" % (after.loader, run, kind, tag,
                                                                  tb.compress_ranges(changed), tb.compress_ranges(lost)))
        self.report(problems, "resumed at step %d (kept checkpoints: %s): " % (s, [k for k, _ in self.kept]))

    def test_resumed_values_equal_the_first_sessions(self):
        """The resume is exact: from the resume step on, the second session
        shows the same values as the first one did."""
        problems = self.compare_scalar_values(self.first, self.second, RUN, "first session", "resumed",
                                              from_step=self.resume_step)
        self.report(problems, "resumed at step %d: " % self.resume_step)

    def test_hparams_success(self):
        self.check_hparams(self.second, RUN, "STATUS_SUCCESS")


class KillResumeTest(Scenario, unittest.TestCase):
    """SIGKILL mid-epoch after a checkpoint, then --resume to the end."""

    EPOCHS = 8
    SETS = ("trainer.epochs=8",) + PROGRESS_EVERY_ITERATION

    @classmethod
    def run_scenario(cls):
        proc = tb.TrainbusProcess(tb.train_args(cls.root, *cls.SETS))
        try:
            proc.wait_for_checkpoints(cls.root / RUN / "checkpoints", 1)
            proc.wait_for_line(r"^epoch 2/%d \[[^\]]*\] 30/%d it" % (cls.EPOCHS, ITERS_PER_EPOCH))
            proc.send_signal(signal.SIGKILL)
            cls.kill_code, cls.kill_output = proc.wait(30)
        finally:
            proc.close()
        cls.capture("after SIGKILL")
        cls.train("resume", *cls.SETS, resume=cls.root / RUN / "checkpoints")
        cls.capture("after the resume")

    def test_killed(self):
        self.assertEqual(self.kill_code, -signal.SIGKILL, tb.tail(self.kill_output))

    def test_killed_run_is_readable(self):
        """What the killed run wrote: train/loss from step 0, each step once, no gap."""
        ph = self.phase("after SIGKILL")
        steps = self.shown_steps(ph, RUN, "train/loss")
        self.assertTrue(steps, "the killed run shows no train/loss")
        self.expect_steps(ph, RUN, "train/loss", range(steps[-1] + 1))

    def test_resume_finishes_with_each_step_once(self):
        self.expect_whole_run_once("resume", "after the resume")

    def test_hparams_success_after_resume(self):
        self.check_hparams(self.phase("after the resume"), RUN, "STATUS_SUCCESS")


class InterruptTest(Scenario, unittest.TestCase):
    """SIGINT mid-run: exit 130 after the current iteration, everything up to
    it once, a final checkpoint, status not SUCCESS; --resume finishes it."""

    EPOCHS = 8
    SETS = ("trainer.epochs=8",) + PROGRESS_EVERY_ITERATION
    SEEN = ITERS_PER_EPOCH + 29  # the step done when "epoch 2/8 ... 30/63" is printed

    @classmethod
    def run_scenario(cls):
        proc = tb.TrainbusProcess(tb.train_args(cls.root, *cls.SETS))
        try:
            proc.wait_for_line(r"^epoch 2/%d \[[^\]]*\] 30/%d it" % (cls.EPOCHS, ITERS_PER_EPOCH))
            proc.send_signal(signal.SIGINT)
            cls.int_code, cls.int_output = proc.wait(60)
        finally:
            proc.close()
        cls.checkpoints = tb.list_checkpoints(cls.root / RUN / "checkpoints")
        latest = cls.root / RUN / "checkpoints" / "latest"
        cls.latest = latest.read_text().strip() if latest.exists() else None
        cls.capture("after SIGINT")
        cls.train("resume", *cls.SETS, resume=cls.root / RUN / "checkpoints")
        cls.capture("after the resume")
        # The same run without the interrupt: a resume is exact, so TensorBoard
        # must show the same values at every step.
        ref_root = cls.tmp / "reference"
        cls.results["reference"] = tb.run_trainbus(tb.train_args(ref_root, *cls.SETS), timeout=120)
        cls.capture("uninterrupted reference", root=ref_root)

    def last_step(self):
        steps = self.shown_steps(self.phase("after SIGINT"), RUN, "train/loss")
        return steps[-1] if steps else None

    def test_exit_code_130(self):
        self.assertEqual(self.int_code, 130, "SIGINT: expected exit code 130 (128 + SIGINT)\n%s"
                         % tb.tail(self.int_output))

    def test_stops_after_the_current_iteration_with_each_step_once(self):
        ph = self.phase("after SIGINT")
        last = self.last_step()
        self.assertIsNotNone(last, "the interrupted run shows no train/loss\n%s" % tb.tail(self.int_output))
        problems = []
        if not self.SEEN <= last < self.EPOCHS * ITERS_PER_EPOCH - 1:
            problems.append("last step %d: expected the run to stop soon after step %d (when SIGINT was sent), "
                            "before the end" % (last, self.SEEN))
        for tag in ("train/loss", "lr/group0"):
            self.expect_steps(ph, RUN, tag, range(last + 1), problems=problems)
        self.report(problems, "interrupted run (output tail:\n%s\n): " % tb.tail(self.int_output, 8))

    def test_final_checkpoint_written(self):
        last = self.last_step()
        self.assertIsNotNone(last, "the interrupted run shows no train/loss")
        want = "step-%08d" % (last + 1)
        self.assertEqual(self.latest, want,
                         "after SIGINT at step %d, `latest` should name the final checkpoint %s; it names %r "
                         "(checkpoints: %s)\n%s" % (last, want, self.latest, [p.name for _, p in self.checkpoints],
                                                   tb.tail(self.int_output)))
        self.assertIn(last + 1, [s for s, _ in self.checkpoints])

    def test_hparams_status_unknown_when_interrupted(self):
        self.check_hparams(self.phase("after SIGINT"), RUN, "STATUS_UNKNOWN")

    def test_resume_finishes_with_each_step_once(self):
        self.expect_whole_run_once("resume", "after the resume")

    def test_resumed_values_equal_an_uninterrupted_run(self):
        """Every scalar of the interrupted + resumed run equals the same run
        without the interrupt, step for step (resume is exact)."""
        self.assertEqual(self.results["reference"].returncode, 0, self.results["reference"].describe())
        problems = self.compare_scalar_values(self.phase("uninterrupted reference"), self.phase("after the resume"),
                                              RUN, "uninterrupted", "resumed")
        self.report(problems, "SIGINT after step %s, resumed: " % self.last_step())

    def test_hparams_success_after_resume(self):
        self.check_hparams(self.phase("after the resume"), RUN, "STATUS_SUCCESS")


class EarlyStoppedTest(Scenario, unittest.TestCase):
    """30 epochs planned; early stopping (patience 1, min_delta 10: nothing
    counts as an improvement after the first check) stops it after epoch 3."""

    EPOCHS = 30
    SETS = ("trainer.epochs=30", "plugins.early_stopping.options.patience=1",
            "plugins.early_stopping.options.min_delta=10")

    @classmethod
    def run_scenario(cls):
        cls.train("run", *cls.SETS)
        cls.capture("early-stopped run")

    def test_exit_code(self):
        r = self.results["run"]
        self.assertEqual(r.returncode, 0, r.describe())

    def test_each_step_once_up_to_the_stop(self):
        ph = self.phase("early-stopped run")
        steps = self.shown_steps(ph, RUN, "train/loss")
        self.assertTrue(steps, "no train/loss")
        last = steps[-1]
        problems = []
        if not last < self.EPOCHS * ITERS_PER_EPOCH - 1 or (last + 1) % ITERS_PER_EPOCH:
            problems.append("last step %d: expected a stop at an epoch end before epoch %d\n%s"
                            % (last, self.EPOCHS, tb.tail(self.results["run"].stdout, 6)))
        for tag in ("train/loss", "lr/group0"):
            self.expect_steps(ph, RUN, tag, range(last + 1), problems=problems)
        epochs = (last + 1) // ITERS_PER_EPOCH
        self.expect_steps(ph, RUN, "val/loss", [ITERS_PER_EPOCH * (e + 1) - 1 for e in range(epochs)],
                          problems=problems)
        self.report(problems)

    def test_hparams_success(self):
        self.check_hparams(self.phase("early-stopped run"), RUN, "STATUS_SUCCESS")

    def test_run_end_text_explains_the_stop(self):
        ph = self.phase("early-stopped run")
        problems = []
        for loader in LOADERS:
            for tag in ("run/end", "early_stopping/reason"):
                pts = self.points(ph, loader, "text", RUN, tag)
                if not pts:
                    problems.append("%s: no text %r (text tags: %s)" % (ph.loader_name(loader), tag,
                                                                         ph.snaps[loader].tags("text", RUN)))
                elif "val/loss" not in pts[-1][2] or "improve" not in pts[-1][2]:
                    problems.append("%s: text %r does not say why it stopped: %s"
                                    % (ph.loader_name(loader), tag, pts[-1][2][:300]))
        self.report(problems)


class FailedRunTest(Scenario, unittest.TestCase):
    """The checkpoint folder cannot be created (a regular file is in its
    way): the first save fails, exit 1."""

    @classmethod
    def run_scenario(cls):
        # Not inside the run folder: a new run claims a folder that does not exist yet.
        blocker = cls.tmp / "not-a-folder"
        blocker.write_text("a file where the checkpoint folder's parent should be\n")
        cls.train("run", "plugins.checkpoint.options.dir=%s" % (blocker / "checkpoints"))
        cls.capture("failed run")

    def test_exit_code_1(self):
        r = self.results["run"]
        self.assertEqual(r.returncode, 1, r.describe())

    def test_what_was_written_is_readable(self):
        ph = self.phase("failed run")
        self.assertEqual(ph.runs_on_disk, [RUN], "event files expected in %s" % (self.root / RUN))
        steps = self.shown_steps(ph, RUN, "train/loss")
        self.assertTrue(steps, "the failed run shows no train/loss\n" + self.results["run"].describe())
        self.expect_steps(ph, RUN, "train/loss", range(steps[-1] + 1))

    def test_hparams_status_failure(self):
        self.check_hparams(self.phase("failed run"), RUN, "STATUS_FAILURE", metrics=("train/loss",))


class DataParallelTest(Scenario, unittest.TestCase):
    """--nproc 2: one run folder (rank 0 writes), each step once."""

    @classmethod
    def run_scenario(cls):
        cls.train("run", nproc=2)
        cls.capture("2 ranks")

    def total_iterations(self):
        m = re.search(r"total: (\d+) iterations", self.results["run"].stdout)
        self.assertIsNotNone(m, "no plan in the output\n" + self.results["run"].describe())
        return int(m.group(1))

    def test_exit_code(self):
        r = self.results["run"]
        self.assertEqual(r.returncode, 0, r.describe())

    def test_one_run_folder(self):
        ph = self.phase("2 ranks")
        self.assertEqual(ph.runs_on_disk, [RUN], "folders with event files under %s" % self.root)
        for loader in LOADERS:
            self.assertEqual(ph.snaps[loader].runs, [RUN], ph.loader_name(loader))

    def test_each_step_once(self):
        ph = self.phase("2 ranks")
        n = self.total_iterations()
        problems = []
        for tag in ("train/loss", "lr/group0"):
            self.expect_steps(ph, RUN, tag, range(n), problems=problems)
        self.report(problems)

    def test_hparams_success(self):
        self.check_hparams(self.phase("2 ranks"), RUN, "STATUS_SUCCESS")


class TwoOptimizersTest(Scenario, unittest.TestCase):
    """Two runs in one log root, SGD with momentum and Adam: the HParams
    columns are the union of both runs' hparams, each session its own values."""

    RUNS = {"sgd-momentum": ("optimizer.type=sgd",), "adam": ("optimizer.type=adam",)}

    @classmethod
    def run_scenario(cls):
        for name, sets in cls.RUNS.items():
            cls.train(name, "name=%s" % name, "trainer.epochs=2", *sets)
        cls.capture("two runs")

    def test_exit_codes(self):
        for name in self.RUNS:
            self.assertEqual(self.results[name].returncode, 0, self.results[name].describe())

    def test_each_step_once(self):
        ph = self.phase("two runs")
        problems = []
        for name in self.RUNS:
            self.expect_steps(ph, name, "train/loss", range(2 * ITERS_PER_EPOCH), problems=problems)
        self.report(problems)

    def test_hparams_columns_are_the_union(self):
        ph = self.phase("two runs")
        per_run = {name: self.config_hparams(ph, name) for name in self.RUNS}
        problems = []
        if "momentum" not in per_run["sgd-momentum"] or "momentum" in per_run["adam"]:
            problems.append("expected momentum among the SGD run's hparams only: %s" % per_run)
        union = set().union(*per_run.values())
        for loader in LOADERS:
            columns = {h["name"] for h in ph.snaps[loader].experiment.get("hparamInfos", [])}
            if not union <= columns:
                problems.append("%s: HParams columns %s lack %s (union of both runs' hparams)"
                                % (ph.loader_name(loader), sorted(columns), sorted(union - columns)))
        for name, values in per_run.items():
            self.check_hparams(ph, name, "STATUS_SUCCESS", values, problems=problems)
        self.report(problems)


class AllKindsTest(Scenario, unittest.TestCase):
    """Every kind trainbus's SummaryWriter writes (tests/tensorboard_compat/
    parity_writer.cc: scalars, add_scalars sub-runs, histograms, images,
    text, hparams, PR curves, custom scalars, audio) through both loaders:
    each dashboard shows it, and the loaders agree (the common checks)."""

    @classmethod
    def run_scenario(cls):
        writer = os.environ.get("TRAINBUS_PARITY_WRITER")
        if not writer or not os.access(writer, os.X_OK):
            raise tb.SetupError("TRAINBUS_PARITY_WRITER does not name the built parity_writer "
                                "(ctest sets it; build the tree)")
        cls.root.mkdir(parents=True)
        cls.results["run"] = tb.run_trainbus([cls.root / "kinds", "--one-experiment"],
                                             binary=writer, timeout=120)
        cls.capture("every kind")

    def test_exit_code(self):
        r = self.results["run"]
        self.assertEqual(r.returncode, 0, r.describe())

    def test_every_dashboard_shows_its_kind(self):
        ph = self.phase("every kind")
        problems = []
        for loader in LOADERS:
            snap = ph.snaps[loader]
            for kind in ("scalars", "histograms", "distributions", "images", "audio", "text",
                         "pr_curves"):
                if not any(pts for run in snap.series[kind].values() for pts in run.values()):
                    problems.append("%s: the %s dashboard shows nothing" % (snap.loader, kind))
            if not snap.layout:
                problems.append("%s: no Custom Scalars layout" % snap.loader)
            if not snap.session_groups.get("sessionGroups"):
                problems.append("%s: no HParams session" % snap.loader)
            if snap.blob_errors:
                problems.append("%s: %s" % (snap.loader, "; ".join(snap.blob_errors[:4])))
        self.report(problems)


class EmbedExampleTest(Scenario, unittest.TestCase):
    """examples/embed's with_trainbus (Session + its own SummaryWriter)."""

    EMBED_RUN = "embed-xor"

    @classmethod
    def run_scenario(cls):
        binary = tb.embed_binary()
        cls.root.mkdir(parents=True)
        config = tb.source_dir() / "examples" / "embed" / "embed_config.json"
        res = tb.run_trainbus([config, cls.root], binary=binary, cwd=cls.tmp, timeout=120)
        cls.results["run"] = res
        cls.capture("embed run")

    def test_exit_code(self):
        r = self.results["run"]
        self.assertEqual(r.returncode, 0, r.describe())

    def test_one_run_each_step_once(self):
        ph = self.phase("embed run")
        self.assertEqual(ph.runs_on_disk, [self.EMBED_RUN])
        steps = self.shown_steps(ph, self.EMBED_RUN, "train/loss")
        self.assertTrue(steps, "no train/loss\n" + self.results["run"].describe())
        problems = []
        for tag in ("train/loss", "lr/group0"):
            self.expect_steps(ph, self.EMBED_RUN, tag, range(steps[-1] + 1), problems=problems)
        # The program's own PR curve, once per epoch (32 iterations each).
        epochs = (steps[-1] + 1) // 32
        self.expect_steps(ph, self.EMBED_RUN, "val/pr_curve", [32 * (e + 1) - 1 for e in range(epochs)],
                          kind="pr_curves", problems=problems)
        self.report(problems)


class LiveReadTest(Scenario, unittest.TestCase):
    """Both loaders reloading every second while trainbus writes: train/loss
    only ever grows (no repeated step, no step going back, no point that
    disappears); at the end both show steps 0..N-1 once."""

    EPOCHS = 8
    POLL_SECONDS = 0.5

    @classmethod
    def run_scenario(cls):
        cls.root.mkdir(parents=True)
        cls.polls = {loader: [] for loader in LOADERS}  # [(seconds, [(step, wall, value)])]
        cls.poll_errors = []
        cls.server_errors_retried = 0
        with tb.both_loaders(cls.root, reload_interval=1) as clients:
            proc = tb.TrainbusProcess(tb.train_args(cls.root, "trainer.epochs=%d" % cls.EPOCHS))
            started = time.monotonic()
            try:
                while True:
                    running = proc.proc.poll() is None
                    for loader, client in clients.items():
                        try:
                            pts = cls.poll_train_loss(client)
                        except tb.HttpError as e:
                            cls.poll_errors.append(str(e))
                            continue
                        cls.polls[loader].append((time.monotonic() - started,
                                                  [(s, w, v) for w, s, v in pts]))
                    if not running:
                        break
                    time.sleep(cls.POLL_SECONDS)
                cls.results["run"] = proc
                cls.run_code, cls.run_output = proc.wait(60)
            finally:
                proc.close()
            # Let both loaders reload twice more, then take the final state.
            time.sleep(2.5)
            runs = tb.event_runs(cls.root)
            snaps = {loader: tb.wait_until_loaded(c, runs) for loader, c in clients.items()}
            cls.phases.append(Phase("live, after training", snaps, tb.inspect(cls.root), runs))

    @classmethod
    def poll_train_loss(cls, client):
        """train/loss as the loader shows it now. TensorBoard's Python loader
        can answer a request with HTTP 500 while its reload thread swaps its
        tag tables (tensorflow/tensorboard#1201); such a poll is asked again,
        up to twice, and counted. Any other error, or a third 500, fails."""
        for attempt in range(3):
            try:
                tags = client.scalar_tags()
                return (client.scalars(RUN, "train/loss")
                        if "train/loss" in tags.get(RUN, {}) else [])
            except tb.HttpError as e:
                if e.code != 500 or attempt == 2:
                    raise
                cls.server_errors_retried += 1
                time.sleep(0.2)

    def test_exit_code(self):
        self.assertEqual(self.run_code, 0, tb.tail(self.run_output))

    def test_series_only_grows(self):
        if self.server_errors_retried:
            print("LiveRead: %d poll(s) asked again after TensorBoard answered HTTP 500"
                  % self.server_errors_retried, file=sys.stderr)
        problems = ["poll error: %s" % e for e in self.poll_errors[:3]]
        for loader in LOADERS:
            name = self.phases[0].loader_name(loader)
            polls = self.polls[loader]
            partial = [len(p) for _, p in polls if 0 < len(p) < self.EPOCHS * ITERS_PER_EPOCH]
            if not partial:
                problems.append("%s: no poll saw a partial train/loss series (counts: %s): the live read was not "
                                "exercised" % (name, [len(p) for _, p in polls]))
            prev = []
            for t, pts in polls:
                p = tb.step_problems([x[0] for x in pts])
                if p:
                    problems.append("%s at %.1f s (%d points): %s" % (name, t, len(pts), p))
                gone = sorted(set(prev) - set(pts))
                if gone:
                    problems.append("%s at %.1f s: %d point(s) seen before disappeared or changed, steps %s"
                                    % (name, t, len(gone), tb.compress_ranges(sorted(x[0] for x in gone))))
                prev = pts
        self.report(problems, "polls every %.1f s during training: " % self.POLL_SECONDS)

    def test_final_each_step_once(self):
        ph = self.phases[0]
        problems = []
        for tag in ("train/loss", "lr/group0"):
            self.expect_steps(ph, RUN, tag, range(self.EPOCHS * ITERS_PER_EPOCH), problems=problems)
        self.report(problems)


if __name__ == "__main__":
    unittest.main()
