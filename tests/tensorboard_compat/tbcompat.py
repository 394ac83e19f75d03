"""Helpers for the TensorBoard compatibility scenarios (test_scenarios.py).

Runs `trainbus` for real and reads its log directory back through the real
TensorBoard (the pinned version in build/test-tools/venv), with either of
TensorBoard's two loaders:

  "python"  --load_fast=false: the Python EventMultiplexer, loaded once
            before the server answers (--reload_task=blocking), or reloaded
            every second for a live read.
  "fast"    --load_fast=true: the Rust data server (tensorboard-data-server),
            TensorBoard's default. It has no blocking mode, so callers poll
            until what it shows is stable (wait_until_loaded).

Everything a dashboard shows is fetched through the same HTTP endpoints the
web UI uses (names and request bodies taken from TensorBoard 2.21.0's plugin
code and its compiled frontend), so the tests check what a user would see.

A missing venv or a TensorBoard that does not start is a test failure with
the reason, never a skip: run scripts/setup-test-tools.sh.
"""

import concurrent.futures
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
from pathlib import Path

TENSORBOARD_VERSION = "2.21.0"
SETUP_HINT = "run scripts/setup-test-tools.sh (it installs the pinned TensorBoard into build/test-tools/venv)"

HERE = Path(__file__).resolve().parent


class SetupError(AssertionError):
    """The test environment is missing something: reported as a failure, never a skip."""


# ---------------------------------------------------------------------------
# Paths


def source_dir():
    env = os.environ.get("TRAINBUS_SOURCE_DIR")
    return Path(env).resolve() if env else HERE.parents[1]


def build_dir():
    env = os.environ.get("TRAINBUS_BUILD_DIR")
    if env:
        return Path(env).resolve()
    # The binary usually lives in <build>/bin/trainbus.
    binary = os.environ.get("TRAINBUS_BIN")
    if binary:
        return Path(binary).resolve().parent.parent
    return source_dir() / "build"


def trainbus_bin():
    env = os.environ.get("TRAINBUS_BIN")
    path = Path(env).resolve() if env else build_dir() / "bin" / "trainbus"
    return path


def example_config(name="shapes"):
    return source_dir() / "examples" / name / "config.json"


def embed_binary():
    env = os.environ.get("TRAINBUS_EMBED_BIN")
    if env:
        return Path(env).resolve()
    for candidate in (build_dir() / "examples" / "embed" / "with_trainbus",):
        if candidate.is_file():
            return candidate
    found = sorted(build_dir().rglob("with_trainbus"))
    found = [p for p in found if p.is_file() and os.access(p, os.X_OK)]
    if not found:
        raise SetupError(
            "the embed example binary (with_trainbus) is not built under %s; build the tree "
            "(it is part of the default build) or set TRAINBUS_EMBED_BIN" % build_dir())
    return found[0]


def venv_dir():
    env = os.environ.get("TRAINBUS_TB_VENV")
    if env:
        return Path(env).resolve()
    tools = os.environ.get("TRAINBUS_TEST_TOOLS")  # set by ctest (CMakeLists.txt)
    return (Path(tools).resolve() if tools else build_dir() / "test-tools") / "venv"


