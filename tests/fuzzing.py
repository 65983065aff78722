"""The fuzzing harness (issue 12, "Fuzzing as a habit"): one target per kind of input a
user can hand ckptmigrate, each fed mutated bytes through the public entry points.

Targets (each takes bytes; see ``TARGETS``):

- ``index``: a checkpoint's ``.index`` -> ``open_checkpoint``, ``read`` of every key, the
  object-graph derivations, ``inspect_checkpoint``, ``check`` against the pristine copy.
- ``data``: one ``.data`` shard (half the cases with the index's CRC32Cs recomputed for the
  mutated bytes, so the tensor decoders see them) -> every ``read``, ``inspect(check_crc)``.
- ``state``: the ``checkpoint`` state file -> ``open_checkpoint(dir)``, ``inspect``.
- ``objgraph``: the ``_CHECKPOINTABLE_OBJECT_GRAPH`` tensor -> ``open_checkpoint``, its
  aliases, original names, slot keys, optimizer state and roles, ``inspect``, ``check``,
  ``rebuild_object_graph`` (renames to aliases, a drop, a new variable) and a re-parse.
- ``map``: a YAML map -> ``load_map``, ``parse_map``, then ``plan`` on a real checkpoint.
- ``spec``: a spec file -> ``load_spec``, then ``check`` against it.
- ``safetensors``: a ``.safetensors`` file (seeds written from the seed checkpoints'
  numeric tensors) -> ``open_checkpoint``, every ``read``, ``inspect(check_crc)``, ``check``
  against it; half the mutations edit one header field (offsets, shape, dtype, metadata).
- ``torch``: a ``torch.save`` zip of a state_dict (seeds encoded here from the seed
  checkpoints' tensors, as torch 2 writes them: contiguous, transposed and offset views,
  shared storages) -> ``open_checkpoint``, every ``read``, ``inspect(check_crc)``, ``check``
  against it; half the mutations edit ``data.pkl`` and re-zip it (its CRC-32 then holds, so
  the restricted unpickler meets the mutated pickle), the rest the whole archive's bytes.

Every case ends as one of: ok; a clean error (a ``CkptMigrateError`` with a non-empty
one-paragraph message); a crash (any other exception, or the worker dying); a hang (over
5 s: ``signal.alarm`` in the worker, a hard kill by the parent as a backstop); a blow-up
(a ``MemoryError`` under the worker's ``RLIMIT_AS`` of its start-up size plus 1 GiB, or a
peak RSS over 1 GiB). Cases run in spawned worker processes, each replaced by a fresh one
after ``RECYCLE_CASES`` cases; case ``i`` of a target is mutated by
``random.Random(f"{seed}/{target}/{i}")``, whichever worker runs it, so a run is reproducible.

Seeds: checkpoints TensorFlow writes (``make_tf_seeds``, run in a child process: a Saver
checkpoint with a partitioned variable and Momentum slots, a ``tf.train.Checkpoint`` with
optimizer slots, string and odd-dtype tensors, non-ASCII names), maps and specs written
here, and, when present, the read-only shared corpus (``../shared/corpus``).

Command line (``make fuzz``)::

    python tests/fuzzing.py [--cases N] [--workers K] [--seed S] [--recycle R] [--save-regressions]

Crash inputs are saved (minimised) under ``tests/fuzz_regressions/<target>/`` as
``<seed name>--<hash>.bin``; ``tests/test_fuzzing.py`` replays them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
REGRESSIONS = TESTS_DIR / "fuzz_regressions"
SHARED_CORPUS = REPO.parent / "shared" / "corpus"

TARGETS = ("index", "data", "state", "objgraph", "map", "spec", "safetensors", "torch")
OUTCOMES = ("ok", "clean", "crash", "hang", "blowup")
CASE_SECONDS = 5  # a case over this is a hang
KILL_SECONDS = CASE_SECONDS + 25  # the parent's backstop when the alarm cannot fire
MEMORY_LIMIT = 1 << 30  # a case may use this much beyond the worker's start-up size
# A worker is replaced by a fresh one after this many cases, so what a worker process
# accumulates (the allocator's high-water marks, caches, anything a case leaks) cannot
# build up over a long campaign against MEMORY_LIMIT, which is set once, at its start-up,
# and be reported as a later case's blow-up. The 1,160,000-case soak (~580,000
# cases per worker) reported 11 late MemoryErrors that no case gave alone: those cases
# reserved almost exactly the 1 GiB headroom (a torch byteorder record read whole, since
# fixed), which a fresh worker had and one grown ~10 MB did not. Measured since: a
# worker's address space grows ~8 MB over its first 10,000 cases, then stays within 12 MB
# over 240,000; at the worst rate ever reported (8 MB per 3,000 cases) 20,000 cases would
# take 53 MB, 5% of the headroom. A start-up (seeds, warm-up) takes ~0.3 s, 1% of 20,000
# cases' time. Which worker runs a case never changes it: case i is made from (seed,
# target, i) alone.
RECYCLE_CASES = 20_000
MAX_SEED_BYTES = 1 << 20  # corpus files larger than this are not seeds (mutations stay fast)
MINIMISE_RUNS = 150
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"

# --- seeds -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seed:
    """One seed input: ``data`` replaces ``file`` in a copy of the checkpoint at ``home``
    (its prefix ``prefix``), or, for maps and specs, is planned/checked against it."""

    target: str
    name: str
    data: bytes
    home: str
    prefix: str
    file: str = ""
    splice_only: bool = (
        False  # mutated only into others (a corpus state file naming files not here)
    )


MAP_SEEDS = {
    "rename-regex": """\
version: 1
description: rename and drop
rules:
  - match: 'dense/(kernel|bias)'
    rename: 'layer/{1}'
  - match: '.*/Momentum'
    drop: true
    optional: true
  - role: [optimizer, step]
    drop: true
    optional: true
""",
    "shapes": """\
version: 1
rules:
  - name: dense/kernel
    pad: {shape: [8, 4], fill: zeros}
  - name: dense/bias
    slice: '[0:2]'
  - name: emb
    transpose: [1, 0]
  - name: global_step
    cast: int32
""",
    "blocks": """\
version: 1
params: {units: 2}
rules:
  - name: dense/kernel
    reorder_blocks: {axis: 1, order: [1, 0]}
  - name: emb
    split: {axis: 0, into: [emb_a, emb_b], sizes: [4, 6]}
  - name: dense/bias
    add_to_block: {axis: 0, blocks: 2, block: 1, value: 1.0}
  - init: {name: new/weights, shape: [3, units], dtype: float32, fill: glorot_uniform, seed: 3}
""",
    "tf2": """\
version: 1
description: object-based keys
rules:
  - match: 'model/(.*)/\\.ATTRIBUTES/VARIABLE_VALUE'
    rename: 'net/{1}/.ATTRIBUTES/VARIABLE_VALUE'
    optional: true
  - match: '.*OPTIMIZER_SLOT.*'
    drop: true
    optional: true
  - name: model/w/.ATTRIBUTES/VARIABLE_VALUE
    reshape: [6]
    optional: true
  - name: model/b/.ATTRIBUTES/VARIABLE_VALUE
    resize: {shape: [4], method: linear}
    optional: true
