"""Measure ckptmigrate against plain TensorFlow on a checkpoint built in the same run.

What it measures, each against a plain-TensorFlow (or coreutils) baseline:

1. ``ckptmigrate inspect PREFIX`` vs a Python process calling ``tf.train.list_variables``.
2. Reading every tensor with ``BundleReader.read`` vs ``tf.train.load_checkpoint().get_tensor``.
3. ``rewrite_checkpoint`` (with and without fsync) vs a TensorFlow re-save (load every tensor,
   write them all with ``tf.raw_ops.SaveV2``) and vs ``cp -r`` of the checkpoint directory.
4. The same rewrite on a checkpoint 1/4 the size (same variable size, 1/4 of the variables),
   to show whether its peak RSS stays flat as checkpoints grow (no time target: the
   ≤ 1.5 times ``cp -r`` target is for the full-size rewrite).
5. ``ckptmigrate convert`` on E, a name-based (TF1-style) checkpoint with the same variables
   under names ``layer_{i}/kernel`` (renaming keys of an object-based checkpoint needs object
   paths from its object graph): a rename-only map, whose unchanged shard is reflinked or
   hard-linked, vs a TensorFlow script that loads every tensor, renames and re-saves with
   ``tf.raw_ops.SaveV2``; the same map with ``--copy`` vs ``cp -r``; and slicing every
   variable to [:, :512] and zero-padding it to [rows, 1536] vs a TensorFlow + numpy script
   doing the same (all tensors kept, one ``SaveV2`` at the end), for time and peak RSS.
6. ``ckptmigrate check A --target B`` vs one Python process calling ``tf.train.list_variables``
   on A and on B, where B is a second checkpoint of the same model (same names, shapes and
   dtypes, other values), so the check must exit 0.
7. The same check on two checkpoints of 10,000 small variables (absolute target: under
   1 s), and ``ckptmigrate inspect`` on one of them, against the same TensorFlow listings.
8. Whether the check path imports TensorFlow (``python -X importtime``; it must not).

How: a TensorFlow subprocess first writes the checkpoints (float32 variables of shape
[rows, 1024] with ``tf.train.Checkpoint.write``; the second checkpoint of the same model
negates every value; the 10,000-variable model has one child ``layer_{i}`` per variable,
each holding a [4] ``kernel``); E is written with ``tf.raw_ops.SaveV2`` from the variables of
the first checkpoint. Before timing, one unmeasured ``convert`` of each map is checked with
``tf.train.list_variables`` (renamed names, padded shapes). Every measured command then
runs as its own
process, launched with ``subprocess.Popen`` and reaped with ``os.wait4``, so the wall time
includes interpreter start-up and imports and the peak RSS (``ru_maxrss``) is that process's
own. The page cache cannot be dropped without root, so each command runs once as a warm-up
and everything is measured warm; within a group the commands are interleaved, ``sync`` runs
before each run so write-back from one run does not slow the next, and the table shows the
median wall time and the highest peak RSS of ``--repeat`` runs
(``FAST_REPEATS`` times as many for the sub-second commands compared with ``cp -r`` or
with 1 s, whose groups hold no TensorFlow baseline). Ratios are ckptmigrate
divided by baseline (lower is better). Progress goes to stderr, the markdown table to stdout.

    .venv/bin/python benchmarks/run.py [--size-gib 1.0] [--variables 256] [--repeat 3]
                                       [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ckptmigrate.conversion.pipeline import default_workers

COLUMNS = 1024  # float32 elements per row of every benchmark variable
FLOAT32_BYTES = 4
GIB = 1 << 30
MB = 1_000_000  # RSS is reported in decimal megabytes, as the targets are stated
PREFIX_NAME = "ckpt"

INSPECT_WALL_RATIO = 0.10
INSPECT_RSS_BYTES = 100 * MB
REWRITE_VS_CP = 1.5
RSS_FLAT_RATIO = 1.10
CHECK_WALL_RATIO = 0.10
MANY_VARIABLES = 10_000  # variables of the many-small-variables checkpoints
MANY_ELEMENTS = 4  # float32 elements of each of them
MANY_CHECK_SECONDS = 1.0
CONVERT_LINK_RATIO = 0.05  # rename-only convert (shards linked) ÷ TF rename + re-save
CONVERT_COPY_VS_CP = 1.5  # rename-only convert --copy ÷ cp -r
FAST_REPEATS = 3  # repeat multiplier for the sub-second rows compared with cp or 1 s
CONVERT_TRANSFORM_RATIO = 1.0  # slice + pad convert ÷ TF + numpy script: wall time
CONVERT_TRANSFORM_RSS_RATIO = 0.25  # ... and peak RSS
SLICE_COLUMNS = COLUMNS // 2  # slice every variable to [:, :SLICE_COLUMNS] ...
PAD_COLUMNS = COLUMNS + SLICE_COLUMNS  # ... then zero-pad it to [rows, PAD_COLUMNS]
RENAME_MAP = r"""version: 1
rules:
  - match: 'layer_(\d+)/(.*)'
    rename: 'renamed_{1}/{2}'
