"""The Graphs, Projector, Mesh dashboards and videos, through the real TensorBoard.

dashboards_writer.cc writes a model graph, two embeddings, two meshes and a
video with trainbus's SummaryWriter into <tmp>/trainbus; this module writes
the same embeddings and meshes with tensorboardX into <tmp>/tensorboardx.
Then, for each of TensorBoard's two loaders (the Rust data server and the
Python EventMultiplexer), it asks the HTTP routes each dashboard calls and
checks what they serve:

  Graphs     /data/plugin/graphs/graph: the nodes, their inputs and shapes
  Projector  /data/plugin/projector/{info,tensor,metadata,sprite_image}:
             the same points, labels and sprite pixels as tensorboardX's
  Mesh       /data/plugin/mesh/{tags,meshes,data}: the same vertices, faces
             and colours as tensorboardX's
  Images     /data/plugin/images/individualImage: the video, an animated
             GIF whose frames are tensorboardX's _prepare_video grid

Deliberate differences from tensorboardX, each checked where it applies:
  - mesh tags: trainbus names a mesh's tensors <tag>_VERTEX/_FACE/_COLOR with
    their own dtypes (float32, int32, uint8) and the `components` bitmask, as
    TensorBoard's own mesh summary does; tensorboardX writes <tag>_1/_2/_3,
    every part as float32, without components. The dashboard serves both alike.
  - sprite: tensorboardX pads the sprite with black rows to a square; trainbus
    writes only the rows it needs. The Projector reads images row-major from
    the top, so both show the same thumbnails.
  - video: tensorboardX needs moviepy (not installed here), so the GIF is
    compared with tensorboardX's own grid function (_prepare_video) instead.
  - graph: tensorboardX's add_graph traces with PyTorch's JIT; there is no
    Python LibTorch here, so the graph is checked against the model's known
    structure.

    TRAINBUS_DASHBOARDS_WRITER=<dashboards_writer binary> \\
        build/test-tools/venv/bin/python -m unittest tests/tensorboard_compat/test_dashboards.py -v
"""

import io
import os
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
from PIL import Image
from google.protobuf import text_format

from tensorboard.compat.proto import graph_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tbcompat  # noqa: E402

TRAINBUS, TBX = "trainbus", "tensorboardx"
LOADERS = ("fast", "python")


def make(shape, f, dtype):
    """The arrays of dashboards_writer.cc: f over the flat index, reshaped."""
    n = int(np.prod(shape))
    return np.array([f(j) for j in range(n)], dtype=dtype).reshape(shape)


FEAT = make((10, 4), lambda j: ((j * 7) % 23 - 11) / 4.0, np.float32)
FEAT_LABELS = ["p%d" % i for i in range(10)]
THUMBS = make((10, 3, 4, 4), lambda j: ((j * 5) % 17) / 16.0, np.float32)
TABLE = make((6, 3), lambda j: j / 8.0, np.float32)
TABLE_HEADER = ["name", "group"]
TABLE_ROWS = [["n%d" % i, "even" if i % 2 == 0 else "odd"] for i in range(6)]
TETRA = np.array([0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1], np.float32).reshape(1, 4, 3)
FACES = np.array([0, 1, 2, 0, 1, 3, 0, 2, 3, 1, 2, 3], np.int32).reshape(1, 4, 3)
COLORS = np.array([255, 0, 0, 0, 255, 0, 0, 0, 255, 128, 128, 128], np.uint8).reshape(1, 4, 3)
CAMERA = {"camera": {"cls": "PerspectiveCamera", "fov": 75}}
CLOUD = make((2, 5, 3), lambda j: (j % 11) / 4.0 - 1.0, np.float32)
CLOUD_COLORS = make((2, 5, 3), lambda j: (j * 37) % 256, np.uint8)
CLIP = make((3, 4, 3, 6, 8), lambda j: (j * 5) % 256, np.uint8)


def write_tensorboardx(root):
    from tensorboardX import SummaryWriter
    w = SummaryWriter(root)
    w.add_embedding(FEAT, metadata=FEAT_LABELS, label_img=THUMBS, global_step=3, tag="feat")
    w.add_embedding(TABLE, metadata=TABLE_ROWS, metadata_header=TABLE_HEADER, global_step=5,
                    tag="table")
    w.add_mesh("tetra", vertices=TETRA, colors=COLORS, faces=FACES, config_dict=CAMERA,
               global_step=2)
    w.add_mesh("cloud", vertices=CLOUD, colors=CLOUD_COLORS, global_step=2)
    w.close()


def find_writer():
    path = os.environ.get("TRAINBUS_DASHBOARDS_WRITER")
    if path and os.access(path, os.X_OK):
        return path
    guess = os.path.join(tbcompat.build_dir(), "tests", "tensorboard_compat", "dashboards_writer")
    return guess if os.access(guess, os.X_OK) else None


class DashboardsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        writer = find_writer()
        if writer is None:
            raise AssertionError("dashboards_writer not found: build it (target "
                                 "dashboards_writer) and set TRAINBUS_DASHBOARDS_WRITER")
        cls._tmp = tempfile.TemporaryDirectory(prefix="trainbus_dashboards_")
        cls.root = cls._tmp.name
        proc = subprocess.run([writer, os.path.join(cls.root, TRAINBUS)], capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s" % (writer, proc.returncode, proc.stderr))
        write_tensorboardx(os.path.join(cls.root, TBX))
        cls.served = {}
        for loader in LOADERS:
            with tbcompat.TensorBoardServer(cls.root, loader) as server:
                cls.served[loader] = cls.fetch(server.client(), loader)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    @classmethod
    def fetch(cls, c, loader):
        """Everything the dashboards would ask, once the loader has the runs."""
        deadline = time.monotonic() + 60
        while loader == "fast" and time.monotonic() < deadline:
            tags = c.get_json("/data/plugin/mesh/tags")
            images = c.image_tags()
            if tags.get(TRAINBUS) and tags.get(TBX) and images.get(TRAINBUS):
                break
            time.sleep(0.5)
        out = {"graph_info": c.get_json("/data/plugin/graphs/info"),
               "graph": c.get_bytes("/data/plugin/graphs/graph?run=%s&conceptual=false"
                                    % TRAINBUS)[0],
               "projector_runs": c.get_json("/data/plugin/projector/runs"),
               "mesh_tags": c.get_json("/data/plugin/mesh/tags"),
               "images": c.images(TRAINBUS, "clip")}
        for side in (TRAINBUS, TBX):
            info = c.get_json("/data/plugin/projector/info", run=side)
            out[("info", side)] = info
            for e in info["embeddings"]:
                name = e["tensorName"]
                q = "run=%s&name=%s" % (side, name)
                out[("tensor", side, name)] = c.get_bytes("/data/plugin/projector/tensor?" + q)[0]
                out[("metadata", side, name)] = c.get_bytes(
                    "/data/plugin/projector/metadata?" + q)[0]
                if "sprite" in e:
                    out[("sprite", side, name)] = c.get_bytes(
                        "/data/plugin/projector/sprite_image?" + q)[0]
            for tag, samples in (("tetra", 1), ("cloud", 2)):
                out[("meshes", side, tag)] = c.get_json("/data/plugin/mesh/meshes", run=side,
                                                        tag=tag, sample=0)
                for sample in range(samples):
                    for part in ("VERTEX", "FACE", "COLOR"):
                        out[("mesh", side, tag, sample, part)] = c.get_bytes(
                            "/data/plugin/mesh/data?run=%s&tag=%s&sample=%d&step=2&content_type=%s"
                            % (side, tag, sample, part))[0]
        out["video"] = c.image_bytes(out["images"][0]["query"])[0] if out["images"] else b""
        return out

    # Graphs.

    def test_graph(self):
        for loader in LOADERS:
            with self.subTest(loader=loader):
                s = self.served[loader]
                self.assertTrue(s["graph_info"][TRAINBUS]["run_graph"])
                graph = text_format.Parse(s["graph"].decode(), graph_pb2.GraphDef())
                nodes = {n.name: n for n in graph.node}
                shapes = {name: [d.size for d in n.attr["_output_shapes"].list.shape[0].dim]
                          for name, n in nodes.items() if "_output_shapes" in n.attr}
                conv = "Sequential/Conv2d[0]/convolution"
                self.assertEqual(list(nodes[conv].input),
                                 ["input", "Sequential/Conv2d[0]/weight",
                                  "Sequential/Conv2d[0]/bias"])
                self.assertEqual(shapes[conv], [2, 4, 8, 8])
                self.assertEqual(shapes["Sequential/Conv2d[0]/weight"], [4, 1, 3, 3])
                self.assertEqual(nodes["Sequential/Conv2d[0]/weight"].op, "Parameter")
                self.assertEqual(list(nodes["Sequential/ReLU[1]/relu"].input), [conv])
                pool = "Sequential/MaxPool2d[2]/maxPool2DWithIndices"
                self.assertEqual(shapes[pool], [2, 4, 4, 4])
                self.assertEqual(nodes["Sequential/Dropout[4]/dropout"].op, "Dropout")
                self.assertIn("Sequential/Dropout[4]/dropout",
                              nodes["Sequential/Linear[5]/addmm"].input)
                self.assertEqual(list(nodes["output"].input), ["Sequential/Linear[5]/addmm"])
                self.assertEqual(shapes["output"], [2, 3])
                # Every input names a node of the graph: the dashboard draws every edge.
                for n in graph.node:
                    for i in n.input:
                        self.assertIn(i, nodes, n.name)

    # Projector.

    def test_projector_lists_both_runs_embeddings(self):
        for loader in LOADERS:
            with self.subTest(loader=loader):
                s = self.served[loader]
                self.assertEqual(sorted(s["projector_runs"]), [TBX, TRAINBUS])
                for side in (TRAINBUS, TBX):
                    infos = {e["tensorName"]: e for e in s[("info", side)]["embeddings"]}
                    self.assertEqual(sorted(infos), ["feat:00003", "table:00005"], side)
                    self.assertEqual(infos["feat:00003"]["tensorShape"], [10, 4])
                    self.assertEqual(infos["feat:00003"]["sprite"]["singleImageDim"], [4, 4])
                    self.assertEqual(infos["table:00005"]["tensorShape"], [6, 3])
                    self.assertNotIn("sprite", infos["table:00005"])

    def test_projector_points_labels_and_sprites_equal_tensorboardx(self):
        for loader in LOADERS:
            with self.subTest(loader=loader):
                s = self.served[loader]
                for name, mat in (("feat:00003", FEAT), ("table:00005", TABLE)):
                    ours = np.frombuffer(s[("tensor", TRAINBUS, name)], np.float32)
                    theirs = np.frombuffer(s[("tensor", TBX, name)], np.float32)
                    np.testing.assert_array_equal(ours, mat.reshape(-1))
                    np.testing.assert_array_equal(ours, theirs)
                    self.assertEqual(s[("metadata", TRAINBUS, name)], s[("metadata", TBX, name)],
                                     name)
                ours = np.asarray(Image.open(io.BytesIO(s[("sprite", TRAINBUS, "feat:00003")]))
                                  .convert("RGB"))
                theirs = np.asarray(Image.open(io.BytesIO(s[("sprite", TBX, "feat:00003")]))
                                    .convert("RGB"))
                # 10 thumbnails of 4x4: 4 columns, 3 rows. tensorboardX pads to 16x16.
                self.assertEqual(ours.shape, (12, 16, 3))
                np.testing.assert_array_equal(ours, theirs[:12])
                self.assertFalse(theirs[12:].any())

    # Mesh.

    def test_meshes_equal_tensorboardx(self):
        expected = {("tetra", 0): (TETRA[0], FACES[0], COLORS[0]),
                    ("cloud", 0): (CLOUD[0], None, CLOUD_COLORS[0]),
                    ("cloud", 1): (CLOUD[1], None, CLOUD_COLORS[1])}
        dtypes = {"VERTEX": np.float32, "FACE": np.int32, "COLOR": np.uint8}
        for loader in LOADERS:
            with self.subTest(loader=loader):
                s = self.served[loader]
                self.assertEqual(s["mesh_tags"][TRAINBUS],
                                 {"tetra": {"samples": 1}, "cloud": {"samples": 2}})
                ours = {m["content_type"]: m for m in s[("meshes", TRAINBUS, "tetra")]}
                self.assertEqual(sorted(ours), [1, 2, 3])
                for m in ours.values():
                    self.assertEqual(m["step"], 2)
                    self.assertEqual(m["components"], 0b1110)
                    self.assertEqual(m["data_shape"], [1, 4, 3])
                    self.assertEqual(m["config"], '{"camera": {"cls": "PerspectiveCamera", '
                                                  '"fov": 75}}')
                for (tag, sample), parts in expected.items():
                    for part, want in zip(("VERTEX", "FACE", "COLOR"), parts):
                        got = s[("mesh", TRAINBUS, tag, sample, part)]
                        other = s[("mesh", TBX, tag, sample, part)]
                        self.assertEqual(got, other, "%s[%d] %s" % (tag, sample, part))
                        if want is None:
                            self.assertEqual(got, b"")
                        else:
                            np.testing.assert_array_equal(
                                np.frombuffer(got, dtypes[part]), want.reshape(-1))

    # Video.

    def test_video_is_a_gif_of_tensorboardx_grid(self):
        from tensorboardX.summary import _prepare_video
        grid = _prepare_video(CLIP)  # [T, H, W, C]: 3 clips padded to 4, one row
        # _prepare_video scales uint8 to [0, 1]; back to the bytes, rounded.
        grid = np.round(grid.astype(np.float64) * 255.0).astype(np.uint8)
        self.assertEqual(grid.shape, (4, 6, 32, 3))
        for loader in LOADERS:
            with self.subTest(loader=loader):
                s = self.served[loader]
                self.assertEqual([i["step"] for i in s["images"]], [1])
                gif = Image.open(io.BytesIO(s["video"]))
                self.assertEqual(gif.format, "GIF")
                self.assertEqual(gif.size, (32, 6))
                self.assertEqual(gif.n_frames, 4)
                self.assertEqual(gif.info.get("loop"), 0)  # forever
                for t in range(4):
                    gif.seek(t)
                    self.assertEqual(gif.info["duration"], 130)  # 8 fps: 12.5/100 s, rounded
                    np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), grid[t],
                                                  "frame %d" % t)


if __name__ == "__main__":
    unittest.main()
