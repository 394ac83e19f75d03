"""tensorboardX parity: the same calls through tensorboardX and through trainbus.

parity_writer.py makes a fixed sequence of tensorboardX SummaryWriter calls,
parity_writer.cc the same sequence on trainbus's C++ SummaryWriter. Both write
into temporary directories; every event file of every run is read back with
TensorBoard's own loader, twice: as written (LegacyEventFileLoader) and as
TensorBoard ingests it (EventFileLoader, which applies data_compat and
dataclass_compat). Each test method then compares one kind.

The only differences tolerated are those in DIFFERENCES below, each with its
reason; the comparison normalises exactly those (every normalisation names
its entry) and compares everything else exactly.

    TRAINBUS_PARITY_WRITER=<parity_writer binary> \
        build/test-tools/venv/bin/python -m unittest tests/tensorboard_compat/test_parity.py -v
"""

import io
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import wave

import numpy as np
from PIL import Image

from tensorboard import plugin_util
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import summary_pb2, types_pb2
from tensorboard.plugins.audio import plugin_data_pb2 as audio_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2 as hparams_pb2
from tensorboard.plugins.pr_curve import plugin_data_pb2 as pr_curve_pb2
from tensorboard.plugins.text import plugin_data_pb2 as text_pb2
from tensorboard.plugins.text import text_plugin
from tensorboard.util import tensor_util

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import parity_writer  # noqa: E402  (the tensorboardX half)

# Every deliberate difference between the two writers, with its reason.
DIFFERENCES = {
    "wall_time":
        "Each writer stamps its own clock; wall times are checked to be plausible, "
        "never compared.",
    "event_file_names":
        "events.out.tfevents.<secs>.<host> (tensorboardX) vs "
        "events.out.tfevents.<secs>.<host>.<pid>.<n> (trainbus, unique per writer); "
        "TensorBoard reads any name containing 'tfevents'. Runs are compared, not names.",
    "add_scalars_run_dirs":
        "add_scalars('a/b', {'s': v}) writes the series to the sub-run a_b_s in trainbus "
        "(PyTorch's torch.utils.tensorboard layout: '/' -> '_', joined by '_') but to the "
        "nested sub-run a/b/s in tensorboardX. The tag ('a/b') and values are the same.",
    "add_hparams_default_run":
        "add_hparams without a run name writes into the run itself in trainbus (so the "
        "hparams dashboard links the run's own curves), into a new sub-run named "
        "str(time.time()) in tensorboardX. With a name both use the sub-run <name>.",
    "hparams_step":
        "trainbus writes the experiment/session_start/session_end records at the step "
        "passed to add_hparams, tensorboardX at step 0 (no step given). The hparams "
        "plugin reads their content, not their step.",
    "hparams_times":
        "trainbus fills experiment.time_created_secs, session_start_info.start_time_secs "
        "and session_end_info.end_time_secs with the current time; tensorboardX leaves "
        "them 0. Checked to be plausible, then cleared.",
    "data_class":
        "trainbus sets SummaryMetadata.data_class when writing (text, pr_curves, "
        "custom_scalars: DATA_CLASS_TENSOR); tensorboardX leaves it unset and TensorBoard's "
        "dataclass_compat fills in the same value on load. Compared after loading.",
    "text_tag_suffix":
        "add_text('t', ...) writes tag 't' in trainbus, 't/text_summary' in tensorboardX "
        "(and PyTorch).",
    "text_shape":
        "trainbus writes the text as a DT_STRING scalar (shape []), which TensorBoard "
        "renders as markdown; tensorboardX a shape [1] vector, which TensorBoard renders "
        "as a one-cell table around the same markdown.",
    "histogram_buckets":
        "Same TensorFlow default limits and the same counts per limit, but tensorboardX "
        "(np.histogram) keeps every empty bucket between the first and last non-empty one "
        "plus one empty bucket on the left, while trainbus merges each run of empty "
        "buckets into one (labelled with the run's last limit) and emits no leading empty "
        "bucket. Compared after trimming empty buckets at both ends and merging runs of "
        "empty buckets, which changes nothing TensorBoard draws (an empty stretch is "
        "empty either way).",
    "image_gray":
        "A 1-channel image (layout HW, or C=1) is written as a gray PNG (colorspace 1) by "
        "trainbus, as an RGB PNG with R=G=B (colorspace 3) by tensorboardX (and PyTorch). "
        "Pixels are compared after expanding gray to RGB.",
    "png_bytes":
        "Different PNG encoders (libpng level 3 vs Pillow) compress differently; the "
        "decoded pixels are compared, not the bytes.",
    "audio_rounding":
        "trainbus converts samples to 16-bit PCM by truncation (x * 32767 toward zero, "
        "as torch.utils.tensorboard does), tensorboardX through libsndfile by rounding to "
        "nearest: samples may differ by 1/32767.",
    "audio_tensor_form":
        "trainbus writes audio in TensorBoard's blob-sequence form (plugin 'audio', a "
        "DT_STRING [1] tensor holding the WAV, encoding WAV), which both of TensorBoard's loaders "
        "serve as audio/wav; tensorboardX (and PyTorch) write the legacy Summary.Audio, "
        "which TensorBoard's data server serves as application/octet-stream. Compared as "
        "TensorBoard loads them (it converts the legacy form into the tensor form): the WAV "
        "clip, its header and the encoding; the legacy-only metadata fields (display name, "
        "converted_to_tensor) are not.",
    "wav_bytes":
        "Different WAV writers; the decoded header fields and samples are compared, not "
        "the bytes.",
    "soundfile_stand_in":
        "tensorboardX's add_audio needs the 'soundfile' package, which the pinned venv "
        "does not include. parity_writer.py then supplies a stand-in for the one call "
        "tensorboardX makes (16-bit PCM, rounded to nearest like libsndfile); with "
        "soundfile installed the real one is used.",
}