"""

# -- the programs the subprocesses run ----------------------------------------------------

BUILD_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf

root, count, quarter, rows, cols, many, small = sys.argv[1], *map(int, sys.argv[2:])
report = {"tensorflow": tf.__version__}
listings = {}

def module(**children):
    model = tf.Module()
    for name, child in children.items():
        setattr(model, name, child)
    return model

def record(name, prefix, twin_of=None):
    listed = tf.train.list_variables(prefix)
    if twin_of is not None and listed != listings[twin_of]:
        sys.exit(f"{name} does not have the names and shapes of {twin_of}")
    listings[name] = listed
    report[name] = {"prefix": prefix, "keys": len(listed),
                    "elements": sum(int(np.prod(shape)) for _, shape in listed)}

def write(name, model, twin_of=None):
    record(name, tf.train.Checkpoint(model=model).write(f"{root}/{name}/ckpt"), twin_of)

rng = np.random.default_rng(0)
kernels = [tf.Variable(rng.standard_normal((rows, cols), dtype=np.float32), name=f"k{i}")
           for i in range(count)]
full = module(kernels=kernels)
write("full", full)
write("quarter", module(kernels=kernels[:quarter]))
names = [f"layer_{i}/kernel" for i in range(count)]  # a name-based copy of "full"
tf.raw_ops.SaveV2(prefix=f"{root}/named/ckpt", tensor_names=names,
                  shape_and_slices=[""] * count, tensors=[k.read_value() for k in kernels])
record("named", f"{root}/named/ckpt")
for kernel in kernels:
    kernel.assign(-kernel)  # the same model with other values
write("twin", full, twin_of="full")
layers = [module(kernel=tf.Variable(np.full(small, i, np.float32), name=f"layer_{i}/kernel"))
          for i in range(many)]
model = module(**{f"layer_{i}": layer for i, layer in enumerate(layers)})
write("many", model)
for layer in layers:
    layer.kernel.assign(-layer.kernel - 1)
write("many_twin", model, twin_of="many")
print(json.dumps(report))
"""

TF_LIST_SCRIPT = """
import sys
import tensorflow as tf

print(len(tf.train.list_variables(sys.argv[1])))
"""

TF_LIST_BOTH_SCRIPT = """
import sys
import tensorflow as tf

print(*(len(tf.train.list_variables(prefix)) for prefix in sys.argv[1:]))
"""

CKPT_READ_SCRIPT = """
import sys
import numpy as np
from ckptmigrate.formats.bundle_reader import BundleReader

reader = BundleReader(sys.argv[1])
keys = reader.variable_keys()
elements = 0
for key in keys:
    elements += np.size(reader.read(key))
reader.close()
print(len(keys), elements)
"""

TF_READ_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf

reader = tf.train.load_checkpoint(sys.argv[1])
keys = list(reader.get_variable_to_shape_map())
elements = 0
for key in keys:
    elements += np.size(reader.get_tensor(key))
print(len(keys), elements)
"""

CKPT_REWRITE_SCRIPT = """
import sys
from ckptmigrate.rewrite import rewrite_checkpoint

result = rewrite_checkpoint(sys.argv[1], sys.argv[2], durable=sys.argv[3] == "durable")
print(result.tensors)
"""

TF_RESAVE_SCRIPT = """
import sys
import tensorflow as tf

reader = tf.train.load_checkpoint(sys.argv[1])
keys = sorted(reader.get_variable_to_shape_map())
tensors = [reader.get_tensor(key) for key in keys]
tf.raw_ops.SaveV2(prefix=f"{sys.argv[2]}/ckpt", tensor_names=keys,
                  shape_and_slices=[""] * len(keys), tensors=tensors)
print(len(keys))
"""

TF_RENAME_SCRIPT = """
import re, sys
import tensorflow as tf

reader = tf.train.load_checkpoint(sys.argv[1])
keys = sorted(reader.get_variable_to_shape_map())
names = [re.sub(r"^layer_(\\d+)/", r"renamed_\\1/", key) for key in keys]  # as RENAME_MAP
tensors = [reader.get_tensor(key) for key in keys]
tf.raw_ops.SaveV2(prefix=f"{sys.argv[2]}/ckpt", tensor_names=names,
                  shape_and_slices=[""] * len(keys), tensors=tensors)
print(len(keys))
"""

TF_SLICE_PAD_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf

keep, rows, columns = map(int, sys.argv[3:])
reader = tf.train.load_checkpoint(sys.argv[1])
keys = sorted(reader.get_variable_to_shape_map())
tensors = []
for key in keys:
    value = reader.get_tensor(key)[:, :keep]
    pad = [(0, rows - value.shape[0]), (0, columns - value.shape[1])]
    tensors.append(np.pad(value, pad))  # zeros
tf.raw_ops.SaveV2(prefix=f"{sys.argv[2]}/ckpt", tensor_names=keys,
                  shape_and_slices=[""] * len(keys), tensors=tensors)
print(len(keys))
"""

TF_LISTING_SCRIPT = """
import json, sys
import tensorflow as tf

print(json.dumps(dict(tf.train.list_variables(sys.argv[1]))))
"""


# -- data ---------------------------------------------------------------------------------