""",
    "concat": """\
version: 1
rules:
  - concat: {sources: [dense/kernel, dense/kernel/Momentum], axis: 0, into: both}
  - name: global_step
    drop: true
  - from: {checkpoint: model.ckpt-1, name: global_step}
  - name: emb
    remap_rows: {old_vocab: old.txt, new_vocab: new.txt, fill: zeros}
  - name: dense/bias
    pad: {shape: [6], fill: truncated_normal, stddev: 0.1, seed: 2}
  - name: dense/bias
    replace: {old: bias, new: b}
""",
}

SPEC_SEEDS = {
    "yaml": """\
variables:
  dense/kernel: {shape: [6, 4], dtype: float32}
  dense/bias: {shape: [4]}
  emb: {shape: [10, 3], dtype: float64}
  global_step: {shape: [], dtype: int64}
  names: {shape: [3], dtype: string}
""",
    "json": json.dumps(
        {"variables": {"a/b": {"shape": [2, 3], "dtype": "bfloat16"}, "c": {"shape": []}}},
        indent=1,
    )
    + "\n",
}


def make_tf_seeds(out: Path) -> None:
    """Checkpoints written by TensorFlow itself, one folder each (run in a child process)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(12)
    (out / "saver_partitioned").mkdir(parents=True)
    # 1. A TF1 Saver checkpoint: a variable partitioned in 3, Momentum slots, a step.
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        v1.set_random_seed(1)
        kernel = v1.get_variable(
            "dense/kernel",
            shape=[6, 4],
            partitioner=v1.fixed_size_partitioner(3),
            initializer=v1.random_normal_initializer(seed=1),
        )
        bias = v1.get_variable("dense/bias", shape=[4], initializer=v1.ones_initializer())
        emb = v1.get_variable("emb", shape=[10, 3], dtype=tf.float64)
        step = v1.train.get_or_create_global_step()
        loss = (
            tf.reduce_sum(tf.square(kernel))
            + tf.reduce_sum(bias)
            + tf.cast(tf.reduce_sum(emb), tf.float32)
        )
        train = v1.train.MomentumOptimizer(0.1, 0.9).minimize(loss, global_step=step)
        saver = v1.train.Saver()
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            session.run(train)
            saver.save(session, str(out / "saver_partitioned" / "model.ckpt"), global_step=1)
    # 2. A tf.train.Checkpoint with optimizer slots and a variable reachable two ways.
    tf2 = out / "tf2_slots"
    module = tf.Module()
    module.w = tf.Variable(rng.standard_normal((2, 3)).astype(np.float32))
    module.b = tf.Variable(np.zeros(3, np.float32))
    module.layers = [tf.Module()]
    module.layers[0].shared = module.w
    optimizer = tf.compat.v1.train.AdamOptimizer(0.1)
    optimizer.minimize(lambda: tf.reduce_sum(module.w) + tf.reduce_sum(module.b))
    checkpoint = tf.train.Checkpoint(model=module, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(tf2), max_to_keep=3)
    manager.save()
    # 3. String tensors and odd dtypes, written by SaveV2.
    strings = out / "strings"
    strings.mkdir()
    tensors = {
        "names": np.array([b"a", b"", b"\xff\x00bin"], dtype=object),
        "grid": np.array([[b"x" * 40, b"y"], [b"", b"zz"]], dtype=object),
        "scalar": np.array(b"one", dtype=object),
        "half": rng.standard_normal((3, 2)).astype(np.float16),
        "bf": tf.constant(rng.standard_normal(4), dtype=tf.bfloat16),
        "small": np.arange(-4, 4, dtype=np.int8),
        "flags": np.array([True, False, True]),
        "empty": np.zeros((0, 3), np.float32),
        "big": rng.standard_normal((32, 32)).astype(np.float32),
    }
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(strings / "ckpt"),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    # 4. Non-ASCII checkpoint names in the state file, two kept.
    unicode = out / "nonascii"
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(v=tf.Variable(1.0)), str(unicode), 2, checkpoint_name="модель-é"
    )
    manager.save()
    manager.save()
    # Fixed timestamps and relative paths: the seeds' bytes are the same on every build.
    for state in out.glob("*/checkpoint"):
        text = state.read_text("utf-8").replace(str(state.parent) + "/", "")
        text = re.sub(r"(timestamps?: )[0-9.e+]+", r"\g<1>1700000000.5", text)
        state.write_text(text, "utf-8")


def _checkpoint_files(folder: Path, prefix: str) -> list[Path]:
    return [*sorted(folder.glob(prefix + ".data-*")), folder / (prefix + ".index")]


def _prefixes(folder: Path) -> list[str]:
    return sorted(p.name[: -len(".index")] for p in folder.glob("*.index"))


def _corpus_checkpoints(seed_root: Path) -> list[Path]:
    """Copy small V2 checkpoints of the shared corpus (read-only) into the seeds folder."""
    copied: list[Path] = []
    if not SHARED_CORPUS.is_dir():
        return copied
    for n, index in enumerate(sorted(SHARED_CORPUS.rglob("*.index"))):
        prefix = index.name[: -len(".index")]
        files = _checkpoint_files(index.parent, prefix)
        if not all(f.is_file() for f in files) or sum(f.stat().st_size for f in files) > (
            MAX_SEED_BYTES * 2
        ):
            continue
        slug = index.relative_to(SHARED_CORPUS).parts[0]
        home = seed_root / f"corpus-{slug}-{n}"
        home.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, home / f.name)
        copied.append(home)
    return copied


def build_seeds(seed_root: Path, corpus: bool = True) -> Path:
    """Make the seed folder (TensorFlow in a child process); idempotent."""
    done = seed_root / ".complete"
    if done.exists():
        return seed_root
    seed_root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "make-tf-seeds", str(seed_root / "tf")],
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if corpus:
        _corpus_checkpoints(seed_root / "corpus")
    done.write_text("")
    return seed_root


