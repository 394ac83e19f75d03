#!/usr/bin/env python3
"""Writes the committed seed corpora of fuzz/ (run once; the outputs are in git).

  python3 fuzz/make_seeds.py      # needs protoc (protobuf-compiler); no Python packages

event_file: real framed event files (valid CRC-32C checksums) of every summary
kind, a truncated and a corrupt one (mode byte 0x00: raw file), and the same
events as payload sequences (mode byte 0x01: the fuzzer frames them).
run_config: JSON, text-format and --set override inputs (mode byte first).
plugin_options: option objects for the target's specs.
mnist_idx, cifar10: dataset files, valid and broken; checkpoint_meta: meta.pb messages.
"""
import os
import struct
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked(header)) + data + struct.pack("<I", masked(data))


def encode_event(text: str) -> bytes:
    return subprocess.run(
        ["protoc", "-I", os.path.join(ROOT, "framework"),
         "--encode=trainbus.tensorboard.proto.Event", "trainbus/tensorboard/proto/event.proto"],
        input=text.encode(), stdout=subprocess.PIPE, check=True).stdout


def f32(x):
    return "".join("\\%03o" % b for b in struct.pack("<f", x))


def write(corpus, name, data: bytes):
    os.makedirs(os.path.join(CORPUS, corpus), exist_ok=True)
    with open(os.path.join(CORPUS, corpus, name), "wb") as f:
        f.write(data)


EVENTS = {
    "version": 'wall_time: 1700000000.5 file_version: "brain.Event:2"',
    "scalar_simple": 'wall_time: 1700000001 step: 3 summary { value { tag: "loss/train" simple_value: 0.25 } }',
    "scalar_tensor": 'step: 4 summary { value { tag: "lr/group0" metadata { plugin_data { plugin_name: "scalars" } } '
                     'tensor { dtype: DT_FLOAT tensor_content: "%s" } } }' % f32(0.05),
    "scalar_double": 'step: 5 summary { value { tag: "val/loss" metadata { plugin_data { plugin_name: "scalars" } } '
                     'tensor { dtype: DT_DOUBLE double_val: 0.125 } } }',
    "histogram": 'step: 100 summary { value { tag: "weights/0.weight" histo { min: -1 max: 1 num: 4 sum: 0 '
                 'sum_squares: 2 bucket_limit: [-0.5, 0, 0.5, 1.7976931348623157e308] bucket: [1, 1, 1, 1] } } }',
    "image": 'step: 0 summary { value { tag: "inputs" image { height: 1 width: 1 colorspace: 1 '
             'encoded_image_string: "\\211PNG\\r\\n\\032\\n" } } }',
    "text": 'step: 0 summary { value { tag: "run/config/text_summary" metadata { plugin_data { plugin_name: "text" } } '
            'tensor { dtype: DT_STRING tensor_shape { dim { size: 1 } } string_val: "**epochs** 5" } } }',
    "hparams": 'summary { value { tag: "_hparams_/session_start_info" metadata { plugin_data { plugin_name: "hparams" '
               'content: "\\022\\004\\n\\002lr" } } tensor { dtype: DT_FLOAT } } }',
    "pr_curve": 'step: 7 summary { value { tag: "pr" metadata { plugin_data { plugin_name: "pr_curves" } } '
                'tensor { dtype: DT_FLOAT tensor_shape { dim { size: 6 } dim { size: 2 } } '
                'float_val: [1, 1, 0, 0, 1, 0.5, 0, 1, 0, 0, 1, 1] } } }',
    "audio": 'step: 1 summary { value { tag: "sound" audio { sample_rate: 8000 num_channels: 1 length_frames: 2 '
             'encoded_audio_string: "RIFF" content_type: "audio/wav" } } }',
    "custom_scalars": 'summary { value { tag: "custom_scalars__config__" metadata { plugin_data { plugin_name: '
                      '"custom_scalars" } } tensor { dtype: DT_STRING string_val: "\\n\\004loss" } } }',
    "session_log": 'step: 9 session_log { status: STOP msg: "done" }',
    "other_plugin": 'step: 2 summary { value { tag: "x" metadata { plugin_data { plugin_name: "mesh" } } '
                    'tensor { dtype: DT_INT64 int64_val: 3 } } }',
}