class BenchmarkError(RuntimeError):
    """A measured command failed or printed something unexpected."""


@dataclass(frozen=True)
class Built:
    """One checkpoint written by the build step."""

    prefix: Path
    variables: int  # float32 variables the build step created
    keys: int  # keys TensorFlow lists: the variables and the object graph
    elements: int  # sum of the sizes of all keys (a string counts as one)

    @property
    def directory(self) -> Path:
        return self.prefix.parent

    @property
    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())


@dataclass(frozen=True)
class Command:
    """A process to measure.

    ``output`` is a directory the command creates (removed before every run); ``expect`` is
    its exact stdout, checked after every run; ``copy_of`` names a checkpoint directory
    the output must be a copy of (checked after the warm-up).
    """

    name: str
    argv: tuple[str, ...]
    expect: str | None = None
    output: Path | None = None
    copy_of: Path | None = None

    @property
    def log_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-")


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_bytes: int


@dataclass
class Result:
    command: Command
    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def rss_bytes(self) -> int:
        return max(s.rss_bytes for s in self.samples)


@dataclass(frozen=True)
class Target:
    text: str
    met: bool

    def render(self) -> str:
        return f"{self.text} ({'met' if self.met else 'MISSED'})"


# -- running processes --------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


BYTECODE_CACHE = Path(tempfile.gettempdir()) / "ckptmigrate-bench-pycache"