# The tags each kind wrote (regular expressions over normalised tags).
KIND_TAGS = {
    "scalar": r"scalar/.*",
    "scalars": r"loss/multi",
    "histogram": r"hist/.*",
    "image": r"image/.*",
    "images": r"images/.*",
    "text": r"notes",
    "hparams": r"_hparams_/.*|hp/.*",
    "pr_curve": r"pr/.*",
    "custom_scalars": r"custom_scalars__config__",
    "audio": r"audio/.*",
}

TRAINBUS, TBX = "trainbus", "tensorboardX"


def difference(key):
    """Names the DIFFERENCES entry a normalisation applies."""
    assert key in DIFFERENCES, key
    return key


def find_writer():
    path = os.environ.get("TRAINBUS_PARITY_WRITER")
    if path:
        return path
    # Manual runs: where the build puts it (TRAINBUS_BUILD_DIR as in tbcompat.py).
    build = os.environ.get("TRAINBUS_BUILD_DIR") or os.path.join(REPO, "build")
    for rel in ("tests/tensorboard_compat/parity_writer", "bin/parity_writer"):
        candidate = os.path.join(build, rel)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class Record:
    """One Summary.Value: as written (raw) and as TensorBoard ingests it (loaded)."""

    def __init__(self, run, file, step, wall_time, raw, loaded):
        self.run, self.file, self.step, self.wall_time = run, file, step, wall_time
        self.raw, self.loaded = raw, loaded


def load_root(root):
    """{run: [file events...]} and [Record] for every event file under root."""
    files, records = {}, []
    for directory, _, names in sorted(os.walk(root)):
        run = os.path.relpath(directory, root)
        for name in sorted(n for n in names if "tfevents" in n):
            path = os.path.join(directory, name)
            raw_events = list(event_file_loader.LegacyEventFileLoader(path).Load())
            loaded_events = list(event_file_loader.EventFileLoader(path).Load())
            files.setdefault(run, []).append((name, raw_events))
            assert len(raw_events) == len(loaded_events), path
            for raw, loaded in zip(raw_events, loaded_events):
                if not raw.HasField("summary"):
                    continue
                assert len(raw.summary.value) == len(loaded.summary.value), path
                for rv, lv in zip(raw.summary.value, loaded.summary.value):
                    records.append(Record(run, path, raw.step, raw.wall_time, rv, lv))
    return files, records