def main():
    events = {k: encode_event(v) for k, v in EVENTS.items()}
    order = list(EVENTS)
    whole = b"".join(record(events[k]) for k in order)
    write("event_file", "raw_all_kinds", b"\x00" + whole)
    write("event_file", "raw_scalars", b"\x00" + b"".join(
        record(events[k]) for k in ("version", "scalar_simple", "scalar_tensor", "scalar_double")))
    write("event_file", "raw_truncated", b"\x00" + whole[: len(whole) - 7])
    bad = bytearray(record(events["version"]) + record(events["scalar_simple"]))
    bad[-1] ^= 0x40  # data checksum of the second record
    write("event_file", "raw_bad_data_crc", b"\x00" + bytes(bad))
    bad = bytearray(record(events["scalar_simple"]))
    bad[8] ^= 1  # length checksum
    write("event_file", "raw_bad_length_crc", b"\x00" + bytes(bad))
    write("event_file", "raw_not_an_event", b"\x00" + record(b"\xff\xff\xff"))
    write("event_file", "raw_empty", b"\x00")
    for k in order:
        e = events[k]
        write("event_file", "framed_" + k, b"\x01" + struct.pack("<H", len(e)) + e)
    payloads = b"".join(struct.pack("<H", len(events[k])) + events[k] for k in order)
    write("event_file", "framed_all_kinds", b"\x01" + payloads)
    write("event_file", "framed_all_kinds_bad_last", b"\x03" + payloads)

    with open(os.path.join(ROOT, "examples", "shapes", "config.json"), "rb") as f:
        write("run_config", "json_shapes_example", b"\x00" + f.read())
    write("run_config", "json_empty", b"\x00{}")
    write("run_config", "json_full", b"\x00" + b'''{"name": "r", "log_root": "runs",
 "trainer": {"epochs": 2, "batch_size": 32, "drop_last": true, "max_iterations": 10, "seed": 1,
             "validate_every_n_epochs": 1, "validate_every_n_iterations": 5, "num_threads": 1},
 "model": {"type": "mlp", "hidden": [64, 32], "dropout": 0.1},
 "dataset": {"type": "mnist", "dir": "/data/mnist", "train_samples": 100, "val_samples": 10},
 "optimizer": {"type": "adamw", "lr": 0.001, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.01},
 "plugins": [{"name": "progress", "options": {"mode": "lines"}},
             {"name": "tensorboard", "priority": 5, "enabled": false, "options": {"flush_secs": 5}}],
 "plugin_paths": ["/opt/plugins"], "on_plugin_error": "disable_plugin"}''')
    write("run_config", "json_bad_range", b'\x00{"trainer": {"batch_size": 0, "epochs": -1}}')
    write("run_config", "text_basic", b"\x01" + b'''name: "t" trainer { epochs: 3 seed: 9 }
model { type: "cnn" hidden: [4, 8] } optimizer { type: "sgd" lr: 0.1 momentum: 0.9 nesterov: true }
plugins { name: "checkpoint" options { fields { key: "every_n_epochs" value { number_value: 1 } } } }''')
    write("run_config", "text_empty", b"\x01")
    write("run_config", "set_overrides", b"\x02" + b'''trainer.epochs=3
optimizer.type=adam
name=my-run
plugins.progress.enabled=false
plugins.tensorboard.options.flush_secs=5
plugins.tensorboard.options.log_dir=some text
trainer.batch_size=16''')
    write("run_config", "set_bad", b"\x02trainer.epochs=x")

    write("plugin_options", "empty", b"{}")
    write("plugin_options", "all_types", b'''{"flag": true, "count": 7, "rate": 2, "name": "abc",
 "weights": [0.1, 2], "ids": [1, -2, 3], "tags": ["x", "y"], "schedule": {"type": "StepLR", "step_size": 3},
 "anything": [1, "a", null, {"b": false}], "optional_int": -9007199254740992}''')
    write("plugin_options", "wrong_types", b'{"flag": 1, "count": 1.5, "ids": [1.5], "tags": [1]}')
    write("plugin_options", "unknown_key", b'{"bar_widht": 3}')
    write("plugin_options", "big_numbers", b'{"count": 1e300, "ids": [9.3e18], "rate": -1e308}')
    write("plugin_options", "defaults", b'{"count": 1}\n#\x01"12"\n#\x04[1,2]\n#\x07{"a": 1}\n#\x00tru')

    data_file_seeds()
    checkpoint_meta_seeds()


def data_file_seeds():
    """mnist_idx: rank byte, then an IDX file; cifar10: binary batches."""
    def idx(sizes, fill=0):
        n = 1
        for d in sizes:
            n *= d
        return bytes([0, 0, 8, len(sizes)]) + b"".join(struct.pack(">I", d) for d in sizes) + bytes([fill]) * n
    write("mnist_idx", "labels", b"\x00" + idx([5], 3))
    write("mnist_idx", "images", b"\x02" + idx([2, 4, 4], 200))
    write("mnist_idx", "truncated", b"\x02" + idx([2, 4, 4])[:-3])
    write("mnist_idx", "wrapping", b"\x02" + bytes([0, 0, 8, 3]) + b"\xff" * 12)
    record = bytes([7]) + bytes(range(256)) * 12
    write("cifar10", "one_record", record)
    write("cifar10", "two_records", record + bytes([0]) + bytes(3072))
    write("cifar10", "bad_label", bytes([12]) + bytes(3072))
    write("cifar10", "short", record[:-1])


def checkpoint_meta_seeds():
    """checkpoint_meta: meta.pb messages, encoded by protoc from text."""
    def encode(text: str) -> bytes:
        return subprocess.run(
            ["protoc", "-I", os.path.join(ROOT, "framework", "trainer"),
             "--encode=trainbus.checkpoint.CheckpointMeta", "trainbus/proto/checkpoint.proto"],
            input=text.encode(), stdout=subprocess.PIPE, check=True).stdout
    write("checkpoint_meta", "valid", encode(
        'format_version: 1 next_step: 120 epoch: 2 batch_index: 3 reason: "every 10 iterations" '
        'files { name: "model.pt" size: 1000 crc32: 12345 } files { name: "optimizer.pt" size: 10 } '
        'plugin_states { key: "early_stopping" value: "best=0.5" } '
        'plugin_options { key: "early_stopping" value: "{\\"patience\\":2}" } '
        'learning_rates: 0.1 epoch_iterations: 4 epoch_loss_sum: 2.5 batch_size: 64'))
    write("checkpoint_meta", "escaping_name", encode('format_version: 1 files { name: "../../etc/passwd" }'))
    write("checkpoint_meta", "negative", encode("format_version: 1 next_step: -5 epoch: -1"))
    write("checkpoint_meta", "other_version", encode("format_version: 2"))


if __name__ == "__main__":
    main()
