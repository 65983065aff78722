"""The fuzzing harness (tests/fuzzing.py) in the test suite: a bounded, deterministic run
over every kind of input (index, data shard, state file, object graph, map, spec) that must
end with no crash, hang or blow-up; the saved crash inputs replayed; and the defects the
fuzzer found, each pinned by a plain test (issue 12, "Fuzzing as a habit")."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import fuzzing
import numpy as np
import pytest
from helpers import tf_save

from ckptmigrate import open_checkpoint, plan
from ckptmigrate.errors import CkptMigrateError, CorruptCheckpointError
from ckptmigrate.formats import crc
from ckptmigrate.formats.bundle_proto import decode_entry, encode_entry
from ckptmigrate.formats.table import iter_table
from ckptmigrate.mapping.located import MapError
from ckptmigrate.mapping.schema import load_map
from ckptmigrate.targets.spec import load_spec

# Per target: 8 x 400 = 3,200 cases, about 30 s on 2 cores.
CASES = int(os.environ.get("CKPTMIGRATE_FUZZ_TEST_CASES", "400"))
REGRESSION_FILES = sorted(fuzzing.REGRESSIONS.glob("*/*.bin"))


@pytest.fixture(scope="module")
def seed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fuzzing.build_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.mark.tensorflow
def test_bounded_fuzz_run_finds_no_crash_hang_or_blowup(seed_root: Path) -> None:
    started = time.monotonic()
    report = fuzzing.run_campaign(seed_root, CASES, workers=2, base=0)
    print(report.table())
    assert report.cases == CASES * len(fuzzing.TARGETS)
    assert report.bad == 0, report.table()
    for target, tally in report.tallies.items():
        # Mutations both get past the parsers and get refused by them.
        assert tally.counts["ok"] > 0, (target, report.table())
        assert tally.counts["clean"] > 0, (target, report.table())
    assert time.monotonic() - started < 120


@pytest.mark.tensorflow
@pytest.mark.parametrize("path", REGRESSION_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_saved_fuzz_inputs_are_handled(seed_root: Path, path: Path) -> None:
    outcome, detail = fuzzing.replay(seed_root, path)
    if outcome == "skip":
        pytest.skip(detail)
    assert outcome in ("ok", "clean"), detail


@pytest.mark.tensorflow
def test_the_same_cases_come_from_the_same_seed(seed_root: Path) -> None:
    seeds = fuzzing.load_seeds(seed_root)
    for target in fuzzing.TARGETS:
        first = [fuzzing.case_input(seeds, target, i, 7)[1] for i in range(20)]
        again = [fuzzing.case_input(seeds, target, i, 7)[1] for i in range(20)]
        assert first == again
        assert len(set(first)) > 10  # and they differ from case to case


@pytest.mark.tensorflow
def test_workers_are_recycled_and_run_the_same_cases(seed_root: Path) -> None:
    """A worker is replaced after ``recycle`` cases, so what one accumulates over a long
    campaign never counts against a late case's memory limit; the cases, decided by
    (seed, target, case) alone, and so their outcomes, stay what one worker made of them."""
    targets = ("data", "map")
    once = fuzzing.run_campaign(seed_root, 30, workers=1, targets=targets, recycle=10**9)
    recycled = fuzzing.run_campaign(seed_root, 30, workers=1, targets=targets, recycle=25)
    assert once.workers_started == 1
    assert recycled.workers_started == 3  # 60 cases, 25 per worker
    assert recycled.cases == once.cases == 60
    for target in targets:
        assert recycled.tallies[target].counts == once.tallies[target].counts
        assert recycled.tallies[target].signatures == once.tallies[target].signatures
    assert 0 <= recycled.most_grown < fuzzing.MEMORY_LIMIT


# --- the harness classifies what it sees -----------------------------------------------------


def _fake_seed(target: str) -> fuzzing.Seed:
    return fuzzing.Seed(target, "fake", b"", "", "")


@pytest.mark.parametrize(
    ("raised", "outcome"),
    [
        (None, "ok"),
        (CkptMigrateError("bad", path="x"), "clean"),
        (CkptMigrateError(""), "crash"),  # an empty message is no message
        (TypeError("oops"), "crash"),
        (RecursionError(), "crash"),
        (MemoryError(), "blowup"),
    ],
)
def test_outcomes_are_classified(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raised: BaseException | None, outcome: str
) -> None:
    def target(seed: fuzzing.Seed, data: bytes, work: Path) -> None:
        if raised is not None:
            raise raised

    monkeypatch.setitem(fuzzing.TARGET_FUNCTIONS, "map", target)
    assert fuzzing.run_case(_fake_seed("map"), b"", tmp_path / "w")[0] == outcome


def test_a_slow_case_is_a_hang(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import signal

    def target(seed: fuzzing.Seed, data: bytes, work: Path) -> None:
        time.sleep(10)

    monkeypatch.setitem(fuzzing.TARGET_FUNCTIONS, "map", target)
    monkeypatch.setattr(fuzzing, "CASE_SECONDS", 1)
    previous = signal.signal(signal.SIGALRM, fuzzing.on_alarm)
    try:
        started = time.monotonic()
        outcome, _, _ = fuzzing.timed_case(_fake_seed("map"), b"", tmp_path / "w", False)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert outcome == "hang"
    assert time.monotonic() - started < 5


# --- what the fuzzer found -------------------------------------------------------------------


def test_a_timestamp_tag_on_a_non_timestamp_is_a_clean_error(tmp_path: Path) -> None:
    """PyYAML's timestamp constructor raised AttributeError (a traceback) when its pattern
    did not match; `!!timestamp 2020-13-45` (matching, out of range) was already clean."""
    path = tmp_path / "map.yaml"
    path.write_text("version: 1\nrules:\n  - {name: a, drop: true}\nwhen: !!timestamp xyz\n")
    with pytest.raises(MapError, match="timestamp value 'xyz': not a value of this type"):
        load_map(path)
    spec = tmp_path / "spec.yaml"
    spec.write_text("variables:\n  a: {shape: [2], when: !!timestamp 12:30}\n")
    with pytest.raises(CkptMigrateError, match=r"spec.yaml:2:.*timestamp value '12:30'"):
        load_spec(spec)


@pytest.mark.tensorflow
def test_a_string_length_past_64_bits_is_a_clean_error(tf: Any, tmp_path: Path) -> None:
    """A 10-byte length varint holds up to 70 bits: packing it for the checksum was a
    struct.error traceback. TensorFlow refuses the tensor too."""
    prefix = tf_save(tf, tmp_path / "ckpt", {"s": np.array([b"ab"], dtype=object)})
    raw = b"\xff" * 9 + b"\x7f" + b"\0\0\0\0" + b"ab"
    shard = tmp_path / "ckpt.data-00000-of-00001"
    shard.write_bytes(raw)
    index = tmp_path / "ckpt.index"
    items = []
    for key, value in iter_table(index.read_bytes()):
        if key == b"s":
            entry = decode_entry(value)._replace(offset=0, size=len(raw))
            items.append((key, encode_entry(entry._replace(crc32c=crc.mask(crc.value(raw))))))
        else:
            items.append((key, value))
    index.write_bytes(fuzzing.table_bytes(items))
    with pytest.raises(tf.errors.OpError):
        tf.train.load_checkpoint(str(prefix)).get_tensor("s")
    with open_checkpoint(prefix) as checkpoint, pytest.raises(CorruptCheckpointError) as error:
        checkpoint.read("s")
    assert str(error.value).startswith(f"{shard} (variable 's'): ")
    assert "runs past the tensor's bytes" in str(error.value)


@pytest.mark.tensorflow
def test_an_object_graph_with_a_group_field_is_refused_for_rewriting(
    tf: Any, tmp_path: Path
) -> None:
    """protobuf (and so TensorFlow) keeps a group field as an unknown field; the graph
    rewriter's wire reader does not handle groups and raised ProtoError through plan()."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    module = tf.Module()
    module.w = tf.Variable([1.0, 2.0])
    module.b = tf.Variable([3.0])
    home = tmp_path / "home"
    saved = tf.train.Checkpoint(model=module).write(str(home / "ckpt"))
    graph = tf.train.load_checkpoint(saved).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    grouped = graph + bytes([15 << 3 | 3, 1 << 3 | 0, 7, 15 << 3 | 4])  # field 15: a group
    trackable_object_graph_pb2.TrackableObjectGraph.FromString(grouped)  # TF accepts it
    work = tmp_path / "work"
    work.mkdir()
    seed = fuzzing.Seed("objgraph", "t", graph, str(home), "ckpt")
    prefix = fuzzing.with_graph(seed, grouped, work)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("version: 1\nrules:\n  - {name: model/b, drop: true}\n")
    with pytest.raises(MapError, match=r"cannot rewrite \(unsupported wire type 3\)"):
        plan(prefix, mapping)
    mapping.write_text("version: 1\nrules:\n  - {name: model/b, rename: model/b}\n")
    assert plan(prefix, mapping).object_graph is None  # nothing moves: the graph is copied


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{h: [], 0: 1, shape: [2]}", "unknown field(s) 0, h"),  # sorting str with int raised
        ("{shape: [2], dtype: [float32]}", "unknown dtype ['float32']"),  # unhashable
    ],
)
def test_spec_fields_of_any_yaml_type_are_clean_errors(
    tmp_path: Path, body: str, expected: str
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"variables:\n  a: {body}\n")
    with pytest.raises(CkptMigrateError) as error:
        load_spec(spec)
    assert str(error.value).startswith(f"{spec} (variable 'a'): {expected}")