def load_seeds(seed_root: Path) -> dict[str, list[Seed]]:
    """Every seed of every target, from a folder ``build_seeds`` made."""
    from ckptmigrate.formats.bundle_reader import BundleReader

    seed_root = seed_root.resolve()  # files are linked from it
    seeds: dict[str, list[Seed]] = {t: [] for t in TARGETS}
    homes = sorted(p for p in (seed_root / "tf").iterdir() if p.is_dir())
    if (seed_root / "corpus").is_dir():
        homes += sorted(p for p in (seed_root / "corpus").iterdir() if p.is_dir())
    object_based: list[tuple[Path, str]] = []
    for home in homes:
        for prefix in _prefixes(home):
            tag = f"{home.name}.{prefix}"
            index = home / (prefix + ".index")
            seeds["index"].append(Seed("index", tag, index.read_bytes(), str(home), prefix))
            for shard in sorted(home.glob(prefix + ".data-*")):
                if shard.stat().st_size <= MAX_SEED_BYTES:
                    seeds["data"].append(
                        Seed(
                            "data",
                            f"{tag}.{shard.name[-14:-9]}",
                            shard.read_bytes(),
                            str(home),
                            prefix,
                            shard.name,
                        )
                    )
            with BundleReader(home / prefix) as reader:
                if OBJECT_GRAPH_KEY in reader.variable_keys():
                    graph = reader.read_elements(OBJECT_GRAPH_KEY)[0]
                    seeds["objgraph"].append(Seed("objgraph", tag, graph, str(home), prefix))
                    object_based.append((home, prefix))
    state_home = seed_root / "tf" / "tf2_slots"
    state_prefix = _prefixes(state_home)[-1]
    for name in ("tf2_slots", "nonascii", "saver_partitioned"):
        text = (seed_root / "tf" / name / "checkpoint").read_bytes()
        seeds["state"].append(
            Seed("state", name, text, str(seed_root / "tf" / name), "", "checkpoint")
        )
    if SHARED_CORPUS.is_dir():
        for n, state in enumerate(sorted(SHARED_CORPUS.rglob("checkpoint"))):
            if state.is_file() and state.stat().st_size < 65536:
                seeds["state"].append(
                    Seed(
                        "state",
                        f"corpus-{n}",
                        state.read_bytes(),
                        str(state_home),
                        state_prefix,
                        "checkpoint",
                        splice_only=True,
                    )
                )
    seeds["safetensors"] += _safetensors_seeds(homes, state_home, state_prefix)
    seeds["torch"] += _torch_seeds(homes, state_home, state_prefix)
    saver = seed_root / "tf" / "saver_partitioned"
    for name, text in MAP_SEEDS.items():
        home, prefix = (state_home, state_prefix) if name == "tf2" else (saver, "model.ckpt-1")
        seeds["map"].append(Seed("map", name, text.encode(), str(home), prefix, "map.yaml"))
    for name, text in SPEC_SEEDS.items():
        file = "spec.json" if name == "json" else "spec.yaml"
        seeds["spec"].append(Seed("spec", name, text.encode(), str(saver), "model.ckpt-1", file))
    for target, found in seeds.items():
        if not found:
            raise RuntimeError(f"no seeds for {target} in {seed_root}")
    return seeds


def _safetensors_seeds(homes: list[Path], home: Path, prefix: str) -> list[Seed]:
    """A safetensors file per seed checkpoint with fixed-size tensors (ckptmigrate's own
    writer, which the safetensors package reads: tests/test_safetensors.py)."""
    from ckptmigrate.formats.bundle_reader import BundleReader
    from ckptmigrate.formats.safetensors import SafetensorsWriter, TensorSpec, safetensors_dtype

    found = []
    for folder in homes:
        for name in _prefixes(folder):
            with BundleReader(folder / name) as reader:
                keys = [
                    k
                    for k in reader.variable_keys()
                    if safetensors_dtype(reader.info(k).dtype.name) is not None
                    and not reader.entries[k].slices
                    and reader.info(k).nbytes <= 4096
                ][:12]
                if not keys:
                    continue
                specs = [
                    TensorSpec(k, reader.info(k).dtype.name, reader.info(k).shape) for k in keys
                ]
                out = io.BytesIO()
                writer = SafetensorsWriter(out, specs, {"format": "pt", "seed": name})
                for key in keys:
                    writer.write(key, reader.read(key))
            found.append(
                Seed(
                    "safetensors",
                    f"{folder.name}.{name}",
                    out.getvalue(),
                    str(home),
                    prefix,
                    "m.safetensors",
                )
            )
    return found


