"""TensorBoard's web UI in a real browser over a run trainbus wrote.

Trains the default example into a temporary directory, serves it with the
pinned TensorBoard (its default loader, the Rust data server) on 127.0.0.1,
and drives Debian's chromium through the Scalars (Time Series), HParams,
Images (the input grid and video), Text, Graphs, Projector and Mesh dashboards with browser_check.mjs (playwright-core). A second
run, the example at lr 0.5 with the health plugin, gives the Text dashboard
its findings table (health/findings). The screenshots go
to $TRAINBUS_SCREENSHOT_DIR if set, else to a temporary folder that is kept
(and named in the failure message) only when the check fails.

    TRAINBUS_BIN=build/bin/trainbus TRAINBUS_SOURCE_DIR=. TRAINBUS_TEST_TOOLS=build/test-tools \\
        build/test-tools/venv/bin/python -m unittest tests/tensorboard_compat/test_browser.py -v

A missing chromium, node or playwright-core is a failure, never a skip: run
scripts/setup-test-tools.sh.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tbcompat  # noqa: E402

RUN = "shapes-cnn"  # examples/shapes/config.json "name"
SCALAR_TAGS = ["train/loss", "lr/group0", "val/loss", "val/accuracy"]
IMAGE_TAG = "inputs"
# The health plugin's findings: a run that spikes, loses its ReLUs and
# collapses to chance (tests/health checks the findings themselves).
HEALTH_RUN = "shapes-cnn-lr0.5"
HEALTH_SETS = ["name=" + HEALTH_RUN, "optimizer.lr=0.5", "plugins.health.enabled=true"]
TEXT_TAG = "health/findings"
TEXT_MUST_SHOW = "collapsed to chance"
# The model graph's root module and one of its children; the Projector's
# embedding of the last validation (5 epochs x 63 iterations: step 314).
GRAPH = "Sequential:Conv2d[0]"
PROJECTOR = "val/outputs:00314:256"
VIDEO_TAG = "inputs/video"
# A third run, from dashboards_writer (test_dashboards.py checks its data):
# its meshes, for the Mesh dashboard.
MESH_RUN, MESH_TAG = "dashboards", "tetra"
# trainbus writes no hparams experiment record, so TensorBoard offers every
# scalar tag as a metric and shows the first five (alphabetically); the
# screenshot shows these instead.
HPARAMS_METRICS = ["train/loss", "val/accuracy", "val/loss"]
SETUP_HINT = "run scripts/setup-test-tools.sh (it installs chromium, node and playwright-core)"
# browser_check.mjs bounds itself (180 s a dashboard, 480 s in all, a 60 s
# browser launch; the whole test takes 80-170 s when it passes, the slower
# beside a compile); this only catches a hung node.
CHECK_TIMEOUT = 600


def tools_dir():
    env = os.environ.get("TRAINBUS_TEST_TOOLS")
    return Path(env).resolve() if env else tbcompat.build_dir() / "test-tools"


def browser_tools():
    """(node, chromium, node_modules) or a SetupError naming what is missing."""
    missing = []
    node = shutil.which("node") or ("/usr/bin/node" if os.access("/usr/bin/node", os.X_OK) else None)
    if not node:
        missing.append("node (Debian package nodejs)")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        missing.append("chromium at %s (Debian package chromium)" % chromium)
    node_modules = tools_dir() / "node_modules"
    if not (node_modules / "playwright-core" / "package.json").is_file():
        missing.append("playwright-core in %s" % node_modules)
    if missing:
        raise tbcompat.SetupError("the browser check needs %s; %s" % (", ".join(missing), SETUP_HINT))
    return node, chromium, node_modules


def wait_until_served(client, timeout=60):
    """Polls the endpoints the dashboards start from until each shows the
    run (and the Projector is active); the browser would otherwise only see it at the UI's next 30 s
    refresh."""
    deadline = time.monotonic() + timeout
    state = "nothing fetched yet"
    while True:
        try:
            runs = client.runs()
            scalars = client.scalar_tags().get(RUN, {})
            images = client.image_tags().get(RUN, {})
            texts = client.text_tags().get(HEALTH_RUN, [])
            groups = client.hparams_session_groups().get("sessionGroups", [])
            # The Projector finds its config files on a thread of its own,
            # started by the first listing; until then its page stays blank.
            projector = client.plugins_listing().get("projector", {}).get("enabled")
            missing_scalars = [t for t in SCALAR_TAGS if t not in scalars]
            has_group = any(g.get("name", "").split("/")[0] == RUN for g in groups)
            state = "runs %s, missing scalar tags %s, image tag %s %s, hparams session groups %s" % (
                runs, missing_scalars, IMAGE_TAG, "present" if IMAGE_TAG in images else "missing",
                [g.get("name") for g in groups]) + ", text tag %s of %s %s" % (
                TEXT_TAG, HEALTH_RUN, "present" if TEXT_TAG in texts else "missing") + (
                ", projector %s" % ("active" if projector else "inactive"))
            if (RUN in runs and not missing_scalars and IMAGE_TAG in images and has_group
                    and TEXT_TAG in texts and projector):
                return
        except tbcompat.HttpError as e:
            state = str(e).splitlines()[0]
        if time.monotonic() > deadline:
            raise AssertionError("TensorBoard did not serve run %s within %d s: %s\n"
                                 "--- TensorBoard log (tail) ---\n%s"
                                 % (RUN, timeout, state, client.server.log_tail()))
        time.sleep(0.5)


class BrowserTest(unittest.TestCase):
    def test_dashboards_show_the_run(self):
        node, chromium, node_modules = browser_tools()

        logdir = tempfile.mkdtemp(prefix="tb-browser-")
        self.addCleanup(shutil.rmtree, logdir, ignore_errors=True)
        result = tbcompat.run_trainbus(tbcompat.train_args(logdir))
        self.assertEqual(result.returncode, 0, result.describe())
        self.assertTrue((Path(logdir) / RUN).is_dir(), "no run folder %s/%s\n%s"
                        % (logdir, RUN, result.describe()))
        health = tbcompat.run_trainbus(tbcompat.train_args(logdir, *HEALTH_SETS))
        self.assertEqual(health.returncode, 0, health.describe())
        self.assertIn(TEXT_MUST_SHOW, health.describe())

        writer = os.environ.get("TRAINBUS_DASHBOARDS_WRITER") or str(
            tbcompat.build_dir() / "tests" / "tensorboard_compat" / "dashboards_writer")
        meshes = subprocess.run([writer, str(Path(logdir) / MESH_RUN)], capture_output=True,
                                text=True, timeout=120)
        self.assertEqual(meshes.returncode, 0, "%s: %s" % (writer, meshes.stderr))

        server = tbcompat.TensorBoardServer(logdir, "fast")
        self.addCleanup(server.stop)  # also when anything below fails
        server.start()
        wait_until_served(server.client())

        shots_env = os.environ.get("TRAINBUS_SCREENSHOT_DIR")
        shots = Path(shots_env).resolve() if shots_env else Path(tempfile.mkdtemp(prefix="tb-browser-shots-"))
        shots.mkdir(parents=True, exist_ok=True)

        env = dict(os.environ, NODE_PATH=str(node_modules), TRAINBUS_TEST_TOOLS=str(tools_dir()),
                   CHROMIUM=chromium)
        argv = [node, str(HERE / "browser_check.mjs"), server.url(""), RUN, ",".join(SCALAR_TAGS),
                str(shots), "--image-tag=" + IMAGE_TAG, "--hparams-metrics=" + ",".join(HPARAMS_METRICS),
                "--text=%s:%s:%s" % (HEALTH_RUN, TEXT_TAG, TEXT_MUST_SHOW),
                "--graph=" + GRAPH, "--projector=" + PROJECTOR, "--video-tag=" + VIDEO_TAG,
                "--mesh=%s:%s" % (MESH_RUN, MESH_TAG)]
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, cwd=str(HERE), env=env, capture_output=True, text=True,
                                  timeout=CHECK_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.fail("browser_check.mjs did not finish within %d s (screenshots in %s)\n%s"
                      % (CHECK_TIMEOUT, shots, tbcompat.tail(tbcompat._text(e.stdout))))
        seconds = time.monotonic() - start

        if proc.returncode != 0:
            self.fail("%s\nscreenshots (failure-*.png) kept in %s; `%s` exited %d after %.1f s\n"
                      "--- stderr (tail) ---\n%s\n--- TensorBoard log (tail) ---\n%s"
                      % (proc.stdout.strip() or "(no output)", shots, " ".join(argv), proc.returncode,
                         seconds, tbcompat.tail(proc.stderr), server.log_tail()))
        for name in ("scalars.png", "hparams.png", "images.png", "text.png", "graphs.png",
                     "projector.png"):
            self.assertGreater((shots / name).stat().st_size if (shots / name).exists() else 0, 0,
                               "browser_check.mjs succeeded but wrote no %s in %s" % (name, shots))
        if not shots_env:
            shutil.rmtree(shots, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