def child_env() -> dict[str, str]:
    """The environment of measured processes. Bytecode caching is on (a sandbox may set
    PYTHONDONTWRITEBYTECODE): an installed package has compiled bytecode, and recompiling
    it on every run would charge ~0.1 s of compilation to every ckptmigrate row."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPYCACHEPREFIX": str(BYTECODE_CACHE)}


def maxrss_bytes(usage: resource.struct_rusage) -> int:
    """``ru_maxrss`` in bytes: Linux reports KiB, macOS bytes."""
    return usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024


def clear_output(command: Command) -> None:
    """Remove what the previous run wrote, and flush dirty pages so nothing carries over."""
    if command.output is not None:
        shutil.rmtree(command.output, ignore_errors=True)
    os.sync()


def run_once(command: Command, logs: Path) -> Sample:
    """Run the command as one process; its wall time and its own peak RSS."""
    clear_output(command)
    out_path, err_path = logs / f"{command.log_name}.out", logs / f"{command.log_name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env()
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace")[-2000:]
        raise BenchmarkError(f"{command.name} exited with {proc.returncode}:\n{tail}")
    stdout = out_path.read_text(errors="replace").strip()
    if command.expect is not None and stdout != command.expect:
        raise BenchmarkError(f"{command.name} printed {stdout!r}, expected {command.expect!r}")
    return Sample(seconds, maxrss_bytes(usage))


def check_copy(command: Command) -> None:
    """The output has the source's files (``checkpoint`` aside) with the same data sizes.

    Not byte equality: ``rewrite_checkpoint`` lays tensors out in index order, TensorFlow
    in save order, and its index blocks differ, so only the data shard sizes must match.
    """
    if command.copy_of is None or command.output is None:
        return
    for source in sorted(command.copy_of.glob(f"{PREFIX_NAME}.*")):
        copy = command.output / source.name
        if not copy.is_file():
            raise BenchmarkError(f"{command.name} did not write {copy}")
        if ".data-" in source.name and copy.stat().st_size != source.stat().st_size:
            raise BenchmarkError(f"{command.name}: {copy} and {source} differ in size")


def log_sample(label: str, command: Command, sample: Sample) -> None:
    log(f"  {label:<8} {command.name:<24} {sample.seconds:8.3f} s {sample.rss_bytes / MB:8.0f} MB")


def measure(commands: Sequence[Command], repeat: int, logs: Path) -> dict[str, Result]:
    """Warm every command up once, then run them interleaved ``repeat`` times."""
    for command in commands:
        sample = run_once(command, logs)
        check_copy(command)
        log_sample("warm-up", command, sample)
    results = {c.name: Result(c) for c in commands}
    for i in range(repeat):
        for command in commands:
            sample = run_once(command, logs)
            results[command.name].samples.append(sample)
            log_sample(f"run {i + 1}/{repeat}", command, sample)
    for command in commands:
        clear_output(command)
    return results


# -- building the checkpoints -------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    variables: int
    quarter_variables: int
    rows: int


def plan(size_gib: float, variables: int) -> Layout:
    per_variable = size_gib * GIB / variables
    rows = max(1, round(per_variable / (COLUMNS * FLOAT32_BYTES)))
    return Layout(variables, max(1, variables // 4), rows)


def run_helper(argv: Sequence[str], exit_code: int = 0) -> subprocess.CompletedProcess[str]:
    """Run an unmeasured helper that must exit with ``exit_code``; stderr goes in the error."""
    done = subprocess.run(argv, env=child_env(), capture_output=True, text=True, check=False)
    if done.returncode != exit_code:
        raise BenchmarkError(
            f"{' '.join(argv[:2])} exited with {done.returncode}, expected {exit_code}:\n"
            f"{done.stderr[-2000:]}"
        )
    return done


def run_quietly(argv: Sequence[str]) -> str:
    """Run an unmeasured helper; its stdout, or its stderr in the error if it fails."""
    return run_helper(argv).stdout


@dataclass(frozen=True)
class Checkpoints:
    """Everything the build step wrote. ``twin`` and ``many_twin`` are checkpoints of the
    same model as ``full`` and ``many``: the same names, shapes and dtypes, other values.
    ``named`` holds the values of ``full`` under names ``layer_{i}/kernel``, without an
    object graph (written with ``SaveV2``), so a map can rename them."""

    full: Built
    quarter: Built
    named: Built
    twin: Built
    many: Built
    many_twin: Built
    tf_version: str


def build(layout: Layout, root: Path) -> Checkpoints:
    """Write every checkpoint with TensorFlow, in one process."""
    argv = [
        sys.executable,
        "-c",
        BUILD_SCRIPT,
        str(root),
        str(layout.variables),
        str(layout.quarter_variables),
        str(layout.rows),
        str(COLUMNS),
        str(MANY_VARIABLES),
        str(MANY_ELEMENTS),
    ]
    report = json.loads(run_quietly(argv).splitlines()[-1])

    def built(name: str, variables: int) -> Built:
        entry = report[name]
        return Built(Path(entry["prefix"]), variables, int(entry["keys"]), int(entry["elements"]))

    return Checkpoints(
        full=built("full", layout.variables),
        quarter=built("quarter", layout.quarter_variables),
        named=built("named", layout.variables),
        twin=built("twin", layout.variables),
        many=built("many", MANY_VARIABLES),
        many_twin=built("many_twin", MANY_VARIABLES),
        tf_version=str(report["tensorflow"]),
    )


def check_inspect_json(cli: Path, checkpoint: Built) -> None:
    """``inspect --json`` lists every key TensorFlow lists (a sanity check, not timed)."""
    output = run_quietly([str(cli), "inspect", str(checkpoint.prefix), "--json"])
    listed = len(json.loads(output)["variables"])
    if listed != checkpoint.keys:
        raise BenchmarkError(f"inspect --json lists {listed} variables, TF {checkpoint.keys}")


def check_check_json(cli: Path, checkpoint: Built, target: Built) -> None:
    """``check --json`` exits 0 and matches every target variable (a sanity check, not timed).

    The measured runs only see the exit code; this makes sure 0 does not come from
    comparing too little."""
    argv = [str(cli), "check", str(checkpoint.prefix), "--target", str(target.prefix), "--json"]
    summary = json.loads(run_quietly(argv))["summary"]
    if (summary["matched"], summary["target_variables"]) != (target.variables,) * 2:
        raise BenchmarkError(
            f"check --json matched {summary['matched']} of {summary['target_variables']} "
            f"target variables, expected all {target.variables}"
        )


def check_check_fails(cli: Path, checkpoint: Built, target: Built) -> None:
    """``check`` exits 1 when the checkpoint lacks target variables (a sanity check)."""
    run_helper([str(cli), "check", str(checkpoint.prefix), "--target", str(target.prefix)], 1)


def write_maps(directory: Path, rows: int) -> tuple[Path, Path]:
    """The rename-only map and the slice + pad map, as YAML files."""
    directory.mkdir()
    rename, slice_pad = directory / "rename.yaml", directory / "slice-pad.yaml"
    rename.write_text(RENAME_MAP)
    slice_pad.write_text(
        "version: 1\nrules:\n"
        f"  - match: '.*'\n    slice: '[:, :{SLICE_COLUMNS}]'\n"
        f"  - match: '.*'\n    pad: {{shape: [{rows}, {PAD_COLUMNS}], fill: zeros}}\n"
    )
    return rename, slice_pad


def check_convert(
    cli: Path, checkpoint: Built, map_file: Path, output: Path, expected: dict[str, list[int]]
) -> list[str]:
    """One ``convert --json`` whose output ``tf.train.list_variables`` must list as exactly
    ``expected`` (names and shapes; a sanity check, not timed). Returns how unchanged
    shards were carried over."""
    shutil.rmtree(output, ignore_errors=True)
    argv = [str(cli), "convert", str(checkpoint.prefix), "--map", str(map_file)]
    report = json.loads(run_quietly([*argv, "-o", str(output), "--json"]))
    listed = json.loads(run_quietly(python(TF_LISTING_SCRIPT, output / PREFIX_NAME)))
    shutil.rmtree(output)
    if listed != expected:
        pairs = [{(k, tuple(v)) for k, v in d.items()} for d in (listed, expected)]
        wrong = sorted(pairs[0] ^ pairs[1])
        raise BenchmarkError(
            f"convert with {map_file.name}: TF lists {len(listed)} variables, expected "
            f"{len(expected)}; not as expected: {wrong[:4]}"
        )
    return [str(method) for method in report["shards_carried_over"]]


@dataclass(frozen=True)
class ImportCheck:
    """What ``python -X importtime`` saw one ``ckptmigrate check`` import."""

    modules: int
    seconds: float  # the import time of the top-level imports, their children included
    tensorflow: tuple[str, ...]  # the TensorFlow modules among them: must be none

    def render(self) -> str:
        if self.tensorflow:
            shown = ", ".join(self.tensorflow[:3])
            return f"yes ({len(self.tensorflow)} modules: {shown}, ...)"
        return f"no ({self.modules} modules imported in {fmt_seconds(self.seconds)})"


def check_imports(checkpoint: Built, target: Built) -> ImportCheck:
    """Run ``python -X importtime -m ckptmigrate check`` once and read its import log."""
    argv = [sys.executable, "-X", "importtime", "-m", "ckptmigrate", "check"]
    argv += [str(checkpoint.prefix), "--target", str(target.prefix)]
    modules: list[str] = []
    microseconds = 0
    for line in run_helper(argv).stderr.splitlines():
        if not line.startswith("import time:") or line.endswith("imported package"):
            continue
        _, cumulative, name = line.split("|")
        modules.append(name.strip())
        if not name.startswith("  "):  # one space after the bar: a top-level import
            microseconds += int(cumulative)
    if not modules:
        raise BenchmarkError("python -X importtime printed no import log")
    tensorflow = tuple(m for m in modules if m.split(".")[0].startswith("tensorflow"))
    return ImportCheck(len(modules), microseconds / 1e6, tensorflow)


# -- the measured commands ----------------------------------------------------------------


def python(script: str, *args: str | Path) -> tuple[str, ...]:
    return (sys.executable, "-c", script, *map(str, args))


def inspect_commands(cli: Path, ckpt: Built, suffix: str = "") -> list[Command]:
    return [
        Command(f"ckptmigrate inspect{suffix}", (str(cli), "inspect", str(ckpt.prefix))),
        Command(f"tf list_variables{suffix}", python(TF_LIST_SCRIPT, ckpt.prefix), str(ckpt.keys)),
    ]


def check_commands(cli: Path, ckpt: Built, target: Built, suffix: str = "") -> list[Command]:
    """``check`` must exit 0 (``run_once`` fails on any other exit code)."""
    return [
        Command(
            f"ckptmigrate check{suffix}",
            (str(cli), "check", str(ckpt.prefix), "--target", str(target.prefix)),
        ),
        Command(
            f"tf list_variables x2{suffix}",
            python(TF_LIST_BOTH_SCRIPT, ckpt.prefix, target.prefix),
            f"{ckpt.keys} {target.keys}",
        ),
    ]


def many_commands(cli: Path, ckpt: Built, target: Built) -> list[Command]:
    """The two ckptmigrate runs on the 10,000-variable checkpoints (see ``tf_many_commands``)."""
    return [
        check_commands(cli, ckpt, target, " 10k")[0],
        inspect_commands(cli, ckpt, " 10k")[0],
    ]


def tf_many_commands(ckpt: Built, target: Built) -> list[Command]:
    """Their TensorFlow baselines, measured apart: they take seconds, and the check's
    target is absolute, so the ckptmigrate runs get more repeats than these."""
    return [
        check_commands(Path("ckptmigrate"), ckpt, target, " 10k")[1],
        inspect_commands(Path("ckptmigrate"), ckpt, " 10k")[1],
    ]


def read_commands(ckpt: Built) -> list[Command]:
    expect = f"{ckpt.keys} {ckpt.elements}"
    return [
        Command("BundleReader read all", python(CKPT_READ_SCRIPT, ckpt.prefix), expect),
        Command("tf get_tensor all", python(TF_READ_SCRIPT, ckpt.prefix), expect),
    ]


def rewrite_command(name: str, ckpt: Built, output: Path, durable: bool) -> Command:
    mode = "durable" if durable else "no-fsync"
    return Command(
        name,
        python(CKPT_REWRITE_SCRIPT, ckpt.prefix, output, mode),
        str(ckpt.keys),
        output,
        ckpt.directory,
    )


def cp_command(name: str, ckpt: Built, output: Path, *, sync: bool = False) -> Command:
    """`cp -r`; with ``sync``, then fsync of every copied file (`sync FILE...`): the fair
    baseline for a durable rewrite, which fsyncs what it writes."""
    argv: tuple[str, ...] = ("cp", "-r", str(ckpt.directory), str(output))
    if sync:
        argv = ("sh", "-c", 'cp -r "$0" "$1" && sync "$1"/*', str(ckpt.directory), str(output))
    return Command(name, argv, None, output, ckpt.directory)


def rewrite_commands(ckpt: Built, out: Path) -> list[Command]:
    return [
        rewrite_command("rewrite durable", ckpt, out / "durable", durable=True),
        rewrite_command("rewrite no-fsync", ckpt, out / "no-fsync", durable=False),
        Command(
            "tf re-save",
            python(TF_RESAVE_SCRIPT, ckpt.prefix, out / "tf-resave"),
            str(ckpt.keys),
            out / "tf-resave",
            ckpt.directory,
        ),
        cp_command("cp -r", ckpt, out / "cp"),
        cp_command("cp -r + sync", ckpt, out / "cp-sync", sync=True),
    ]


def convert_command(
    name: str,
    cli: Path,
    ckpt: Built,
    map_file: Path,
    output: Path,
    *flags: str,
    copy_of: Path | None = None,
) -> Command:
    argv = (str(cli), "convert", str(ckpt.prefix), "--map", str(map_file), "-o", str(output))
    return Command(name, (*argv, "--quiet", *flags), None, output, copy_of)


def convert_rename_commands(cli: Path, ckpt: Built, rename: Path, out: Path) -> list[Command]:
    return [
        convert_command(
            "convert rename", cli, ckpt, rename, out / "convert-rename", copy_of=ckpt.directory
        ),
        Command(
            "tf rename + re-save",
            python(TF_RENAME_SCRIPT, ckpt.prefix, out / "tf-rename"),
            str(ckpt.keys),
            out / "tf-rename",
            ckpt.directory,
        ),
    ]


def convert_copy_commands(cli: Path, ckpt: Built, rename: Path, out: Path) -> list[Command]:
    return [
        convert_command(
            "convert rename --copy",
            cli,
            ckpt,
            rename,
            out / "convert-rename-copy",
            "--copy",
            copy_of=ckpt.directory,
        ),
        cp_command("cp -r E", ckpt, out / "cp-named"),
    ]


def convert_slice_pad_commands(
    cli: Path, ckpt: Built, slice_pad: Path, rows: int, out: Path
) -> list[Command]:
    tf_output = out / "tf-slice-pad"
    shape = (SLICE_COLUMNS, rows, PAD_COLUMNS)
    return [
        convert_command("convert slice+pad", cli, ckpt, slice_pad, out / "convert-slice-pad"),
        convert_command(
            "convert slice+pad --workers 1",
            cli,
            ckpt,
            slice_pad,
            out / "convert-slice-pad-1",
            "--workers",
            "1",
        ),
        Command(
            "tf slice+pad",
            python(TF_SLICE_PAD_SCRIPT, ckpt.prefix, tf_output, *map(str, shape)),
            str(ckpt.keys),
            tf_output,
        ),
    ]


def quarter_commands(ckpt: Built, out: Path) -> list[Command]:
    return [
        rewrite_command("rewrite durable 1/4", ckpt, out / "durable-quarter", durable=True),
        cp_command("cp -r 1/4", ckpt, out / "cp-quarter", sync=True),
    ]


# -- the table ----------------------------------------------------------------------------


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def fmt_rss(nbytes: int) -> str:
    return f"{nbytes / MB:,.0f} MB"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.3f}"


def fmt_size(nbytes: int) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / (1 << 20):.0f} MiB"


def comparison_row(
    label: str, ours: Result, baseline: Result, targets: Sequence[Target] = ()
) -> list[str]:
    ratio = ours.seconds / baseline.seconds
    return [
        label,
        fmt_seconds(ours.seconds),
        fmt_seconds(baseline.seconds),
        fmt_ratio(ratio),
        "; ".join(t.render() for t in targets) or "—",
        fmt_rss(ours.rss_bytes),
        fmt_rss(baseline.rss_bytes),
    ]


def ratio_target(ours: Result, baseline: Result, limit: float) -> Target:
    return Target(f"≤ {limit:.2f}", ours.seconds / baseline.seconds <= limit)


def rss_flat_row(full: Result, quarter: Result, full_size: int, quarter_size: int) -> list[str]:
    ratio = full.rss_bytes / quarter.rss_bytes
    target = Target(f"flat: ≤ {RSS_FLAT_RATIO:.2f}", ratio <= RSS_FLAT_RATIO)
    return [
        f"rewrite peak RSS, {fmt_size(full_size)} ÷ {fmt_size(quarter_size)} checkpoint",
        f"{fmt_rss(full.rss_bytes)} ({fmt_size(full_size)})",
        f"{fmt_rss(quarter.rss_bytes)} ({fmt_size(quarter_size)})",
        fmt_ratio(ratio),
        target.render(),
        "—",
        "—",
    ]


def seconds_target(ours: Result, limit: float) -> Target:
    return Target(f"< {limit:g} s", ours.seconds < limit)


def imports_row(imports: ImportCheck) -> list[str]:
    target = Target("no", not imports.tensorflow)
    label = "`ckptmigrate check` imports TensorFlow (`python -X importtime`)"
    return [label, imports.render(), "—", "—", target.render(), "—", "—"]


def table_rows(
    results: dict[str, Result],
    ckpts: Checkpoints,
    imports: ImportCheck,
    rows_per_variable: int,
    carried_over: Sequence[str],
) -> list[list[str]]:
    """The table body, one row per comparison, in the order of the module docstring."""
    r, full, quarter, many = results, ckpts.full, ckpts.quarter, ckpts.many
    inspect, tf_list = r["ckptmigrate inspect"], r["tf list_variables"]
    inspect_targets = [
        ratio_target(inspect, tf_list, INSPECT_WALL_RATIO),
        Target("RSS ≤ 100 MB", inspect.rss_bytes <= INSPECT_RSS_BYTES),
    ]
    rows = [
        comparison_row(
            "`ckptmigrate inspect` vs `tf.train.list_variables`", inspect, tf_list, inspect_targets
        ),
        comparison_row(
            "read every tensor: `BundleReader.read` vs `get_tensor`",
            r["BundleReader read all"],
            r["tf get_tensor all"],
        ),
    ]
    for mode in ("durable", "no-fsync"):
        rows += rewrite_rows(
            f"rewrite unchanged ({mode})", r[f"rewrite {mode}"], r, durable=mode == "durable"
        )
    quarter_label = (
        f"rewrite unchanged (durable), 1/4-size checkpoint ({fmt_size(quarter.nbytes)}, "
        f"{quarter.variables} variables) vs `cp -r` + `sync`"
    )
    quarter_rewrite = r["rewrite durable 1/4"]
    rows.append(comparison_row(quarter_label, quarter_rewrite, r["cp -r 1/4"]))
    rows.append(rss_flat_row(r["rewrite durable"], quarter_rewrite, full.nbytes, quarter.nbytes))
    rows += convert_rows(r, ckpts.named, rows_per_variable, carried_over)
    check, tf_list_both = r["ckptmigrate check"], r["tf list_variables x2"]
    rows.append(
        comparison_row(
            f"`ckptmigrate check A --target B`, two {fmt_size(full.nbytes)} checkpoints of the "
            "same model (exit 0) vs `tf.train.list_variables` on both",
            check,
            tf_list_both,
            [ratio_target(check, tf_list_both, CHECK_WALL_RATIO)],
        )
    )
    many_label = f"{many.variables:,} variables of [{MANY_ELEMENTS}] ({fmt_size(many.nbytes)})"
    many_check = r["ckptmigrate check 10k"]
    rows.append(
        comparison_row(
            f"`ckptmigrate check C --target D`, two checkpoints of {many_label} (exit 0) vs "
            "`tf.train.list_variables` on both",
            many_check,
            r["tf list_variables x2 10k"],
            [seconds_target(many_check, MANY_CHECK_SECONDS)],
        )
    )
    rows.append(
        comparison_row(
            f"`ckptmigrate inspect C`, {many_label} vs `tf.train.list_variables`",
            r["ckptmigrate inspect 10k"],
            r["tf list_variables 10k"],
        )
    )
    rows.append(imports_row(imports))
    return rows


def convert_rows(
    results: dict[str, Result], named: Built, rows: int, carried_over: Sequence[str]
) -> list[list[str]]:
    r = results
    how = " and ".join(sorted(set(carried_over))) or "nothing"
    rename, tf_rename = r["convert rename"], r["tf rename + re-save"]
    copy, cp = r["convert rename --copy"], r["cp -r E"]
    transform, tf_transform = r["convert slice+pad"], r["tf slice+pad"]
    rss_ratio = transform.rss_bytes / tf_transform.rss_bytes
    transform_targets = [
        ratio_target(transform, tf_transform, CONVERT_TRANSFORM_RATIO),
        Target(
            f"RSS ≤ {CONVERT_TRANSFORM_RSS_RATIO:.2f}×", rss_ratio <= CONVERT_TRANSFORM_RSS_RATIO
        ),
    ]
    return [
        comparison_row(
            f"`ckptmigrate convert E` ({fmt_size(named.nbytes)}, {named.variables} variables "
            f"named `layer_N/kernel`), rename only, unchanged shard carried over by {how}, "
            "vs TF load + rename + re-save (`SaveV2`)",
            rename,
            tf_rename,
            [ratio_target(rename, tf_rename, CONVERT_LINK_RATIO)],
        ),
        comparison_row(
            "`ckptmigrate convert E --copy`, rename only vs `cp -r`",
            copy,
            cp,
            [ratio_target(copy, cp, CONVERT_COPY_VS_CP)],
        ),
        comparison_row(
            f"`ckptmigrate convert E`, every variable sliced to [:, :{SLICE_COLUMNS}] and "
            f"zero-padded to [{rows}, {PAD_COLUMNS}] vs TF + numpy (all kept, one `SaveV2`)",
            transform,
            tf_transform,
            transform_targets,
        ),
        comparison_row(
            f"the same, default workers ({default_workers()} on this machine: values computed "
            "ahead of the writer) vs `--workers 1`",
            transform,
            r["convert slice+pad --workers 1"],
            [],
        ),
    ]


def rewrite_rows(
    label: str, ours: Result, results: dict[str, Result], *, durable: bool
) -> list[list[str]]:
    """Against TF's re-save, and against `cp -r` (followed by `sync` when ours fsyncs)."""
    cp = results["cp -r + sync" if durable else "cp -r"]
    cp_label = "`cp -r` + `sync`" if durable else "`cp -r`"
    return [
        comparison_row(f"{label} vs TF re-save (`SaveV2`)", ours, results["tf re-save"]),
        comparison_row(f"{label} vs {cp_label}", ours, cp, [ratio_target(ours, cp, REWRITE_VS_CP)]),
    ]