def normalise_tbx_runs(records):
    """Maps tensorboardX's sub-run names onto trainbus's (see DIFFERENCES)."""
    tags_by_run = {}
    for r in records:
        tags_by_run.setdefault(r.run, set()).add(r.raw.tag)
    rename = {}
    for run, tags in tags_by_run.items():
        if re.fullmatch(r"\d+\.\d+", run) and all(t.startswith("_hparams_/") or
                                                   t.startswith("hp/") for t in tags):
            difference("add_hparams_default_run")
            rename[run] = "."
        elif len(tags) == 1:
            (tag,) = tags
            head, _, series = run.rpartition("/")
            if head == tag:
                difference("add_scalars_run_dirs")
                rename[run] = tag.replace("/", "_") + "_" + series
    for r in records:
        r.run = rename.get(r.run, r.run)
    return rename


def tag_of(side, record):
    tag = record.raw.tag
    if (side == TBX and record.raw.metadata.plugin_data.plugin_name == "text" and
            tag.endswith("/text_summary")):
        difference("text_tag_suffix")
        tag = tag[:-len("/text_summary")]
    return tag


class TensorboardXParityTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        writer = find_writer()
        if writer is None:
            # A failure with the reason, never a skip (as in tbcompat.py).
            raise AssertionError(
                "parity_writer not found: build it (target parity_writer) and set "
                "TRAINBUS_PARITY_WRITER to its path")
        cls._tmp = tempfile.TemporaryDirectory(prefix="trainbus_parity_")
        cls.roots = {TRAINBUS: os.path.join(cls._tmp.name, "trainbus"),
                     TBX: os.path.join(cls._tmp.name, "tensorboardx")}
        cls.t0 = time.time()
        proc = subprocess.run([writer, cls.roots[TRAINBUS]], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{writer} failed ({proc.returncode}):\n{proc.stderr}")
        parity_writer.write(cls.roots[TBX])
        cls.t1 = time.time()

        cls.files, cls.records, cls.by_key = {}, {}, {}
        for side in (TRAINBUS, TBX):
            files, records = load_root(cls.roots[side])
            cls.files[side] = files
            cls.records[side] = records
        cls.tbx_rename = normalise_tbx_runs(cls.records[TBX])
        for side in (TRAINBUS, TBX):
            by_key = {}
            for r in cls.records[side]:
                by_key.setdefault((r.run, tag_of(side, r)), []).append(r)
            cls.by_key[side] = by_key

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    # Helpers.

    def keys(self, kind):
        """The (run, tag) keys of a kind, checked to be the same on both sides."""
        pattern = re.compile(KIND_TAGS[kind])
        keys = {side: sorted(k for k in self.by_key[side] if pattern.fullmatch(k[1]))
                for side in (TRAINBUS, TBX)}
        self.assertEqual(keys[TRAINBUS], keys[TBX], f"{kind}: runs/tags differ")
        self.assertTrue(keys[TRAINBUS], f"{kind}: nothing written")
        return keys[TRAINBUS]

    def pairs(self, key, check_steps=True):
        """The records of one (run, tag) on both sides, paired in order."""
        a, b = self.by_key[TRAINBUS][key], self.by_key[TBX][key]
        if check_steps:
            self.assertEqual([r.step for r in a], [r.step for r in b], f"{key}: steps")
        else:
            self.assertEqual(len(a), len(b), f"{key}: number of records")
        for r in a + b:
            # difference("wall_time"): not compared, only sane.
            self.assertGreaterEqual(r.wall_time, self.t0 - 5, key)
            self.assertLessEqual(r.wall_time, self.t1 + 5, key)
        return list(zip(a, b))

    def assert_loaded_metadata_equal(self, key, x, y):
        """After loading, the metadata (plugin name and content, data class) is identical."""
        difference("data_class")
        self.assertEqual(x.loaded.metadata, y.loaded.metadata, f"{key}: loaded metadata")

    def assert_scalar_records(self, kind):
        for key in self.keys(kind):
            for x, y in self.pairs(key):
                self.assertEqual(x.raw.WhichOneof("value"), "simple_value", key)
                self.assertEqual(y.raw.WhichOneof("value"), "simple_value", key)
                # simple_value is a float32 field: compare the float32 bits.
                self.assertEqual(np.float32(x.raw.simple_value).tobytes(),
                                 np.float32(y.raw.simple_value).tobytes(), f"{key}@{x.step}")
                self.assertEqual(x.raw.metadata, y.raw.metadata, key)
                self.assertEqual(x.loaded, y.loaded, f"{key}@{x.step}: loaded value")

    # Layout.

    def test_run_layout(self):
        """The same runs, one event file each, each starting with its file_version."""
        raw_runs = {TRAINBUS: sorted(self.files[TRAINBUS]), TBX: sorted(self.files[TBX])}
        self.assertEqual(raw_runs[TRAINBUS], [".", "hp_named", "loss_multi_train",
                                              "loss_multi_val"])
        timestamp_runs = [r for r in raw_runs[TBX] if re.fullmatch(r"\d+\.\d+", r)]
        self.assertEqual(len(timestamp_runs), 1, raw_runs[TBX])
        self.assertEqual(sorted(set(raw_runs[TBX]) - set(timestamp_runs)),
                         [".", "hp_named", "loss/multi/train", "loss/multi/val"])
        # After the declared renames the runs are the same.
        self.assertEqual(sorted({self.tbx_rename.get(r, r) for r in raw_runs[TBX]}),
                         raw_runs[TRAINBUS])
        for side in (TRAINBUS, TBX):
            for run, files in self.files[side].items():
                if side == TRAINBUS:
                    self.assertEqual(len(files), 1, f"{side} {run}: {files}")
                for name, events in files:
                    difference("event_file_names")
                    self.assertRegex(name, r"^events\.out\.tfevents\.\d+\.", name)
                    self.assertEqual(events[0].file_version, "brain.Event:2", f"{side} {name}")
                    for e in events[1:]:
                        self.assertEqual(e.WhichOneof("what"), "summary",
                                         f"{side} {run}/{name}: unexpected event {e}")

    def test_every_record_is_compared(self):
        """No record on either side falls outside the kinds compared below."""
        patterns = [re.compile(p) for p in KIND_TAGS.values()]
        for side in (TRAINBUS, TBX):
            stray = [k for k in self.by_key[side] if not any(p.fullmatch(k[1]) for p in patterns)]
            self.assertEqual(stray, [], side)
        self.assertEqual(sorted(self.by_key[TRAINBUS]), sorted(self.by_key[TBX]))

    # One test per kind.

    def test_scalar(self):
        self.assert_scalar_records("scalar")

    def test_scalars(self):
        self.assertEqual(self.keys("scalars"), [("loss_multi_train", "loss/multi"),
                                                ("loss_multi_val", "loss/multi")])
        self.assert_scalar_records("scalars")

    def test_histogram(self):
        for key in self.keys("histogram"):
            for x, y in self.pairs(key):
                where = f"{key}@{x.step}"
                hx, hy = x.raw.histo, y.raw.histo
                self.assertEqual(x.raw.WhichOneof("value"), "histo", where)
                self.assertEqual(y.raw.WhichOneof("value"), "histo", where)
                for field in ("min", "max", "num", "sum", "sum_squares"):
                    self.assertEqual(getattr(hx, field), getattr(hy, field), f"{where}: {field}")
                for h in (hx, hy):
                    self.assertEqual(len(h.bucket), len(h.bucket_limit), where)
                    self.assertTrue(all(a < b for a, b in zip(h.bucket_limit, h.bucket_limit[1:])),
                                    f"{where}: limits not increasing")
                    self.assertEqual(sum(h.bucket), h.num, f"{where}: counts")
                # The same count at the same limit wherever there is a value.
                self.assertEqual([(l, c) for l, c in zip(hx.bucket_limit, hx.bucket) if c],
                                 [(l, c) for l, c in zip(hy.bucket_limit, hy.bucket) if c], where)
                difference("histogram_buckets")
                self.assertEqual(merged_buckets(hx), merged_buckets(hy), where)
                # What TensorBoard draws: the loaded [k, 3] (left, right, count) tensor.
                tx = tensor_util.make_ndarray(x.loaded.tensor)
                ty = tensor_util.make_ndarray(y.loaded.tensor)
                self.assertEqual(tx.dtype, np.float32, where)
                self.assertEqual(ty.dtype, np.float32, where)
                np.testing.assert_array_equal(merge_empty_rows(tx), merge_empty_rows(ty),
                                              err_msg=where)
                self.assert_loaded_metadata_equal(key, x, y)
                self.assertEqual(x.loaded.metadata.plugin_data.plugin_name, "histograms")

    def assert_image_records(self, kind):
        for key in self.keys(kind):
            for x, y in self.pairs(key):
                where = f"{key}@{x.step}"
                ix, iy = x.raw.image, y.raw.image
                self.assertEqual((ix.height, ix.width), (iy.height, iy.width), where)
                difference("png_bytes")
                px, py = decode_png(ix), decode_png(iy)
                self.assertEqual(px.shape[:2], (ix.height, ix.width), where)
                self.assertEqual(py.shape[:2], (iy.height, iy.width), where)
                self.assertEqual(px.shape[2], ix.colorspace, f"{where}: PNG vs colorspace")
                self.assertEqual(py.shape[2], iy.colorspace, f"{where}: PNG vs colorspace")
                if ix.colorspace != iy.colorspace:
                    difference("image_gray")
                    self.assertEqual((ix.colorspace, iy.colorspace), (1, 3), where)
                    px = np.repeat(px, 3, axis=2)
                np.testing.assert_array_equal(px, py, err_msg=f"{where}: pixels")
                # Loaded: [width, height, png] strings under the images plugin.
                lx = tensor_util.make_ndarray(x.loaded.tensor)
                ly = tensor_util.make_ndarray(y.loaded.tensor)
                self.assertEqual(list(lx[:2]), list(ly[:2]), where)
                self.assert_loaded_metadata_equal(key, x, y)
                self.assertEqual(x.loaded.metadata.plugin_data.plugin_name, "images")

    def test_image(self):
        self.assert_image_records("image")

    def test_images(self):
        self.assert_image_records("images")

    def test_text(self):
        for key in self.keys("text"):
            for x, y in self.pairs(key):
                where = f"{key}@{x.step}"
                difference("text_tag_suffix")
                self.assertEqual(x.raw.tag, key[1])
                self.assertEqual(y.raw.tag, key[1] + "/text_summary")
                for r in (x, y):
                    self.assertEqual(r.raw.metadata.plugin_data.plugin_name, "text", where)
                    content = text_pb2.TextPluginData.FromString(
                        r.raw.metadata.plugin_data.content)
                    self.assertEqual(content, text_pb2.TextPluginData(version=0), where)
                    self.assertEqual(r.raw.tensor.dtype, types_pb2.DT_STRING, where)
                self.assertEqual(list(x.raw.tensor.string_val), list(y.raw.tensor.string_val),
                                 where)
                difference("text_shape")
                ax = tensor_util.make_ndarray(x.raw.tensor)
                ay = tensor_util.make_ndarray(y.raw.tensor)
                self.assertEqual((ax.shape, ay.shape), ((), (1,)), where)
                # As the text plugin renders them: markdown, and a one-cell table of it.
                hx = text_plugin.text_array_to_html(ax, enable_markdown=True)
                hy = text_plugin.text_array_to_html(ay, enable_markdown=True)
                self.assertEqual(hx, plugin_util.markdown_to_safe_html(ax.item()), where)
                self.assertTrue(hy.startswith("<table>"), where)
                self.assertIn(hx, hy, where)
                self.assert_loaded_metadata_equal(key, x, y)

    def test_hparams(self):
        keys = self.keys("hparams")
        for run in (".", "hp_named"):
            self.assertIn((run, "_hparams_/experiment"), keys)
        metric_steps = {}
        for key in keys:
            if key[1].startswith("hp/"):
                for x, y in self.pairs(key):
                    metric_steps[key[0]] = x.step
        for key in keys:
            if key[1].startswith("hp/"):
                continue
            difference("hparams_step")
            for x, y in self.pairs(key, check_steps=False):
                where = str(key)
                self.assertEqual(x.step, metric_steps[key[0]], where)
                self.assertEqual(y.step, 0, where)
                dx = hparams_content(x.raw)
                dy = hparams_content(y.raw)
                self.assertEqual(dx.version, 0, where)
                self.assertEqual(dx.WhichOneof("data"), dy.WhichOneof("data"), where)
                difference("hparams_times")
                for field in ("experiment.time_created_secs",
                              "session_start_info.start_time_secs",
                              "session_end_info.end_time_secs"):
                    part, name = field.split(".")
                    if dx.WhichOneof("data") != part:
                        continue
                    self.assertGreaterEqual(getattr(getattr(dx, part), name), self.t0 - 5, where)
                    self.assertLessEqual(getattr(getattr(dx, part), name), self.t1 + 5, where)
                    self.assertEqual(getattr(getattr(dy, part), name), 0, where)
                    getattr(dx, part).ClearField(name)
                self.assertEqual(dx, dy, where)
                # Loaded: both become DATA_CLASS_TENSOR records with the null tensor.
                for r in (x, y):
                    self.assertEqual(r.loaded.metadata.data_class,
                                     summary_pb2.DATA_CLASS_TENSOR, where)
                    self.assertEqual(r.loaded.tensor, hparams_metadata.NULL_TENSOR, where)
        # The values the dashboard shows, spelled out once.
        start = hparams_content(self.by_key[TRAINBUS][("hp_named",
                                                        "_hparams_/session_start_info")][0].raw)
        values = {k: v.WhichOneof("kind") + ":" + str(getattr(v, v.WhichOneof("kind")))
                  for k, v in start.session_start_info.hparams.items()}
        self.assertEqual(values, {"batch": "number_value:32.0", "lr": "number_value:0.01",
                                  "nesterov": "bool_value:True", "opt": "string_value:sgd"})
        # The metrics are plain scalars on both sides.
        for key in keys:
            if key[1].startswith("hp/"):
                for x, y in self.pairs(key):
                    self.assertEqual(x.raw.simple_value, y.raw.simple_value, key)
                    self.assertEqual(x.loaded, y.loaded, key)

    def test_pr_curve(self):
        for key in self.keys("pr_curve"):
            for x, y in self.pairs(key):
                where = f"{key}@{x.step}"
                for r in (x, y):
                    self.assertEqual(r.raw.metadata.plugin_data.plugin_name, "pr_curves", where)
                    self.assertEqual(r.raw.tensor.dtype, types_pb2.DT_FLOAT, where)
                cx = pr_curve_pb2.PrCurvePluginData.FromString(
                    x.raw.metadata.plugin_data.content)
                cy = pr_curve_pb2.PrCurvePluginData.FromString(
                    y.raw.metadata.plugin_data.content)
                self.assertEqual(cx, cy, where)
                ax = tensor_util.make_ndarray(x.raw.tensor)
                ay = tensor_util.make_ndarray(y.raw.tensor)
                self.assertEqual(ax.shape, (6, cx.num_thresholds), where)
                self.assertEqual(ax.shape, ay.shape, where)
                np.testing.assert_allclose(ax, ay, rtol=1e-6, atol=0, err_msg=where)
                self.assert_loaded_metadata_equal(key, x, y)

    def test_custom_scalars(self):
        for key in self.keys("custom_scalars"):
            self.assertEqual(key[0], ".")
            for x, y in self.pairs(key):
                for r in (x, y):
                    self.assertEqual(r.step, 0, key)
                    self.assertEqual(r.raw.metadata.plugin_data.plugin_name, "custom_scalars")
                    self.assertEqual(r.raw.tensor.dtype, types_pb2.DT_STRING)
                    self.assertEqual(tensor_util.make_ndarray(r.raw.tensor).shape, ())
                self.assertEqual(x.raw.metadata.plugin_data.content,
                                 y.raw.metadata.plugin_data.content, key)
                lx = layout_pb2.Layout.FromString(x.raw.tensor.string_val[0])
                ly = layout_pb2.Layout.FromString(y.raw.tensor.string_val[0])
                self.assertEqual(lx, ly, key)
                self.assertEqual([c.title for c in lx.category], ["Losses", "Speed"])
                self.assert_loaded_metadata_equal(key, x, y)

    def test_audio(self):
        difference("soundfile_stand_in")
        difference("audio_tensor_form")
        note = f"(tensorboardX audio via {parity_writer.SOUNDFILE_USED})"
        for key in self.keys("audio"):
            for x, y in self.pairs(key):
                where = f"{key}@{x.step} {note}"
                # As written: trainbus the tensor form, tensorboardX the legacy one.
                self.assertEqual(x.raw.WhichOneof("value"), "tensor", where)
                ay = y.raw.audio
                self.assertEqual(ay.content_type, "audio/wav", where)
                # As TensorBoard loads them: one WAV clip each, encoding WAV.
                tx, ty = x.loaded.tensor, y.loaded.tensor
                self.assertEqual([d.size for d in tx.tensor_shape.dim], [1], where)
                self.assertEqual([d.size for d in ty.tensor_shape.dim], [1], where)
                for v in (x.loaded, y.loaded):
                    self.assertEqual(v.metadata.plugin_data.plugin_name, "audio", where)
                    content = audio_pb2.AudioPluginData.FromString(v.metadata.plugin_data.content)
                    self.assertEqual(content.encoding, audio_pb2.AudioPluginData.WAV, where)
                    self.assertEqual(v.metadata.data_class, summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
                                     where)
                difference("wav_bytes")
                wx, sx = decode_wav(tx.string_val[0])
                wy, sy = decode_wav(ty.string_val[0])
                self.assertEqual(wx, wy, f"{where}: WAV header")
                self.assertEqual(wx, (ay.num_channels, 2, int(ay.sample_rate), ay.length_frames),
                                 where)
                difference("audio_rounding")
                diff = np.abs(sx.astype(np.int32) - sy.astype(np.int32))
                self.assertLessEqual(int(diff.max()), 1, f"{where}: samples differ by > 1/32767")


def merged_buckets(h):
    """(limit, count) pairs without empty buckets at the ends, each run of empty
    buckets merged into one labelled with the run's last limit."""
    pairs = list(zip(h.bucket_limit, h.bucket))
    while pairs and pairs[0][1] == 0:
        pairs.pop(0)
    while pairs and pairs[-1][1] == 0:
        pairs.pop()
    out = []
    for limit, count in pairs:
        if count == 0 and out and out[-1][1] == 0:
            out[-1] = (limit, 0)
        else:
            out.append((limit, count))
    return out


def merge_empty_rows(t):
    """Joins adjacent empty (left, right, 0) rows of a loaded histogram tensor."""
    rows = []
    for left, right, count in t.tolist():
        if count == 0 and rows and rows[-1][2] == 0 and rows[-1][1] == left:
            rows[-1][1] = right
        else:
            rows.append([left, right, count])
    return np.array(rows, dtype=np.float32).reshape(-1, 3)


def decode_png(image):
    with Image.open(io.BytesIO(image.encoded_image_string)) as im:
        im.load()
        assert im.mode in ("L", "RGB", "RGBA"), im.mode  # gray, RGB, RGBA: 8 bits each
        arr = np.asarray(im)
    return arr.reshape(arr.shape[0], arr.shape[1], -1)


def decode_wav(data):
    with wave.open(io.BytesIO(data), "rb") as f:
        header = (f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes())
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    return header, samples


def hparams_content(value):
    assert value.metadata.plugin_data.plugin_name == "hparams", value.tag
    return hparams_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)


if __name__ == "__main__":
    unittest.main()