def tensorboard_command():
    """The venv's python and a check that it holds the pinned TensorBoard."""
    python = venv_dir() / "bin" / "python"
    if not python.exists():
        raise SetupError("no TensorBoard venv at %s; %s" % (venv_dir(), SETUP_HINT))
    probe = subprocess.run(
        [str(python), "-c",
         "import tensorboard, tensorboard_data_server, PIL; print(tensorboard.__version__)"],
        capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        raise SetupError("the venv %s cannot import tensorboard / tensorboard_data_server / "
                         "pillow: %s; %s" % (venv_dir(), probe.stderr.strip()[-800:], SETUP_HINT))
    version = probe.stdout.strip()
    if version != TENSORBOARD_VERSION:
        raise SetupError("the venv %s has TensorBoard %s, the suite is pinned to %s; %s"
                         % (venv_dir(), version, TENSORBOARD_VERSION, SETUP_HINT))
    return [str(python), "-m", "tensorboard.main"]


_TB_COMMAND = None


def cached_tensorboard_command():
    global _TB_COMMAND
    if _TB_COMMAND is None:
        try:  # images are decoded in this process
            import PIL.Image  # noqa: F401
        except ImportError:
            raise SetupError("pillow is not importable by %s: run the suite with the venv's python "
                             "(%s); %s" % (sys.executable, venv_dir() / "bin" / "python", SETUP_HINT))
        _TB_COMMAND = tensorboard_command()
    return _TB_COMMAND


def check_trainbus():
    binary = trainbus_bin()
    # The lead rebuilds the tree while tests run: give a rebuild a moment.
    deadline = time.monotonic() + 60
    while not (binary.is_file() and os.access(binary, os.X_OK)):
        if time.monotonic() > deadline:
            raise SetupError("trainbus binary not found at %s (set TRAINBUS_BIN)" % binary)
        time.sleep(1)
    return binary


# ---------------------------------------------------------------------------
# Running trainbus


class Result:
    def __init__(self, args, returncode, stdout, stderr, seconds):
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds

    def describe(self):
        return "`%s` exited %s after %.1f s\n--- stdout (tail) ---\n%s\n--- stderr (tail) ---\n%s" % (
            " ".join(str(a) for a in self.args), self.returncode, self.seconds,
            tail(self.stdout), tail(self.stderr))


def tail(text, lines=30):
    if not text:
        return "(empty)"
    return "\n".join(text.splitlines()[-lines:])


def run_trainbus(args, timeout=120, cwd=None, env=None, binary=None):
    """Runs `trainbus ARGS...` to the end; returns a Result (exit code, stdout, stderr)."""
    binary = binary or check_trainbus()
    argv = [str(binary)] + [str(a) for a in args]
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=str(cwd or source_dir()), env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("`%s` did not finish within %d s\n--- stdout ---\n%s\n--- stderr ---\n%s"
                             % (" ".join(argv), timeout, tail(_text(e.stdout)), tail(_text(e.stderr))))
    return Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def _text(b):
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def train_args(log_root, *sets, resume=None, nproc=None, config=None):
    """`train --config ... --set log_root=... [--set k=v ...] [--resume D] [--nproc N]`."""
    args = ["train", "--config", str(config or example_config()), "--set", "log_root=%s" % log_root]
    for s in sets:
        args += ["--set", s]
    if resume is not None:
        args += ["--resume", str(resume)]
    if nproc is not None:
        args += ["--nproc", str(nproc)]
    return args


class TrainbusProcess:
    """`trainbus ARGS...` in the background, for kill and interrupt scenarios.

    Its stdout and stderr are read by threads into one transcript, so a caller
    can wait for a line (wait_for_line) or for checkpoints on disk
    (wait_for_checkpoints) before it signals the process.
    """

    def __init__(self, args, cwd=None, env=None, binary=None):
        binary = binary or check_trainbus()
        self.args = [str(binary)] + [str(a) for a in args]
        self._lines = []
        self._lock = threading.Condition()
        self.proc = subprocess.Popen(self.args, cwd=str(cwd or source_dir()), env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self._threads = [threading.Thread(target=self._pump, args=(s, tag), daemon=True)
                         for s, tag in ((self.proc.stdout, ""), (self.proc.stderr, "[stderr] "))]
        for t in self._threads:
            t.start()

    def _pump(self, stream, prefix):
        for line in stream:
            with self._lock:
                self._lines.append(prefix + line.rstrip("\n"))
                self._lock.notify_all()
        stream.close()
        with self._lock:
            self._lock.notify_all()

    def transcript(self):
        with self._lock:
            return "\n".join(self._lines)

    def wait_for_line(self, pattern, timeout=60):
        """Waits for an output line matching the regex; returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lock:
            while True:
                for line in self._lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return m
                seen = len(self._lines)
                if self.proc.poll() is not None and all(not t.is_alive() for t in self._threads):
                    raise AssertionError("trainbus exited (%s) before printing a line matching %r\n%s"
                                         % (self.proc.returncode, pattern, tail(self.transcript())))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no line matching %r within %d s\n%s"
                                         % (pattern, timeout, tail(self.transcript())))
                self._lock.wait(min(left, 0.2))

    def wait_for_checkpoints(self, checkpoint_dir, count, timeout=60):
        """Waits until `count` complete checkpoints exist (and `latest` names one)."""
        deadline = time.monotonic() + timeout
        while True:
            found = list_checkpoints(checkpoint_dir)
            latest = Path(checkpoint_dir) / "latest"
            if len(found) >= count and latest.exists():
                return found
            if self.proc.poll() is not None:
                raise AssertionError("trainbus exited (%s) with %d checkpoint(s) in %s, waited for %d\n%s"
                                     % (self.proc.returncode, len(found), checkpoint_dir, count,
                                        tail(self.transcript())))
            if time.monotonic() > deadline:
                raise AssertionError("%d checkpoint(s) in %s after %d s, waited for %d\n%s"
                                     % (len(found), checkpoint_dir, timeout, count, tail(self.transcript())))
            time.sleep(0.02)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=60):
        """Waits for the exit; returns (exit code, transcript). Kills it past the timeout."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            for t in self._threads:
                t.join(5)
            raise AssertionError("trainbus did not exit within %d s (killed)\n%s"
                                 % (timeout, tail(self.transcript())))
        for t in self._threads:
            t.join(5)
        return self.proc.returncode, self.transcript()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self._threads:
            t.join(5)


def list_checkpoints(checkpoint_dir):
    """Complete checkpoint folders (step-XXXXXXXX), oldest first, as (step, path)."""
    d = Path(checkpoint_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = re.fullmatch(r"step-(\d{8})", p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


# ---------------------------------------------------------------------------
# trainbus inspect


def inspect(logdir):
    """`trainbus inspect LOGDIR --json`, parsed; {run: {tag: entry}} under "by_run"."""
    res = run_trainbus(["inspect", str(logdir), "--json"], timeout=60)
    try:
        report = json.loads(res.stdout)
    except ValueError:
        raise AssertionError("trainbus inspect --json printed no JSON\n" + res.describe())
    report["by_run"] = {r["run"]: {t["tag"]: t for t in r.get("tags", [])} for r in report.get("runs", [])}
    report["exit_code"] = res.returncode
    return report


# ---------------------------------------------------------------------------
# TensorBoard servers


def free_port():
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoardServer:
    """The real TensorBoard on 127.0.0.1 over `logdir`, as a context manager.

    loader "python": --load_fast=false; with reload_interval=0 (the default
    here) it loads everything once, blocking, before it serves.
    loader "fast": --load_fast=true, the Rust data server (reloads every
    `reload_interval` seconds, at least 1; poll with wait_until_loaded).
    The server is always terminated and waited for on exit; its log is kept
    and its tail is part of every failure message (`log_tail()`).
    """

    def __init__(self, logdir, loader, reload_interval=None, extra_args=(), start_timeout=90):
        if loader not in ("python", "fast"):
            raise ValueError(loader)
        self.logdir = str(logdir)
        self.loader = loader
        if reload_interval is None:
            reload_interval = 0 if loader == "python" else 1
        self.reload_interval = reload_interval
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self._logdir_tmp = None
        self.log_path = None

    @property
    def name(self):
        return "%s loader (%s)" % (self.loader, "Python EventMultiplexer" if self.loader == "python"
                                   else "Rust data server")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _argv(self):
        argv = cached_tensorboard_command() + [
            "--logdir", self.logdir, "--host", "127.0.0.1", "--port", str(self.port)]
        if self.loader == "python":
            argv += ["--load_fast=false", "--reload_interval=%s" % self.reload_interval]
            argv += ["--reload_task=blocking"] if self.reload_interval == 0 else []
        else:
            argv += ["--load_fast=true", "--reload_interval=%s" % max(1, self.reload_interval)]
        return argv + self.extra_args

    def start(self):
        self._logdir_tmp = tempfile.mkdtemp(prefix="tbcompat-server-")
        self.log_path = Path(self._logdir_tmp) / "tensorboard.log"
        last_error = None
        for _ in range(3):  # a free port can be taken between picking and binding it
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                log.write(("$ %s\n" % " ".join(self._argv())).encode())
                log.flush()
                env = dict(os.environ)
                env.pop("TF_CPP_MIN_LOG_LEVEL", None)
                self.proc = subprocess.Popen(self._argv(), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=env, cwd=self._logdir_tmp)
            try:
                self._wait_ready()
                return
            except AssertionError as e:
                last_error = e
                address_in_use = "already in use" in self.log_tail().lower()
                self.stop(keep_log=True)
                if not address_in_use:
                    break
        raise SetupError("TensorBoard (%s) did not start over %s: %s; %s"
                         % (self.name, self.logdir, last_error, SETUP_HINT))

    def _wait_ready(self):
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("it exited with code %s\n--- TensorBoard log (tail) ---\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.url("/data/environment"), timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("not answering on port %d after %d s\n--- TensorBoard log (tail) ---\n%s"
                                     % (self.port, self.start_timeout, self.log_tail()))
            time.sleep(0.2)

    def stop(self, keep_log=False):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if not keep_log and self._logdir_tmp and not os.environ.get("TBCOMPAT_KEEP"):
            # The log is only interesting while the server runs or a check fails;
            # failure messages carry its tail already.
            self._final_log = self.log_tail()
            shutil.rmtree(self._logdir_tmp, ignore_errors=True)
            self._logdir_tmp = None

    def log_tail(self, lines=25):
        if self.log_path and self.log_path.exists():
            return tail(self.log_path.read_text(errors="replace"), lines)
        return getattr(self, "_final_log", "(no log)")

    def url(self, path, **params):
        q = ("?" + urllib.parse.urlencode(params, doseq=True)) if params else ""
        return "http://127.0.0.1:%d%s%s" % (self.port, path, q)

    def client(self):
        return Client(self)


class HttpError(AssertionError):
    """A request that failed; `code` is the HTTP status, None without one."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class Client:
    """The endpoints each dashboard calls, for one server."""

    def __init__(self, server):
        self.server = server
        self.name = server.name

    # -- plumbing

    def _open(self, path, params=None, body=None, timeout=60):
        url = self.server.url(path, **(params or {}))
        req = urllib.request.Request(url)
        if body is not None:
            # As TensorBoard's frontend sends it (a JSON text body).
            req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:500]
            raise HttpError("%s: HTTP %d for %s%s: %s\n--- TensorBoard log (tail) ---\n%s"
                            % (self.name, e.code, url, (" body %s" % json.dumps(body)) if body else "",
                               detail, self.server.log_tail()), code=e.code)
        except (urllib.error.URLError, OSError) as e:
            raise HttpError("%s: %s for %s\n--- TensorBoard log (tail) ---\n%s"
                            % (self.name, e, url, self.server.log_tail()))

    def get_json(self, path, **params):
        data, _ = self._open(path, params)
        return json.loads(data)

    def post_json(self, path, body):
        data, _ = self._open(path, body=body)
        return json.loads(data)

    def get_bytes(self, path_and_query):
        data, ctype = self._open(path_and_query)
        return data, ctype

    # -- core

    def runs(self):
        return self.get_json("/data/runs")

    def plugins_listing(self):
        return self.get_json("/data/plugins_listing")

    # -- scalars: [[wall_time, step, value], ...]

    def scalar_tags(self):
        return self.get_json("/data/plugin/scalars/tags")

    def scalars(self, run, tag):
        return [tuple(p) for p in self.get_json("/data/plugin/scalars/scalars", run=run, tag=tag)]

    # -- histograms: [[wall_time, step, [[left, right, count], ...]], ...]

    def histogram_tags(self):
        return self.get_json("/data/plugin/histograms/tags")

    def histograms(self, run, tag):
        return self.get_json("/data/plugin/histograms/histograms", run=run, tag=tag)

    def distribution_tags(self):
        return self.get_json("/data/plugin/distributions/tags")

    def distributions(self, run, tag):
        return self.get_json("/data/plugin/distributions/distributions", run=run, tag=tag)

    # -- images: [{"wall_time", "step", "query"}], bytes at /individualImage?<query>

    def image_tags(self):
        return self.get_json("/data/plugin/images/tags")

    def images(self, run, tag, sample=0):
        return self.get_json("/data/plugin/images/images", run=run, tag=tag, sample=sample)

    def image_bytes(self, query):
        return self.get_bytes("/data/plugin/images/individualImage?" + query)

    # -- audio: [{"wall_time", "step", "contentType", "query"}], bytes at /individualAudio

    def audio_tags(self):
        return self.get_json("/data/plugin/audio/tags")

    def audio(self, run, tag, sample=0):
        return self.get_json("/data/plugin/audio/audio", run=run, tag=tag, sample=sample)

    def audio_bytes(self, query):
        return self.get_bytes("/data/plugin/audio/individualAudio?" + query)

    # -- text: {run: [tag, ...]}; [{"wall_time", "step", "text"}]

    def text_tags(self):
        return self.get_json("/data/plugin/text/tags")

    def text(self, run, tag):
        return self.get_json("/data/plugin/text/text", run=run, tag=tag)

    # -- pr curves: {run: {tag: {...}}}; {run: [{"wall_time", "step", "precision", ...}]}

    def pr_curve_tags(self):
        return self.get_json("/data/plugin/pr_curves/tags")

    def pr_curves(self, run, tag):
        return self.get_json("/data/plugin/pr_curves/pr_curves", run=run, tag=tag)[run]

    # -- custom scalars

    def custom_scalars_layout(self):
        return self.get_json("/data/plugin/custom_scalars/layout")

    def custom_scalars(self, run, tag_regex):
        return self.get_json("/data/plugin/custom_scalars/scalars", run=run, tag=tag_regex)

    # -- hparams, with the request bodies of the HParams dashboard
    #    (tf-hparams-query-pane in TensorBoard 2.21.0's frontend)

    def hparams_experiment(self):
        return self.post_json("/data/plugin/hparams/experiment",
                              {"experimentName": "", "hparamsLimit": 1000})

    def hparams_session_groups(self, experiment=None):
        experiment = experiment if experiment is not None else self.hparams_experiment()
        col_params = [{"hparam": h["name"], "includeInResult": True}
                      for h in experiment.get("hparamInfos", [])]
        col_params += [{"metric": m["name"], "includeInResult": True}
                       for m in experiment.get("metricInfos", [])]
        body = {"experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                    "STATUS_RUNNING"],
                "colParams": col_params, "startIndex": 0, "sliceSize": 100}
        return self.post_json("/data/plugin/hparams/session_groups", body)

    # -- graphs: {run: {"run_graph": bool, ...}}; the run graph as text-format
    #    GraphDef, parsed to {node name: (op, [inputs], [output shape])}

    def graph_runs(self):
        return self.get_json("/data/plugin/graphs/info")

    def graph(self, run):
        from google.protobuf import text_format
        from tensorboard.compat.proto import graph_pb2
        data, _ = self.get_bytes("/data/plugin/graphs/graph?" + urllib.parse.urlencode(
            {"run": run, "conceptual": "false"}))
        graph = text_format.Parse(data.decode(), graph_pb2.GraphDef())
        nodes = {}
        for n in graph.node:
            shapes = n.attr["_output_shapes"].list.shape if "_output_shapes" in n.attr else []
            nodes[n.name] = (n.op, list(n.input), [d.size for d in shapes[0].dim] if shapes else None)
        return nodes

    # -- projector: [run, ...]; {"embeddings": [{"tensorName", "tensorShape", ...}]}

    def projector_runs(self):
        return self.get_json("/data/plugin/projector/runs")

    def projector_info(self, run):
        return self.get_json("/data/plugin/projector/info", run=run)

    # -- everything, for comparing loaders

    def snapshot(self, fetch_blobs=True):
        """What every dashboard shows, as plain data (see Snapshot)."""
        return Snapshot.take(self, fetch_blobs)


def _parallel(jobs, workers=8):
    """{key: callable} -> {key: result}, called from a few threads; the
    first exception is raised."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(fn) for key, fn in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


def layout_regexes(layout):
    """Every tag regex of a Custom Scalars layout (multiline charts' tags,
    margin charts' series tags)."""
    out = []
    for category in layout.get("category", []):
        for chart in category.get("chart", []):
            out += chart.get("multiline", {}).get("tag", [])
            for series in chart.get("margin", {}).get("series", []):
                out += [series[k] for k in ("value", "lower", "upper") if series.get(k)]
    return list(dict.fromkeys(out))


def _png_size(data):
    from PIL import Image  # from the venv (pillow is pinned there)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.format, im.size


def _wav_info(data):
    with wave.open(io.BytesIO(data)) as w:
        return {"channels": w.getnchannels(), "rate": w.getframerate(), "frames": w.getnframes()}


class Snapshot:
    """Everything one loader shows: per kind, per run, per tag, the points.

    Points are tuples starting with (step, wall_time, ...): scalars add the
    value; histograms and distributions their buckets; images the decoded
    PNG format and size plus a digest of the bytes; audio the WAV header
    and a digest; text the rendered HTML; pr curves the curve. Blob URLs
    differ between loaders and are left out.
    """

    KINDS = ("scalars", "histograms", "distributions", "images", "audio", "text", "pr_curves")

    def __init__(self, loader):
        self.loader = loader
        self.runs = []
        self.series = {k: {} for k in self.KINDS}
        self.layout = {}
        self.custom_scalar_matches = {}  # {run: {regex: (valid, [tags])}}
        self.experiment = {}
        self.session_groups = {}
        self.blob_errors = []
        # Graphs: {run: {node name: (op, [inputs], [output shape])}}; Projector:
        # {run: [embedding info as /info serves it]}.
        self.graphs = {}
        self.projector = {}

    @classmethod
    def take(cls, client, fetch_blobs=True):
        s = cls(client.name)
        # The data server answers each request in ~45 ms here (its gRPC hop),
        # so the per-tag requests go out side by side.
        tag_lists = _parallel({
            "runs": client.runs, "scalars": client.scalar_tags, "histograms": client.histogram_tags,
            "distributions": client.distribution_tags, "images": client.image_tags,
            "audio": client.audio_tags, "text": client.text_tags, "pr_curves": client.pr_curve_tags,
            "layout": client.custom_scalars_layout, "experiment": client.hparams_experiment,
            "graph_runs": client.graph_runs, "projector_runs": client.projector_runs})
        graph_runs = [r for r, v in tag_lists.pop("graph_runs").items() if v.get("run_graph")]
        projector_runs = tag_lists.pop("projector_runs")
        s.runs = tag_lists.pop("runs")
        s.layout = tag_lists.pop("layout")
        s.experiment = tag_lists.pop("experiment")

        def image_points(run, tag):
            points = []
            for im in client.images(run, tag):
                info = None
                if fetch_blobs:
                    data, ctype = client.image_bytes(im["query"])
                    try:
                        info = (ctype,) + _png_size(data) + (hashlib.sha256(data).hexdigest(),)
                    except Exception as e:  # reported by the tests with run/tag/step
                        s.blob_errors.append("image %s %s step %s: %s (%d bytes, %s)"
                                             % (run, tag, im["step"], e, len(data), ctype))
                points.append((im["step"], im["wall_time"], info))
            return points

        def audio_points(run, tag):
            points = []
            for a in client.audio(run, tag):
                info = None
                if fetch_blobs:
                    data, ctype = client.audio_bytes(a["query"])
                    try:
                        info = (a["contentType"], tuple(sorted(_wav_info(data).items())),
                                hashlib.sha256(data).hexdigest())
                    except Exception as e:
                        s.blob_errors.append("audio %s %s step %s: %s (%d bytes, %s)"
                                             % (run, tag, a["step"], e, len(data), ctype))
                points.append((a["step"], a["wall_time"], info))
            return points

        def pr_points(run, tag):
            points = []
            for c in client.pr_curves(run, tag):
                rest = {k: v for k, v in c.items() if k not in ("step", "wall_time")}
                points.append((c["step"], c["wall_time"], json.dumps(rest, sort_keys=True)))
            return points

        fetch = {
            "scalars": lambda r, t: [(st, wt, v) for wt, st, v in client.scalars(r, t)],
            "histograms": lambda r, t: [(st, wt, b) for wt, st, b in client.histograms(r, t)],
            "distributions": lambda r, t: [(st, wt, b) for wt, st, b in client.distributions(r, t)],
            "images": image_points,
            "audio": audio_points,
            "text": lambda r, t: [(x["step"], x["wall_time"], x["text"]) for x in client.text(r, t)],
            "pr_curves": pr_points,
        }
        jobs = {}
        for kind, runs in tag_lists.items():
            for run, tags in runs.items():
                for tag in tags:
                    jobs[(kind, run, tag)] = functools.partial(fetch[kind], run, tag)
        # Each chart's regex as the Custom Scalars dashboard resolves it, per run.
        for run in tag_lists["scalars"]:
            for rx in layout_regexes(s.layout):
                jobs[("custom_scalars", run, rx)] = functools.partial(client.custom_scalars, run, rx)
        jobs[("session_groups",)] = functools.partial(client.hparams_session_groups, s.experiment)
        for run in graph_runs:
            jobs[("graph", run)] = functools.partial(client.graph, run)
        for run in projector_runs:
            jobs[("projector", run)] = functools.partial(client.projector_info, run)
        results = _parallel(jobs)
        s.session_groups = results.pop(("session_groups",))
        for run in graph_runs:
            s.graphs[run] = results.pop(("graph", run))
        for run in projector_runs:
            s.projector[run] = results.pop(("projector", run)).get("embeddings", [])
        for (kind, run, tag), value in sorted(results.items()):
            if kind == "custom_scalars":
                s.custom_scalar_matches.setdefault(run, {})[tag] = (
                    value.get("regex_valid"), sorted(value.get("tag_to_events", {})))
            else:
                s.series[kind].setdefault(run, {})[tag] = value
        return s

    def fingerprint(self):
        """Runs, tags and point counts: equal twice in a row means loaded."""
        return (tuple(sorted(self.runs)),
                tuple((k, run, tag, len(pts), pts[-1][0] if pts else None)
                      for k in self.KINDS for run in sorted(self.series[k])
                      for tag, pts in sorted(self.series[k][run].items())),
                json.dumps(self.layout, sort_keys=True),
                json.dumps(self.experiment, sort_keys=True),
                json.dumps(self.session_groups, sort_keys=True))

    def steps(self, kind, run, tag):
        return [p[0] for p in self.series[kind].get(run, {}).get(tag, [])]

    def tags(self, kind, run):
        return sorted(self.series[kind].get(run, {}))


def wait_until_loaded(client, expect_runs=(), expect=None, timeout=60, interval=0.5, stable_reads=3):
    """Polls `client.snapshot()` until the expected runs are there (and
    `expect(snapshot)` is true, if given) and the snapshot's fingerprint
    has stayed the same for `stable_reads` consecutive reads. Returns it."""
    deadline = time.monotonic() + timeout
    previous, same, snap = None, 0, None
    while True:
        try:
            snap = client.snapshot(fetch_blobs=False)
        except HttpError:
            snap = None  # a run that appeared between two calls: try again
        if snap is not None:
            ready = all(r in snap.runs for r in expect_runs) and (expect is None or expect(snap))
            fp = snap.fingerprint()
            if ready and fp == previous:
                same += 1
                if same + 1 >= stable_reads:
                    return client.snapshot(fetch_blobs=True)
            else:
                same = 0
            previous = fp if ready else None
        if time.monotonic() > deadline:
            raise AssertionError(
                "%s: not loaded within %d s (expected runs %s; it shows runs %s)\n"
                "--- TensorBoard log (tail) ---\n%s"
                % (client.name, timeout, list(expect_runs), snap.runs if snap else "?",
                   client.server.log_tail()))
        time.sleep(interval)


@contextlib.contextmanager
def both_loaders(logdir, reload_interval=None):
    """Both TensorBoard loaders over `logdir`, started side by side, both
    running inside the block: yields {"python": Client, "fast": Client}.
    reload_interval None: the Python loader loads once (blocking), the data
    server reloads every second; a number: both reload that often (live)."""
    servers = {loader: TensorBoardServer(logdir, loader, reload_interval=reload_interval)
               for loader in ("python", "fast")}
    errors = {}

    def start(loader):
        try:
            servers[loader].start()
        except BaseException as e:  # re-raised below, after both are up or down
            errors[loader] = e

    threads = [threading.Thread(target=start, args=(l,)) for l in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise next(iter(errors.values()))
        yield {loader: s.client() for loader, s in servers.items()}
    finally:
        for s in servers.values():
            s.stop()


def load_both(logdir, expect_runs=(), expect=None, timeout=60):
    """Starts both loaders over a finished log directory and returns their
    snapshots {"python": Snapshot, "fast": Snapshot}, servers stopped."""
    with both_loaders(logdir) as clients:
        return {loader: wait_until_loaded(c, expect_runs, expect, timeout=timeout)
                for loader, c in clients.items()}


# ---------------------------------------------------------------------------
# Describing step problems


def step_problems(steps):
    """Duplicates and backward steps in a sequence, as readable text ('' if none)."""
    dups, back = [], []
    seen = set()
    for i, s in enumerate(steps):
        if s in seen:
            dups.append(s)
        seen.add(s)
        if i > 0 and s < steps[i - 1]:
            back.append("%d after %d (index %d)" % (s, steps[i - 1], i))
    out = []
    if dups:
        out.append("%d repeated step(s): %s" % (len(dups), short(sorted(set(dups)))))
    if back:
        out.append("%d step(s) going back: %s" % (len(back), short(back)))
    return "; ".join(out)


def short(items, n=12):
    items = list(items)
    if len(items) <= n:
        return str(items)
    return "%s ... %s (%d in all)" % (str(items[: n // 2])[:-1], str(items[-n // 2:])[1:], len(items))


def diff_steps(actual, expected):
    """What differs between two step lists (missing, extra, repeated), as text."""
    a, e = list(actual), list(expected)
    missing = sorted(set(e) - set(a))
    extra = sorted(set(a) - set(e))
    parts = ["%d points, steps %s" % (len(a), compress_ranges(a))]
    if missing:
        parts.append("missing %s" % compress_ranges(missing))
    if extra:
        parts.append("unexpected %s" % compress_ranges(extra))
    p = step_problems(a)
    if p:
        parts.append(p)
    return "; ".join(parts)


def compress_ranges(steps):
    """[0,1,2,3,7,9,10] -> '0..3, 7, 9..10' (in the given order, so repeats show)."""
    steps = list(steps)
    if not steps:
        return "(none)"
    out, start, prev = [], steps[0], steps[0]
    for s in steps[1:]:
        if s == prev + 1:
            prev = s
            continue
        out.append(str(start) if start == prev else "%d..%d" % (start, prev))
        start = prev = s
    out.append(str(start) if start == prev else "%d..%d" % (start, prev))
    text = ", ".join(out)
    return text if len(text) < 600 else text[:300] + " ... " + text[-250:]


def event_runs(log_root):
    """Run names TensorBoard will find: folders (relative to log_root, "."
    for itself) holding a file whose name contains "tfevents"."""
    root = Path(log_root)
    runs = set()
    if root.is_dir():
        for path in root.rglob("*tfevents*"):
            if path.is_file():
                rel = path.parent.relative_to(root).as_posix()
                runs.add(rel if rel else ".")
    return sorted(runs)