# What torch.save calls each dtype's storage (torch 2: legacy typed storage classes).
_TORCH_STORAGES = {
    "float32": "FloatStorage",
    "float64": "DoubleStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}


def _pickle_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _pickle_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _pickle_str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _torch_entry(
    label: str, storage: tuple[str, str, int], *, shape: Any, stride: Any, offset: int
) -> bytes:
    """One dict item: ``label`` -> _rebuild_tensor_v2 over storage (type, key, numel)."""
    kind, key, numel = storage
    reference = _pickle_tuple(
        [
            _pickle_str("storage"),
            b"ctorch\n" + kind.encode() + b"\n",
            _pickle_str(key),
            _pickle_str("cpu"),
            _pickle_int(numel),
        ]
    )
    arguments = [
        reference + b"Q",
        _pickle_int(offset),
        _pickle_tuple([_pickle_int(d) for d in shape]),
        _pickle_tuple([_pickle_int(d) for d in stride]),
        b"\x89",  # requires_grad False
        b"ccollections\nOrderedDict\n)R",  # backward hooks
    ]
    return (
        _pickle_str(label)
        + b"ctorch._utils\n_rebuild_tensor_v2\n"
        + _pickle_tuple(arguments)
        + b"R"
    )


def torch_zip(tensors: list[tuple[str, Any]], views: bool = True) -> bytes:
    """A torch.save archive of ``tensors`` (name, numpy array), encoded as torch 2 writes it
    (protocol 2: an OrderedDict of _rebuild_tensor_v2 over persistent storages), without
    torch. With ``views``, each 2-D tensor's storage is also viewed transposed and each 1-D
    one's from its second element (shared storages, strides, offsets)."""
    import zipfile

    import numpy as np

    body = b""
    storages: list[bytes] = []
    for name, value in tensors:
        array = np.ascontiguousarray(value)
        storage = (_TORCH_STORAGES[array.dtype.name], str(len(storages)), array.size)
        storages.append(array.tobytes())
        strides = tuple(int(s) // array.itemsize for s in array.strides)
        body += _torch_entry(name, storage, shape=array.shape, stride=strides, offset=0)
        if views and array.ndim == 2:
            body += _torch_entry(
                name + ".T", storage, shape=array.shape[::-1], stride=strides[::-1], offset=0
            )
        if views and array.ndim == 1 and array.size > 1:
            body += _torch_entry(
                name + ".tail", storage, shape=(array.size - 1,), stride=(1,), offset=1
            )
    pickled = b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u."
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/byteorder", "little")
        for key, data in enumerate(storages):
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return out.getvalue()


def _torch_seeds(homes: list[Path], home: Path, prefix: str) -> list[Seed]:
    """A torch.save archive per seed checkpoint with small tensors of the dtypes a
    state_dict holds."""
    from ckptmigrate.formats.bundle_reader import BundleReader

    found = []
    for folder in homes:
        for name in _prefixes(folder):
            with BundleReader(folder / name) as reader:
                keys = [
                    k
                    for k in reader.variable_keys()
                    if reader.info(k).dtype.name in _TORCH_STORAGES
                    and not reader.entries[k].slices
                    and reader.info(k).nbytes <= 4096
                ][:8]
                tensors = [(k, reader.read(k)) for k in keys]
            if tensors:
                found.append(
                    Seed(
                        "torch",
                        f"{folder.name}.{name}",
                        torch_zip(tensors),
                        str(home),
                        prefix,
                        "m.pt",
                    )
                )
    return found


# --- mutations -------------------------------------------------------------------------------

BOUNDARY_INTS = (
    0,
    1,
    2,
    7,
    8,
    63,
    64,
    127,
    128,
    255,
    256,
    16383,
    16384,
    (1 << 21) - 1,
    1 << 21,
    (1 << 31) - 1,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    1 << 53,
    (1 << 63) - 1,
    1 << 63,
    (1 << 64) - 1,
)
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x22, 0x5C)
YAML_TOKENS = (
    b"&a ",
    b"*a",
    b"<<: *a",
    b"!!int ",
    b"!!float ",
    b"!!binary ",
    b"!!timestamp ",
    b"!!python/name:os.system ",
    b"[",
    b"]",
    b"{",
    b"}",
    b": ",
    b"\n- ",
    b"\n  - ",
    b", ",
    b"~",
    b".nan",
    b".inf",
    b"-.inf",
    b"-1",
    b"1e999",
    b"0x7fffffffffffffff",
    b"99999999999999999999",
    b"? ",
    b"|\n",
    b">-\n",
    b"'",
    b'"',
    b"\\",
    b"\t",
    b"%YAML 1.1\n",
    b"---\n",
    b"\n...\n",
    b"#",
    b"\xef\xbb\xbf",
    b"\xff",
    b"(",
    b"(a+)+b",
    b"{0}",
    b"{1}",
    b"{9}",
    b"$",
    b"null",
    b"true",
    b"rename",
    b"match",
    b"name",
    b"role",
    b"drop",
    b"slice",
    b"pad",
    b"reshape",
    b"transpose",
    b"cast",
    b"split",
    b"resize",
    b"remap_rows",
    b"reorder_blocks",
    b"add_to_block",
    b"concat",
    b"init",
    b"from",
    b"keep",
    b"fill",
    b"seed",
    b"shape",
    b"dtype",
    b"axis",
    b"variables",
    b"bfloat16",
    b"string",
    b"/dev/zero",
    b"/dev/stdin",
)
STATE_TOKENS = (
    b"model_checkpoint_path: ",
    b"all_model_checkpoint_paths: ",
    b"all_model_checkpoint_timestamps: ",
    b"last_preserved_timestamp: ",
    b'"',
    b"'",
    b"\\",
    b"\\x",
    b"\\xff",
    b"\\u1234",
    b"\\U0001f600",
    b"\\000",
    b"\\377",
    b"\\n",
    b"#",
    b":",
    b"{",
    b"}",
    b"<",
    b">",
    b"[",
    b"]",
    b"\n",
    b"/",
    b"..",
    b"\xff",
    b"\xc3",
    b"nan",
    b"-inf",
    b"1e400",
)
# Pickle opcodes and globals: the ones a state_dict is made of, the ones the reader refuses
# (8-byte lengths, LONG4, INST/OBJ/NEWOBJ), and globals that would run code.
PICKLE_TOKENS = (
    b"R",
    b"Q",
    b"b",
    b"t",
    b"u",
    b"\x85",
    b"\x86",
    b"\x8e\xff\xff\xff\xff\xff\x00\x00\x00",
    b"\x96\x00\x00\x00\x80\x00\x00\x00\x00",
    b"\x8b\xff\xff\xff\x7f",
    b"\x81",
    b"ctorch\nUntypedStorage\n",
    b"ctorch\nuint16\n",
    b"ctorch._utils\n_rebuild_tensor_v3\n",
    b"ctorch._utils\n_rebuild_parameter\n",
    b"cbuiltins\neval\n",
    b"cos\nsystem\n",
    b"J\xff\xff\xff\x7f",
    b"J\xff\xff\xff\xff",
)
TOKENS = {
    "map": YAML_TOKENS,
    "spec": YAML_TOKENS,
    "state": STATE_TOKENS,
    "torch.pkl": PICKLE_TOKENS,
}


def _encode_varint(value: int) -> bytes:
    from ckptmigrate.formats.protowire import encode_varint

    return encode_varint(value)


def _boundary(rng: random.Random) -> int:
    value = rng.choice(BOUNDARY_INTS)
    return value + rng.choice((-1, 0, 0, 1)) if value > 1 else value


def mutate_bytes(rng: random.Random, data: bytes, others: list[bytes], target: str) -> bytes:
    """One to eight generic mutations: flips, interesting bytes, truncation, insertion,
    deletion, duplication, splices with another seed, boundary varints, dictionary tokens."""
    out = bytearray(data)
    tokens = TOKENS.get(target, ())
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        n = len(out)
        pos = rng.randrange(n + 1)
        kind = rng.randrange(11 if tokens else 9)
        if kind == 0 and n:  # flip bits
            out[min(pos, n - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1 and n:  # an interesting byte
            out[min(pos, n - 1)] = rng.choice(INTERESTING_BYTES)
        elif kind == 2:  # truncate
            del out[pos:]
        elif kind == 3:  # insert random bytes
            out[pos:pos] = rng.randbytes(rng.choice((1, 1, 2, 4, 8, 64)))
        elif kind == 4:  # delete a run
            del out[pos : pos + rng.choice((1, 2, 4, 16, 256))]
        elif kind == 5 and n:  # duplicate a run somewhere else
            start = rng.randrange(n)
            chunk = out[start : start + rng.choice((1, 4, 16, 128, 1024))]
            out[pos:pos] = chunk * rng.choice((1, 1, 2, 16))
        elif kind == 6 and others:  # splice with another seed of the target
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            out = out[:pos] + bytearray(other[cut:])
        elif kind == 7:  # a boundary varint, over or into the bytes
            varint = _encode_varint(_boundary(rng))
            if rng.random() < 0.5:
                out[pos : pos + len(varint)] = varint
            else:
                out[pos:pos] = varint
        elif kind == 8 and n:  # random byte value
            out[min(pos, n - 1)] = rng.randrange(256)
        elif kind >= 9:  # a token of the input's language, inserted or overwriting
            token = rng.choice(tokens)
            if kind == 9:
                out[pos:pos] = token
            else:
                out[pos : pos + len(token)] = token
    return bytes(out)


def _proto_mutate(rng: random.Random, data: bytes, depth: int = 0) -> bytes:
    """Mutate one field of a protobuf message (recursing into sub-messages): a boundary or
    small varint, a dropped, duplicated or truncated field; re-encoded with the project's
    own wire helpers. Raises ProtoError when ``data`` is not a message."""
    from ckptmigrate.formats.protowire import LEN, VARINT, MessageWriter, iter_fields

    fields = list(iter_fields(data))
    if not fields:
        writer = MessageWriter().varint(rng.randrange(1, 8), _boundary(rng))
        return data + writer.getvalue()
    i = rng.randrange(len(fields))
    number, wire, value = fields[i]
    action = rng.randrange(6)
    if action == 0:
        del fields[i]
    elif action == 1:
        fields.insert(i, fields[i])
    elif wire == VARINT:
        fields[i] = (number, wire, _boundary(rng) if action < 4 else rng.randrange(-3, 40))
    elif wire == LEN and isinstance(value, bytes):
        try:
            if depth < 4 and action < 5:
                fields[i] = (number, wire, _proto_mutate(rng, value, depth + 1))
            else:
                fields[i] = (number, wire, mutate_bytes(rng, value, [], "proto"))
        except ValueError:
            fields[i] = (number, wire, mutate_bytes(rng, value, [], "proto"))
    else:
        fields[i] = (rng.randrange(1, 20), wire, value)
    writer = MessageWriter()
    for number, wire, value in fields:
        writer.raw(number, wire, value % (1 << 64) if isinstance(value, int) else value)
    return writer.getvalue()


def table_bytes(items: list[tuple[bytes, bytes]]) -> bytes:
    from ckptmigrate.formats.table import TableWriter

    out = io.BytesIO()
    writer = TableWriter(out, block_size=rng_block_size(len(items)))
    for key, value in sorted(items):
        writer.add(key, value)
    writer.finish()
    return out.getvalue()


def rng_block_size(count: int) -> int:
    return 4096 if count < 50 else 256  # small blocks: several data blocks, a real index block


def _entry_mutate(rng: random.Random, value: bytes) -> bytes:
    """Re-encode a BundleEntryProto with one field set to a boundary value (shape, offset,
    size, shard, dtype, crc, slices) using the project's encoder."""
    from ckptmigrate.formats.bundle_proto import Extent, TensorSlice, decode_entry, encode_entry

    entry = decode_entry(value)
    field = rng.choice(("shape", "offset", "size", "shard_id", "dtype", "crc32c", "slices"))
    if field == "shape":
        shape = list(entry.shape) or [1]
        if rng.random() < 0.3:
            shape.append(_boundary(rng))
        else:
            shape[rng.randrange(len(shape))] = rng.choice((_boundary(rng), 0, 2, 3))
        return encode_entry(entry._replace(shape=tuple(shape)))
    if field == "slices":
        rank = max(len(entry.shape), 1)
        extents = tuple(
            Extent(rng.choice((0, 1, 2, _boundary(rng))), rng.choice((None, 1, 2, _boundary(rng))))
            for _ in range(rank)
        )
        slices = [*entry.slices, TensorSlice(extents)]
        if rng.random() < 0.5 and len(slices) > 1:
            slices = [slices[-1], *slices[:-1]] if rng.random() < 0.5 else slices[:-2]
        return encode_entry(entry._replace(slices=tuple(slices)))
    if field == "dtype":
        return encode_entry(entry._replace(dtype=rng.choice((0, 7, 21, 14, 99, 1))))
    value = _boundary(rng)
    return encode_entry(
        entry._replace(**{field: value % (1 << 32) if field == "crc32c" else value})
    )


def mutate_index(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """Byte-level mutations most of the time; otherwise decode the table, mutate an entry
    (fields, proto wire data, its key) or the header, and re-encode it as a valid table."""
    if rng.random() < 0.5:
        return mutate_bytes(rng, data, others, "index")
    from ckptmigrate.formats.table import iter_table

    try:
        items = list(iter_table(data))
    except ValueError:
        return mutate_bytes(rng, data, others, "index")
    if not items:
        return data
    for _ in range(rng.choice((1, 1, 2, 3))):
        i = rng.randrange(len(items))
        key, value = items[i]
        choice = rng.randrange(6)
        try:
            if key == b"" or choice == 0:
                items[i] = (key, _proto_mutate(rng, value))
            elif choice in (1, 2, 3):
                items[i] = (key, _entry_mutate(rng, value))
            elif choice == 4:  # a key changed, removed or duplicated under another name
                new_key = mutate_bytes(rng, key, [], "key") if rng.random() < 0.7 else b""
                if rng.random() < 0.3:
                    del items[i]
                items.append((new_key, value))
            else:
                del items[i]
        except (ValueError, struct.error):
            items[i] = (key, mutate_bytes(rng, value, [], "proto"))
        if not items:
            break
    unique = dict(items)
    try:
        return table_bytes(list(unique.items()))
    except ValueError:
        return mutate_bytes(rng, data, others, "index")


def mutate_objgraph(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    if rng.random() < 0.4:
        return mutate_bytes(rng, data, others, "objgraph")
    out = data
    for _ in range(rng.choice((1, 1, 2, 4))):
        try:
            out = _proto_mutate(rng, out)
        except ValueError:
            return mutate_bytes(rng, data, others, "objgraph")
    return out


def mutate_safetensors(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """Byte-level mutations half the time; otherwise one header field set to a boundary or
    foreign value and the header re-encoded with its length, so the checks behind the JSON
    parse meet it."""
    if rng.random() < 0.5 or len(data) < 8:
        return mutate_bytes(rng, data, others, "safetensors")
    (length,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError:
        return mutate_bytes(rng, data, others, "safetensors")
    names = [k for k in header if k != "__metadata__"]
    if not names:
        return mutate_bytes(rng, data, others, "safetensors")
    entry = header[rng.choice(names)]
    field = rng.choice(("data_offsets", "shape", "dtype", "extra", "metadata", "drop"))
    boundary = rng.choice((0, 1, -1, 7, 2**31, 2**63, 2**64, 10**30, 0.5, None, "x", [], {}))
    if field == "data_offsets":
        entry["data_offsets"][rng.randrange(2)] = boundary
    elif field == "shape":
        entry["shape"] = [boundary] if rng.random() < 0.5 else entry["shape"] + [boundary]
    elif field == "dtype":
        entry["dtype"] = rng.choice(("F32", "F64", "U8", "BOOL", "F8_E4M3", "STR", "", boundary))
    elif field == "extra":
        entry[rng.choice(("x", "dtype ", "Shape"))] = boundary
    elif field == "metadata":
        header["__metadata__"] = rng.choice(({"a": boundary}, boundary, {"format": "pt"}))
    else:
        del header[rng.choice(names)]
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + length :]


def mutate_torch(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """Byte-level mutations of the archive half the time; otherwise of its data.pkl alone,
    re-zipped with the other entries as they were (so its CRC-32 holds)."""
    import zipfile

    if rng.random() < 0.5:
        return mutate_bytes(rng, data, others, "torch")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = [(i.filename, archive.read(i)) for i in archive.infolist()]
    except (zipfile.BadZipFile, ValueError, OSError):
        return mutate_bytes(rng, data, others, "torch")
    pickles = [body for name, body in entries if name.endswith("data.pkl")]
    if not pickles:
        return mutate_bytes(rng, data, others, "torch")
    mutated = mutate_bytes(rng, pickles[0], [], "torch.pkl")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, body in entries:
            archive.writestr(name, mutated if name.endswith("data.pkl") else body)
    return out.getvalue()


def mutate(rng: random.Random, seed: Seed, others: list[bytes]) -> bytes:
    if seed.target == "torch":
        return mutate_torch(rng, seed.data, others)
    if seed.target == "safetensors":
        return mutate_safetensors(rng, seed.data, others)
    if seed.target == "index":
        return mutate_index(rng, seed.data, others)
    if seed.target == "objgraph":
        return mutate_objgraph(rng, seed.data, others)
    return mutate_bytes(rng, seed.data, others, seed.target)


def case_input(
    seeds: dict[str, list[Seed]], target: str, case: int, base: int
) -> tuple[Seed, bytes]:
    """The seed and mutated bytes of case ``case`` (deterministic)."""
    rng = random.Random(f"{base}/{target}/{case}")
    pool = [s for s in seeds[target] if not s.splice_only]
    seed = pool[rng.randrange(len(pool))]
    others = [s.data for s in seeds[target] if s is not seed]
    return seed, mutate(rng, seed, others)


# --- targets ---------------------------------------------------------------------------------


def _link_home(seed: Seed, work: Path, skip: set[str]) -> None:
    for f in Path(seed.home).iterdir():
        if f.is_file() and f.name not in skip and f.name != "checkpoint":
            os.symlink(f, work / f.name)


def _read_everything(prefix: Path | str) -> None:
    from ckptmigrate import inspect_checkpoint, open_checkpoint

    with open_checkpoint(prefix) as checkpoint:
        for key in checkpoint:
            checkpoint.read(key)
        checkpoint.aliases  # noqa: B018 - derived on first use
        for key in checkpoint:
            checkpoint.role(key)
    inspect_checkpoint(prefix)


def target_index(seed: Seed, data: bytes, work: Path) -> None:
    from ckptmigrate import check

    _link_home(seed, work, {seed.prefix + ".index"})
    (work / (seed.prefix + ".index")).write_bytes(data)
    _read_everything(work / seed.prefix)
    check(work / seed.prefix, Path(seed.home) / seed.prefix)


def _fixed_crcs(seed: Seed, data: bytes, index: bytes) -> bytes:
    """The index with every entry of the mutated shard given the CRC32C of the bytes now at
    its offset, so the decoders, not the checksum, meet the mutation."""
    from ckptmigrate.formats import crc
    from ckptmigrate.formats.bundle_proto import decode_entry, encode_entry
    from ckptmigrate.formats.table import iter_table

    shard = int(seed.file.rsplit("-", 3)[-3])
    items = []
    for key, value in iter_table(index):
        if key:
            entry = decode_entry(value)
            if entry.shard_id == shard and not entry.slices:
                chunk = data[entry.offset : entry.offset + entry.size]
                fixed = entry._replace(crc32c=crc.mask(crc.value(chunk)))
                items.append((key, encode_entry(fixed)))
                continue
        items.append((key, value))
    return table_bytes(items)


def target_data(seed: Seed, data: bytes, work: Path, fix_crcs: bool = False) -> None:
    from ckptmigrate import inspect_checkpoint

    index_name = seed.prefix + ".index"
    _link_home(seed, work, {seed.file, index_name} if fix_crcs else {seed.file})
    (work / seed.file).write_bytes(data)
    if fix_crcs:
        index = (Path(seed.home) / index_name).read_bytes()
        (work / index_name).write_bytes(_fixed_crcs(seed, data, index))
    _read_everything(work / seed.prefix)
    inspect_checkpoint(work / seed.prefix, check_crc=True)


def target_state(seed: Seed, data: bytes, work: Path) -> None:
    _link_home(seed, work, set())
    (work / "checkpoint").write_bytes(data)
    _read_everything(work)


def with_graph(seed: Seed, graph: bytes, work: Path) -> Path:
    """A copy of the seed checkpoint whose object graph tensor holds ``graph``: appended to
    shard 0, its index entry re-encoded (the project's string codec, table writer)."""
    from ckptmigrate.formats import crc
    from ckptmigrate.formats.bundle_proto import decode_entry, encode_entry
    from ckptmigrate.formats.table import iter_table
    from ckptmigrate.formats.tensor_codec import encode_strings

    home = Path(seed.home)
    index_name = seed.prefix + ".index"
    shard0 = sorted(home.glob(seed.prefix + ".data-00000-of-*"))[0]
    _link_home(seed, work, {index_name, shard0.name})
    base = shard0.read_bytes()
    encoded, checksum = encode_strings([graph])
    (work / shard0.name).write_bytes(base + encoded)
    items = []
    for key, value in iter_table((home / index_name).read_bytes()):
        if key == OBJECT_GRAPH_KEY.encode():
            entry = decode_entry(value)._replace(
                shard_id=0,
                offset=len(base),
                size=len(encoded),
                crc32c=crc.mask(checksum),
            )
            items.append((key, encode_entry(entry)))
        else:
            items.append((key, value))
    (work / index_name).write_bytes(table_bytes(items))
    return work / seed.prefix


def target_objgraph(seed: Seed, data: bytes, work: Path) -> None:
    from ckptmigrate import check, inspect_checkpoint, open_checkpoint
    from ckptmigrate.formats.object_graph import (
        ObjectGraph,
        ObjectGraphEditError,
        rebuild_object_graph,
    )

    prefix = with_graph(seed, data, work)
    with open_checkpoint(prefix) as checkpoint:
        aliases = checkpoint.aliases
        checkpoint.original_names  # noqa: B018
        checkpoint.slot_keys  # noqa: B018
        checkpoint.optimizer_state  # noqa: B018
        keys = [k for k in checkpoint if k != OBJECT_GRAPH_KEY]
        for key in keys:
            checkpoint.role(key)
        graph_bytes = checkpoint.object_graph_bytes
    inspect_checkpoint(prefix)
    check(prefix, Path(seed.home) / seed.prefix)
    assert graph_bytes is not None
    # What plan() asks of the graph: keys kept, renamed onto another path that reaches
    # them, dropped, and new ones; an edit it cannot express is plan's MapError.
    outputs: dict[str, str | None] = {k: k for k in keys}
    for key in keys[:3]:
        others = [a for a in aliases.get(key, []) if a != key and a not in outputs]
        if others:
            del outputs[key]
            outputs[others[0]] = key
    if keys:
        outputs.pop(keys[-1], None)
    outputs["fuzz_new/.ATTRIBUTES/VARIABLE_VALUE"] = None
    try:
        rebuilt = rebuild_object_graph(graph_bytes, outputs)
    except ObjectGraphEditError:
        return
    ObjectGraph(rebuilt).aliases  # noqa: B018 - what we write must parse again


def target_map(seed: Seed, data: bytes, work: Path) -> None:
    from ckptmigrate import load_map, plan
    from ckptmigrate.mapping.schema import parse_map

    _link_home(seed, work, set())
    (work / "old.txt").write_text("".join(f"w{i}\n" for i in range(10)))
    (work / "new.txt").write_text("".join(f"w{i}\n" for i in (3, 1, 12, 0)))
    path = work / seed.file
    path.write_bytes(data)
    loaded = load_map(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        parse_map(text, str(path), work)
    plan(Path(seed.home) / seed.prefix, loaded)


def target_spec(seed: Seed, data: bytes, work: Path) -> None:
    from ckptmigrate import check
    from ckptmigrate.targets.spec import load_spec

    path = work / seed.file
    path.write_bytes(data)
    load_spec(path)
    check(Path(seed.home) / seed.prefix, path)


def target_single_file(seed: Seed, data: bytes, work: Path) -> None:
    """A one-file format (safetensors, a torch.save zip): every read, inspect --check-crc,
    and check with it as the target."""
    from ckptmigrate import check, inspect_checkpoint

    path = work / seed.file
    path.write_bytes(data)
    _read_everything(path)
    inspect_checkpoint(path, check_crc=True)
    check(Path(seed.home) / seed.prefix, path)


TARGET_FUNCTIONS: dict[str, Callable[[Seed, bytes, Path], None]] = {
    "index": target_index,
    "data": target_data,
    "state": target_state,
    "objgraph": target_objgraph,
    "map": target_map,
    "spec": target_spec,
    "safetensors": target_single_file,
    "torch": target_single_file,
}


# --- running one case ------------------------------------------------------------------------


class Hang(BaseException):
    """The case ran past ``CASE_SECONDS``; a BaseException so no ``except Exception`` eats it."""


def on_alarm(*_: object) -> None:
    raise Hang


def _signature(error: BaseException) -> str:
    """Type and the innermost ckptmigrate frame: crashes with one cause share it."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/ckptmigrate/" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(error).__name__} at {where}"


def run_case(seed: Seed, data: bytes, work: Path, fix_crcs: bool = False) -> tuple[str, str]:
    """(outcome, detail) of one input, in this process (alarm set by the caller)."""
    from ckptmigrate.errors import CkptMigrateError

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        if seed.target == "data":
            target_data(seed, data, work, fix_crcs)
        else:
            TARGET_FUNCTIONS[seed.target](seed, data, work)
    except CkptMigrateError as e:
        message = str(e)
        if not message.strip() or "\n\n" in message.strip():
            return "crash", f"not one paragraph: {message!r}"
        return "clean", type(e).__name__
    except MemoryError:
        return "blowup", "MemoryError"
    except RecursionError as e:
        return "crash", _signature(e)
    except Exception as e:
        return "crash", _signature(e) + ": " + str(e)[:200]
    return "ok", ""


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _fix_crcs(target: str, base: int, case: int) -> bool:
    return target == "data" and random.Random(f"{base}/crc/{case}").random() < 0.5


def timed_case(seed: Seed, data: bytes, work: Path, fix: bool) -> tuple[str, str, float]:
    start = time.perf_counter()
    signal.alarm(CASE_SECONDS)
    try:
        outcome, detail = run_case(seed, data, work, fix)
    except Hang:
        outcome, detail = "hang", f"over {CASE_SECONDS} s"
    finally:
        signal.alarm(0)
    elapsed = time.perf_counter() - start
    if outcome != "hang" and _rss_bytes() > MEMORY_LIMIT + BASELINE_RSS[0]:
        outcome, detail = "blowup", f"peak RSS {_rss_bytes() >> 20} MiB"
    return outcome, detail, elapsed


BASELINE_RSS = [0]


def minimise(seed: Seed, data: bytes, work: Path, fix: bool, signature: str) -> bytes:
    """Remove chunks while the crash keeps its signature (bounded number of runs)."""
    runs = 0
    chunk = max(len(data) // 2, 1)
    while chunk >= 1 and runs < MINIMISE_RUNS:
        pos = 0
        while pos < len(data) and runs < MINIMISE_RUNS:
            candidate = data[:pos] + data[pos + chunk :]
            runs += 1
            outcome, detail, _ = timed_case(seed, candidate, work, fix)
            if outcome == "crash" and detail.split(":")[0] == signature:
                data = candidate
            else:
                pos += chunk
        chunk //= 2
    return data


def _worker(conn: Connection, seed_root: str, work: str, base: int) -> None:
    """A worker: load the seeds, then run (target, case) requests until told to stop."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    seeds = load_seeds(Path(seed_root))

    # Warm the imports every target makes, then cap the address space at that plus 1 GiB.
    for target in TARGETS:
        seed = seeds[target][0]
        run_case(seed, seed.data, Path(work) / "warm")
    started = _address_space()
    limit = started + MEMORY_LIMIT
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    BASELINE_RSS[0] = _rss_bytes()
    signal.signal(signal.SIGALRM, on_alarm)
    case_dir = Path(work) / "case"
    while True:
        request = conn.recv()
        if request is None:
            break
        target, case, want_minimise = request
        seed, data = case_input(seeds, target, case, base)
        fix = _fix_crcs(target, base, case)
        outcome, detail, elapsed = timed_case(seed, data, case_dir, fix)
        saved = b""
        if outcome == "crash" and want_minimise:
            saved = minimise(seed, data, case_dir, fix, detail.split(":")[0])
        grown = _address_space() - started  # what the worker's life has taken of the limit
        conn.send((target, case, outcome, detail, elapsed, seed.name, saved, grown))
    conn.close()


# --- the parent ------------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    seconds: float = 0.0
    signatures: Counter[str] = dataclasses.field(default_factory=Counter)


@dataclasses.dataclass
class Report:
    tallies: dict[str, Tally]
    wall: float
    failures: list[
        tuple[str, int, str, str, str, bytes]
    ]  # target, case, outcome, detail, seed, input
    workers_started: int = 0  # the first ones, those recycled and those replacing a dead one
    most_grown: int = 0  # the most a worker's address space grew past its start-up, bytes

    @property
    def bad(self) -> int:
        return sum(t.counts[o] for t in self.tallies.values() for o in ("crash", "hang", "blowup"))

    @property
    def cases(self) -> int:
        return sum(sum(t.counts.values()) for t in self.tallies.values())

    def table(self) -> str:
        head = ("target", "cases", "ok", "clean", "crashes", "hangs", "blow-ups", "time")
        rows = [head]
        total = Counter[str]()
        for target, tally in self.tallies.items():
            c = tally.counts
            total.update(c)
            rows.append(
                (
                    target,
                    f"{sum(c.values()):,}",
                    f"{c['ok']:,}",
                    f"{c['clean']:,}",
                    f"{c['crash']:,}",
                    f"{c['hang']:,}",
                    f"{c['blowup']:,}",
                    f"{tally.seconds:,.1f} s",
                )
            )
        rows.append(
            (
                "total",
                f"{sum(total.values()):,}",
                f"{total['ok']:,}",
                f"{total['clean']:,}",
                f"{total['crash']:,}",
                f"{total['hang']:,}",
                f"{total['blowup']:,}",
                f"{self.wall:,.1f} s wall",
            )
        )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(
            f"{self.workers_started} worker processes; the most one's address space grew: "
            f"{self.most_grown / (1 << 20):,.1f} MiB of its {MEMORY_LIMIT >> 20} MiB headroom"
        )
        for target, tally in self.tallies.items():
            for signature, n in tally.signatures.most_common():
                lines.append(f"  {target}: {n} x {signature}")
        return "\n".join(lines)


class _Slot:
    """One worker process and the cases it holds."""

    def __init__(self, ctx: Any, seed_root: Path, root: Path, *, n: int, base: int, minimise: bool):
        self.work = root / f"worker-{n}-{time.monotonic_ns()}"
        self.work.mkdir(parents=True)
        parent, child = ctx.Pipe()
        self.conn: Connection = parent
        self.process = ctx.Process(
            target=_worker, args=(child, str(seed_root), str(self.work), base), daemon=True
        )
        self.process.start()
        child.close()
        self.pending: list[tuple[str, int]] = []
        self.deadline = time.monotonic() + 120  # start-up: imports and the warm-up
        self.minimise = minimise
        self.submitted = 0
        self.grown = 0  # its address space past its start-up size, at its latest answer

    def submit(self, case: tuple[str, int]) -> None:
        self.pending.append(case)
        self.submitted += 1
        self.conn.send((case[0], case[1], self.minimise))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()
        shutil.rmtree(self.work, ignore_errors=True)


def run_campaign(
    seed_root: Path,
    cases_per_target: int,
    *,
    workers: int = 2,
    base: int = 0,
    targets: tuple[str, ...] = TARGETS,
    minimise: bool = False,
    progress: Callable[[str], None] | None = None,
    recycle: int = RECYCLE_CASES,
) -> Report:
    """Run ``cases_per_target`` cases of each target in ``workers`` processes, each replaced
    by a fresh one after ``recycle`` cases."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ctx = multiprocessing.get_context("spawn")
    queue = [(t, i) for i in range(cases_per_target) for t in targets]
    queue.reverse()
    tallies = {t: Tally() for t in targets}
    failures: list[tuple[str, int, str, str, str, bytes]] = []
    start = time.monotonic()
    last_note = start
    depth = 8  # cases in flight per worker
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-fuzz-") as tmp:
        root = Path(tmp)
        slots = [
            _Slot(ctx, seed_root, root, n=n, base=base, minimise=minimise) for n in range(workers)
        ]
        started = len(slots)
        most_grown = 0
        try:
            while queue or any(s.pending for s in slots):
                for slot in slots:
                    while queue and len(slot.pending) < depth and slot.submitted < recycle:
                        slot.submit(queue.pop())
                ready = wait([s.conn for s in slots if s.pending], timeout=1.0)
                now = time.monotonic()
                for i, slot in enumerate(slots):
                    dead = False
                    if slot.conn in ready:
                        try:
                            target, case, outcome, detail, elapsed, seed_name, saved, grown = (
                                slot.conn.recv()
                            )
                        except (EOFError, OSError):
                            dead = True
                        else:
                            slot.pending.remove((target, case))
                            slot.grown = grown
                            most_grown = max(most_grown, grown)
                            tally = tallies[target]
                            tally.counts[outcome] += 1
                            tally.seconds += elapsed
                            if outcome in ("crash", "hang", "blowup"):
                                tally.signatures[f"{outcome}: {detail.split(': ', 1)[0]}"] += 1
                                failures.append((target, case, outcome, detail, seed_name, saved))
                            slot.deadline = now + KILL_SECONDS
                    elif slot.pending and (now > slot.deadline or not slot.process.is_alive()):
                        dead = True
                    if dead:  # the first pending case killed or hung it; requeue the rest
                        code = slot.process.exitcode
                        slot.kill()
                        target, case = slot.pending.pop(0)
                        outcome = "hang" if code is None else "crash"
                        detail = (
                            f"no answer in {KILL_SECONDS} s"
                            if code is None
                            else f"worker died (exit {code})"
                        )
                        tallies[target].counts[outcome] += 1
                        tallies[target].signatures[f"{outcome}: {detail}"] += 1
                        failures.append((target, case, outcome, detail, "", b""))
                        queue.extend(reversed(slot.pending))
                        slots[i] = _Slot(ctx, seed_root, root, n=i, base=base, minimise=minimise)
                        started += 1
                    elif queue and not slot.pending and slot.submitted >= recycle:
                        slot.stop()  # its cases are all answered: a fresh worker goes on
                        slots[i] = _Slot(ctx, seed_root, root, n=i, base=base, minimise=minimise)
                        started += 1
                if progress and now - last_note > 30:
                    last_note = now
                    done = sum(sum(t.counts.values()) for t in tallies.values())
                    grown = ", ".join(f"+{s.grown / (1 << 20):,.1f}" for s in slots)
                    progress(
                        f"{done:,} of {cases_per_target * len(targets):,} cases; workers' "
                        f"address space {grown} MiB past start-up (at most "
                        f"+{most_grown / (1 << 20):,.1f})"
                    )
        finally:
            for slot in slots:
                slot.stop()
    return Report(tallies, time.monotonic() - start, failures, started, most_grown)


def save_regressions(report: Report, seed_root: Path, base: int) -> list[Path]:
    """Write each distinct failure's input (minimised crashes as they came back)."""
    seeds = load_seeds(seed_root)
    written: list[Path] = []
    seen: set[tuple[str, str]] = set()
    for target, case, _, detail, _, saved in report.failures:
        signature = (target, detail.split(": ", 1)[0])
        if signature in seen:
            continue
        seen.add(signature)
        seed, data = case_input(seeds, target, case, base)
        data = saved or data
        folder = REGRESSIONS / target
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(data).hexdigest()[:12]
        fix = _fix_crcs(target, base, case)
        path = folder / f"{seed.name}--{digest}{'--crc' if fix else ''}.bin"
        path.write_bytes(data)
        written.append(path)
    return written


def replay(seed_root: Path, path: Path) -> tuple[str, str]:
    """Run a saved regression input in this process: (outcome, detail)."""
    seeds = load_seeds(seed_root)
    target = path.parent.name
    seed_name = path.name.split("--")[0]
    matches = [s for s in seeds[target] if s.name == seed_name]
    if not matches:
        return "skip", f"seed {seed_name} is not here (the shared corpus is absent?)"
    with tempfile.TemporaryDirectory() as tmp:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        # The peak RSS is the process's high-water mark: in a test process that already
        # held TensorFlow, models and clusters, a blow-up is what comes on top of it.
        baseline, BASELINE_RSS[0] = BASELINE_RSS[0], _rss_bytes()
        try:
            outcome, detail, _ = timed_case(
                matches[0], path.read_bytes(), Path(tmp) / "case", path.stem.endswith("--crc")
            )
        finally:
            signal.signal(signal.SIGALRM, previous)
            BASELINE_RSS[0] = baseline
    return outcome, detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "make-tf-seeds"))
    parser.add_argument("path", nargs="?")
    parser.add_argument(
        "--cases", type=int, default=int(os.environ.get("CKPTMIGRATE_FUZZ_CASES", "2000"))
    )
    parser.add_argument(
        "--workers", type=int, default=int(os.environ.get("CKPTMIGRATE_FUZZ_WORKERS", "2"))
    )
    parser.add_argument(
        "--seed", type=int, default=int(os.environ.get("CKPTMIGRATE_FUZZ_SEED", "0"))
    )
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument(
        "--recycle",
        type=int,
        default=int(os.environ.get("CKPTMIGRATE_FUZZ_RECYCLE", str(RECYCLE_CASES))),
        help="cases a worker runs before a fresh one replaces it",
    )
    parser.add_argument("--seeds-dir", default=str(REPO / "build" / "fuzz-seeds"))
    parser.add_argument("--save-regressions", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "make-tf-seeds":
        make_tf_seeds(Path(args.path))
        return 0
    seed_root = build_seeds(Path(args.seeds_dir))
    targets = tuple(t for t in args.targets.split(",") if t)
    print(
        f"fuzzing {', '.join(targets)}: {args.cases:,} cases each, {args.workers} workers, "
        f"seed {args.seed}",
        flush=True,
    )
    report = run_campaign(
        seed_root,
        args.cases,
        workers=args.workers,
        base=args.seed,
        targets=targets,
        minimise=args.save_regressions,
        progress=lambda line: print(line, flush=True),
        recycle=args.recycle,
    )
    print(report.table())
    if args.save_regressions and report.failures:
        for path in save_regressions(report, seed_root, args.seed):
            print(f"saved {path.relative_to(REPO)}")
    return 1 if report.bad else 0


if __name__ == "__main__":
    sys.exit(main())