def markdown(header: str, rows: Sequence[Sequence[str]]) -> str:
    columns = [
        "measurement",
        "ckptmigrate",
        "baseline",
        "ratio",
        "target",
        "peak RSS ckptmigrate",
        "peak RSS baseline",
    ]
    lines = [
        header,
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(["---", "--:", "--:", "--:", "---", "--:", "--:"]) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def header_line(full: Built, layout: Layout, tf_version: str, repeat: int) -> str:
    today = datetime.date.today().isoformat()
    runs = f"median of {repeat} warm runs" if repeat > 1 else "1 warm run"
    runs += (
        f" ({repeat * FAST_REPEATS} for `convert --copy`, `cp -r E` and the 10,000-variable "
        "ckptmigrate runs)"
    )
    return (
        f"**{fmt_size(full.nbytes)} checkpoint, {full.variables} float32 variables of "
        f"[{layout.rows}, {COLUMNS}]** · {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}, TensorFlow {tf_version} "
        f"· {today} · wall time: {runs}, each a fresh process · ratio = ckptmigrate ÷ "
        "baseline · MB = 10⁶ bytes"
    )


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--size-gib",
        type=float,
        default=1.0,
        help="size of the main checkpoint in GiB (default 1.0)",
    )
    parser.add_argument(
        "--variables", type=int, default=256, help="number of float32 variables in it (default 256)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="measured runs per command, after one warm-up (default 3)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp"),
        help="where to create the scratch directory (default /tmp)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch directory (checkpoints and logs)"
    )
    args = parser.parse_args(argv)
    if args.size_gib <= 0 or args.variables < 1 or args.repeat < 1:
        parser.error("--size-gib must be positive; --variables and --repeat at least 1")
    return args


