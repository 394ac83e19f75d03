"""The tensorboardX half of the parity test: parity_writer.cc's calls, one for one.

    python parity_writer.py <log_dir>

Inputs use the same integer formulas and exact divisions as parity_writer.cc,
so the arrays are bit-identical to the C++ ones. Keep the two files in step:
same calls, same order, same formulas.
"""

import contextlib
import io
import math
import sys
import types
import wave

import numpy as np

# Which `soundfile` wrote tensorboardX's audio: "soundfile" (the real one) or
# "stand-in" (see _ensure_soundfile). Set by write().
SOUNDFILE_USED = None


def _ensure_soundfile():
    """tensorboardX encodes audio with `soundfile` (libsndfile), which the pinned
    venv does not include. When it is missing, install a stand-in for the one
    call tensorboardX makes, soundfile.write(f, data, samplerate=, format='wav'),
    doing what libsndfile does by default for that call: 16-bit PCM, samples
    rounded to nearest (lrint(x * 0x7FFF)), no further clipping."""
    global SOUNDFILE_USED
    try:
        import soundfile  # noqa: F401
        SOUNDFILE_USED = "soundfile"
        return
    except ImportError:
        pass

    def write(file, data, samplerate, format=None, subtype=None):
        assert (format or "").lower() == "wav" and subtype in (None, "PCM_16")
        data = np.asarray(data)
        if data.ndim == 1:
            data = data[:, None]
        pcm = np.rint(data.astype(np.float64) * 0x7FFF).astype("<i2")
        with wave.open(file, "wb") as out:
            out.setnchannels(data.shape[1])
            out.setsampwidth(2)
            out.setframerate(int(samplerate))
            out.writeframes(pcm.tobytes())

    sys.modules["soundfile"] = types.SimpleNamespace(write=write, __stand_in__=True)
    SOUNDFILE_USED = "stand-in"


def make(dtype, shape, f):
    """Array from a formula over the flat index (like Make<> in parity_writer.cc)."""
    n = math.prod(shape)
    return np.array([f(j) for j in range(n)], dtype=dtype).reshape(shape)


def write(log_dir):
    _ensure_soundfile()
    from tensorboardX import SummaryWriter

    w = SummaryWriter(log_dir)

    # Scalars.
    for i in range(5):
        w.add_scalar("scalar/linear", 0.1 * i, i)
    special = [1.0 / 3.0, -2.5, 1e-8, 123456.789, 3.0e38]
    special_steps = [0, 1, 2, 3, 1000000000000]
    for v, s in zip(special, special_steps):
        w.add_scalar("scalar/special", v, s)

    # add_scalars.
    for i in range(3):
        w.add_scalars("loss/multi", {"train": 1.5 - 0.25 * i, "val": 2.0 - 0.125 * i}, i)

    # Histograms.
    for s in range(2):
        h = make(np.float32, (10, 100), lambda j: ((j * 37 + 11 * s) % 101 - 50) / 8.0)
        w.add_histogram("hist/float32", h, s)
    w.add_histogram("hist/int64", make(np.int64, (50,), lambda j: j % 7 - 3), 0)
    w.add_histogram("hist/span", np.array([(j * j % 97) / 16.0 - 3.0 for j in range(300)]), 3)
    edges = [-(2.0 ** -50), 2.0 ** -50, 0.0, 1.5, -3.25, 4096.0]
    w.add_histogram("hist/edges", np.array(edges), 4)

    # Images.
    w.add_image("image/chw_u8",
                make(np.uint8, (3, 8, 12),
                     lambda j: ((j // 96) * 71 + (j // 12 % 8) * 13 + (j % 12) * 7) % 256),
                0, dataformats="CHW")
    w.add_image("image/hwc_f32", make(np.float32, (6, 10, 3), lambda j: (j * 5 % 257) / 256.0),
                1, dataformats="HWC")
    w.add_image("image/hw_f64", make(np.float64, (5, 7), lambda j: (j * 9 % 64) / 64.0),
                2, dataformats="HW")
    w.add_image("image/chw_gray_u8", make(np.uint8, (1, 4, 6), lambda j: j * 11 % 256),
                3, dataformats="CHW")
    w.add_image("image/hwc_rgba_u8", make(np.uint8, (4, 5, 4), lambda j: j * 29 % 256),
                4, dataformats="HWC")
    w.add_images("images/nchw_f32",
                 make(np.float32, (10, 3, 4, 5), lambda j: (j * 3 % 257) / 256.0),
                 0, dataformats="NCHW")
    w.add_images("images/nchw_gray_u8", make(np.uint8, (3, 1, 4, 4), lambda j: j * 5 % 256),
                 1, dataformats="NCHW")

    # Text.
    markdown = ("**bold** and `code`\n\n- item one\n- item two: caf\u00e9 \u2713\n\n"
                "| a | b |\n|---|---|\n| 1 | 2 |")
    w.add_text("notes", markdown, 0)
    w.add_text("notes", "second *entry*", 5)

    # Hyperparameters (dicts in sorted order: trainbus's HParams is a std::map).
    w.add_hparams({"batch": 32, "lr": 0.01, "nesterov": True, "opt": "sgd"},
                  {"hp/acc": 0.75, "hp/loss": 0.5}, name="hp_named", global_step=7)
    w.add_hparams({"arch": "resnet", "dropout": 0.25}, {"hp/score": 1.25}, global_step=9)

    # PR curves.
    labels = make(np.int64, (200,), lambda j: int(j % 3 == 0))
    preds = make(np.float32, (200,), lambda j: (j * 29 % 257) / 256.0)
    w.add_pr_curve("pr/default", labels, preds, 0)
    blabels = make(np.bool_, (8, 8), lambda j: (j * 5) % 7 < 3)
    bpreds = make(np.float64, (8, 8), lambda j: (j % 17) / 16.0)
    w.add_pr_curve("pr/eleven", blabels, bpreds, 1, num_thresholds=11)

    # Custom scalars.
    w.add_custom_scalars({
        "Losses": {"loss": ["Multiline", ["scalar/linear", "scalar/special"]],
                   "band": ["Margin", ["scalar/linear", "scalar/linear", "scalar/special"]]},
        "Speed": {"ips": ["Multiline", ["scalar/.*"]]},
    })

    # Audio. tensorboardX prints a warning for the clipped stereo clip.
    with contextlib.redirect_stdout(io.StringIO()):
        w.add_audio("audio/mono",
                    make(np.float32, (1000,), lambda j: (j * 73 % 201 - 100) / 128.0),
                    0, sample_rate=8000)
        w.add_audio("audio/stereo",
                    make(np.float32, (500, 2),
                         lambda j: ((j // 2) % 64 - 32) / 32.0 if j % 2 == 0
                         else (40 - (j // 2) % 81) / 32.0),
                    1, sample_rate=16000)

    w.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: parity_writer.py <log_dir>")
    write(sys.argv[1])