def ckptmigrate_cli() -> Path:
    cli = Path(sys.executable).parent / "ckptmigrate"
    if not cli.is_file():
        raise BenchmarkError(f"{cli} not found: run with the virtualenv's python")
    return cli


def run_benchmarks(args: argparse.Namespace, work: Path) -> str:
    cli = ckptmigrate_cli()
    layout = plan(args.size_gib, args.variables)
    logs, out = work / "logs", work / "out"
    logs.mkdir()
    out.mkdir()
    log(f"building checkpoints with TensorFlow in {work} ...")
    ckpts = build(layout, work / "src")
    full, quarter, many = ckpts.full, ckpts.quarter, ckpts.many
    log(
        f"  {fmt_size(full.nbytes)} ({full.keys} keys) twice, 1/4-size "
        f"{fmt_size(quarter.nbytes)} ({quarter.keys} keys), {fmt_size(many.nbytes)} "
        f"({many.keys} keys) twice"
    )
    check_inspect_json(cli, full)
    check_inspect_json(cli, many)
    check_check_json(cli, full, ckpts.twin)
    check_check_json(cli, many, ckpts.many_twin)
    check_check_fails(cli, quarter, full)
    imports = check_imports(full, ckpts.twin)
    if imports.tensorflow:
        log(f"warning: `ckptmigrate check` imports TensorFlow: {', '.join(imports.tensorflow)}")
    named = ckpts.named
    rename_map, slice_pad_map = write_maps(work / "maps", layout.rows)
    renamed = {f"renamed_{i}/kernel": [layout.rows, COLUMNS] for i in range(named.variables)}
    carried_over = check_convert(cli, named, rename_map, out / "check-rename", renamed)
    padded = {f"layer_{i}/kernel": [layout.rows, PAD_COLUMNS] for i in range(named.variables)}
    check_convert(cli, named, slice_pad_map, out / "check-slice-pad", padded)
    log(f"  convert output checked; unchanged shards carried over by {carried_over}")
    results: dict[str, Result] = {}
    # Sub-second runs that sit near a threshold (against `cp -r`, or under 1 s) take
    # FAST_REPEATS times the repeats: a few extra runs of them cost seconds, and medians
    # of 3 on a noisy VM moved those rows across their thresholds between runs.
    fast = args.repeat * FAST_REPEATS
    groups = [
        ("inspect", inspect_commands(cli, full), args.repeat),
        ("read", read_commands(full), args.repeat),
        ("rewrite", rewrite_commands(full, out), args.repeat),
        ("rewrite 1/4 size", quarter_commands(quarter, out), args.repeat),
        ("convert rename", convert_rename_commands(cli, named, rename_map, out), args.repeat),
        ("convert --copy vs cp -r", convert_copy_commands(cli, named, rename_map, out), fast),
        (
            "convert slice + pad",
            convert_slice_pad_commands(cli, named, slice_pad_map, layout.rows, out),
            args.repeat,
        ),
        ("check", check_commands(cli, full, ckpts.twin), args.repeat),
        (f"{many.variables:,} variables", many_commands(cli, many, ckpts.many_twin), fast),
        (
            f"{many.variables:,} variables, TensorFlow",
            tf_many_commands(many, ckpts.many_twin),
            args.repeat,
        ),
    ]
    for title, commands, repeat in groups:
        log(f"measuring {title} ({repeat} runs each) ...")
        results.update(measure(commands, repeat, logs))
    header = header_line(full, layout, ckpts.tf_version, args.repeat)
    rows = table_rows(results, ckpts, imports, layout.rows, carried_over)
    return markdown(header, rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ckptmigrate-bench-", dir=args.workdir))
    try:
        table = run_benchmarks(args, work)
    except BenchmarkError as e:
        log(f"error: {e}")
        return 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
