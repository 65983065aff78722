"""The block operations (reorder_blocks, add_to_block) and split sizes computed from the
shape: values, plan-time shape checks, and bad maps refused with file:line:column."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits, tf_save

from ckptmigrate.conversion import convert, plan
from ckptmigrate.mapping.exprs import SizeExpr, parse_size_expr
from ckptmigrate.mapping.located import MapError
from ckptmigrate.mapping.ops import AddToBlock, OpError, ReorderBlocks, split_bounds
from ckptmigrate.mapping.schema import parse_map


def sizes(*items: int | str) -> tuple[int | SizeExpr, ...]:
    return tuple(SizeExpr(i, parse_size_expr(i)) if isinstance(i, str) else i for i in items)


# -- values ----------------------------------------------------------------------------


def test_reorder_blocks_moves_whole_blocks() -> None:
    value = np.arange(24, dtype=np.float32).reshape(3, 8)  # four blocks of two columns
    out = ReorderBlocks(-1, (0, 2, 1, 3)).apply(value, "v")
    assert np.array_equal(out[:, 0:2], value[:, 0:2])
    assert np.array_equal(out[:, 2:4], value[:, 4:6])
    assert np.array_equal(out[:, 4:6], value[:, 2:4])
    assert np.array_equal(out[:, 6:8], value[:, 6:8])
    rows = ReorderBlocks(0, (2, 0, 1)).apply(value, "v")
    assert np.array_equal(rows, value[[2, 0, 1]])
    assert out.flags.c_contiguous
    assert out.dtype == np.float32
    # Reordering by the inverse permutation gives the original back.
    back = ReorderBlocks(1, (0, 2, 1, 3)).apply(out, "v")
    assert same_bits(back, value)


def test_add_to_block_touches_one_block_only() -> None:
    value = np.zeros(12, np.float32)
    out = AddToBlock(0, 4, 1, 1.0).apply(value, "b")
    assert np.array_equal(out, np.repeat([0.0, 1.0, 0.0, 0.0], 3).astype(np.float32))
    assert not value.any()  # the input is left as it was
    matrix = np.ones((2, 6), np.float64)
    shifted = AddToBlock(-1, 2, 0, -0.5).apply(matrix, "m")
    assert np.array_equal(shifted[:, :3], np.full((2, 3), 0.5))
    assert np.array_equal(shifted[:, 3:], matrix[:, 3:])
    half = AddToBlock(0, 2, 1, 1.0).apply(np.zeros(4, np.float16), "h")
    assert half.dtype == np.float16
    assert half.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_block_ops_check_shapes_and_dtypes_at_plan_time() -> None:
    assert ReorderBlocks(1, (1, 0)).result_shape((7, 16)) == (7, 16)
    with pytest.raises(OpError, match=r"axis 0 of \[7, 16\] \(7\) does not cut into 2 equal"):
        ReorderBlocks(0, (1, 0)).result_shape((7, 16))
    with pytest.raises(OpError, match=r"axis 2 is out of range for shape \[7, 16\]"):
        AddToBlock(2, 4, 1, 1.0).result_shape((7, 16))
    assert AddToBlock(0, 4, 1, 1.0).result_dtype("bfloat16") == "bfloat16"
    with pytest.raises(OpError, match="floating-point variables, this one is int64"):
        AddToBlock(0, 1, 0, 1.0).result_dtype("int64")


# -- split sizes from the shape --------------------------------------------------------


def test_size_expressions_follow_arithmetic_precedence() -> None:
    assert parse_size_expr("dim0 - dim1/4") == ("-", ("dim", 0), ("/", ("dim", 1), ("int", 4)))
    assert parse_size_expr("2*(dim0+1)") == ("*", ("int", 2), ("+", ("dim", 0), ("int", 1)))
    assert split_bounds(0, (7, 16), 2, sizes(-1, "dim1/4")) == [(0, 3), (3, 7)]
    assert split_bounds(0, (7, 16), 2, sizes("dim0 - dim1/4", -1)) == [(0, 3), (3, 7)]
    assert split_bounds(1, (2, 9), 3, sizes(2, "(dim1 - 2) / 7 * 3", -1)) == [
        (0, 2),
        (2, 5),
        (5, 9),
    ]
    assert split_bounds(0, (6,), 3, None) == [(0, 2), (2, 4), (4, 6)]  # unchanged: equal parts


@pytest.mark.parametrize(
    ("shape", "items", "message"),
    [
        ((7, 10), (-1, "dim1/4"), "size 'dim1/4' divides 10 by 4 for shape [7, 10], which"),
        ((7,), (-1, "dim1"), "size 'dim1' reads dim1, the variable [7] has rank 1"),
        ((3, 16), (-1, "dim1/4"), "split sizes [-1, dim1/4=4] leave -1 for the -1 part"),
        ((7, 16), ("dim0 - 7", -1), "split size 'dim0 - 7' is 0 for shape [7, 16]"),
        ((7, 16), (2, "dim1/4"), "split sizes [2, dim1/4=4] add up to 6, axis 0 of [7, 16] is 7"),
        ((7, 16), ("dim1/(dim0-7)", -1), "divides 16 by 0"),
    ],
)
def test_split_sizes_that_do_not_fit_the_shape(
    shape: tuple[int, ...], items: tuple[int | str, ...], message: str
) -> None:
    with pytest.raises(OpError) as raised:
        split_bounds(0, shape, len(items), sizes(*items))
    assert message in str(raised.value)


# -- bad maps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "where", "message"),
    [
        (
            "split: {axis: 0, into: [a, b], sizes: ['dim1/', -1]}",
            ":4:44",
            "bad split size 'dim1/': the expression ends early",
        ),
        (
            "split: {into: [a, b], sizes: [-1, 'dim1 % 4']}",
            ":4:39",
            "bad split size 'dim1 % 4': unexpected '% 4'; use integers, dimN, parameters, "
            "+ - * / ( )",
        ),
        (
            "split: {into: [a, b], sizes: [-1, '(dim1 - 1']}",
            ":4:39",
            "bad split size '(dim1 - 1': a ( is not closed",
        ),
        (
            "split: {into: [a, b], sizes: [-1, 'dim1 dim0']}",
            ":4:39",
            "unexpected 'dim0' after a complete expression",
        ),
        (
            "split: {into: [a, b], sizes: [-1, -1]}",
            ":4:34",
            "split sizes allow one -1 (the rest of the axis)",
        ),
        (
            "split: {into: [a, b], sizes: [0, 2]}",
            ":4:35",
            "split sizes are integers >= 1, -1 (the rest) or expressions such as 'dim1/4', got 0",
        ),
        (
            "reorder_blocks: {axis: 1, order: [0, 0, 1]}",
            ":4:38",
            "reorder_blocks order must be a permutation of 0..2, got [0, 0, 1]",
        ),
        (
            "reorder_blocks: {axis: 1}",
            ":4:21",
            "reorder_blocks needs `order:` e.g. [0, 2, 1, 3] (input block per output)",
        ),
        ("reorder_blocks: {axis: x, order: [1, 0]}", ":4:28", "axis must be an integer"),
        (
            "add_to_block: {blocks: 4, block: 4, value: 1.0}",
            ":4:38",
            "block 4 is out of range for 4 blocks (0..3)",
        ),
        (
            "add_to_block: {blocks: 4, block: 1}",
            ":4:19",
            "add_to_block needs value: e.g. {axis: 0, blocks: 4, block: 1, value: 1.0}",
        ),
        (
            "add_to_block: {blocks: 4, block: 1, value: one}",
            ":4:48",
            "add_to_block value must be a number, got 'one'",
        ),
        (
            "add_to_block: {blocks: 4, block: 1, value: .inf}",
            ":4:48",
            "add_to_block value must be finite, got inf",
        ),
        (
            "add_to_block: {blocks: 0, block: 0, value: 1.0}",
            ":4:28",
            "add_to_block blocks must be an integer >= 1, got 0",
        ),
        (
            "add_to_block: {blocks: 4, block: 1, value: 1.0, axes: 0}",
            ":4:53",
            "unknown key 'axes' in add_to_block Hint: did you mean 'axis'?",
        ),
    ],
)
def test_bad_block_and_size_maps_are_refused_with_location(
    operation: str, where: str, message: str
) -> None:
    with pytest.raises(MapError) as raised:
        parse_map(f"version: 1\nrules:\n  - name: a\n    {operation}\n", "m.yaml")
    text = str(raised.value)
    assert text.startswith(f"m.yaml{where}: "), text
    assert message in text, text


# -- through plan and convert, read back by TensorFlow ---------------------------------


@pytest.fixture
def fused(tf: Any, tmp_path: Path) -> Path:
    return tf_save(
        tf,
        tmp_path / "src" / "model.ckpt",
        {
            "cell/kernel": np.arange(7 * 8, dtype=np.float32).reshape(7, 8),
            "cell/kernel/Adam": np.arange(7 * 8, dtype=np.float32).reshape(7, 8) + 0.5,
            "cell/bias": np.arange(8, dtype=np.float32),
            "cell/counts": np.arange(4, dtype=np.int64),
            "global_step": np.array(3, np.int64),
        },
    )


def write_map(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text("version: 1\nrules:\n" + textwrap.dedent(rules))
    return path


def test_block_ops_and_computed_split_through_convert(tf: Any, fused: Path, tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        """\
        - match: 'cell/(kernel|bias)'
          reorder_blocks: {axis: -1, order: [1, 0, 3, 2]}
        - name: cell/bias
          add_to_block: {axis: 0, blocks: 4, block: 2, value: 0.25}
        - name: cell/kernel
          split: {axis: 0, sizes: [-1, dim1/4], into: [cell/input, cell/state]}
        """,
    )
    result = convert(fused, path, tmp_path / "out")
    operations = {v.name: [s.to_dict()["operation"] for s in v.steps] for v in result.plan.outputs}
    assert operations["cell/bias"] == [
        "reorder 4 blocks of axis -1 as [1, 0, 3, 2]",
        "add 0.25 to block 2 of 4 along axis 0",
    ]
    reader = tf.train.load_checkpoint(str(result.prefix))
    kernel = np.arange(56, dtype=np.float32).reshape(7, 8)[:, [2, 3, 0, 1, 6, 7, 4, 5]]
    assert same_bits(reader.get_tensor("cell/input"), kernel[:5])
    assert same_bits(reader.get_tensor("cell/state"), kernel[5:])  # dim1/4 = 2 rows
    # The Adam slot has the kernel's shape, so it follows the reorder and the split.
    assert same_bits(reader.get_tensor("cell/state/Adam"), kernel[5:] + 0.5)
    assert same_bits(
        reader.get_tensor("cell/bias"),
        np.array([2, 3, 0, 1, 6.25, 7.25, 4, 5], np.float32),
    )


def test_plan_time_errors_of_block_ops_name_rule_and_variable(fused: Path, tmp_path: Path) -> None:
    cases = {
        "- name: cell/bias\n  reorder_blocks: {order: [0, 1, 2]}\n": (
            "'cell/bias': reorder_blocks: axis 0 of [8] (8) does not cut into 3 equal blocks"
        ),
        "- name: cell/counts\n  add_to_block: {blocks: 2, block: 0, value: 1}\n": (
            "add_to_block adds to floating-point variables, this one is int64"
        ),
        "- name: cell/kernel\n  split: {axis: 0, sizes: [-1, dim1/3], into: [a, b]}\n": (
            "size 'dim1/3' divides 8 by 3 for shape [7, 8]"
        ),
    }
    for rules, message in cases.items():
        with pytest.raises(MapError) as raised:
            plan(fused, write_map(tmp_path, rules))
        text = str(raised.value)
        assert "map.yaml:3:3: rule 1, variable" in text, text
        assert message in text, text


def test_json_schema_knows_the_new_operations_and_every_bundled_map() -> None:
    import jsonschema
    import yaml

    mappings = Path(__file__).parents[1] / "mappings"
    validator = jsonschema.Draft7Validator(json.loads((mappings / "schema.json").read_text()))
    for path in sorted(mappings.glob("*.yaml")):
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path.name
    good = yaml.safe_load("""
        version: 1
        rules:
          - {name: k, split: {axis: 0, sizes: [-1, 'dim1/4'], into: [a, b]}}
          - {name: k, split: {sizes: ['(dim0 - 2) * 3', 2, -1], into: [a, b, c]}}
          - {name: k, reorder_blocks: {axis: -1, order: [0, 2, 1, 3]}}
          - {name: b, add_to_block: {axis: 0, blocks: 4, block: 1, value: 1.0}}
    """)
    assert not list(validator.iter_errors(good))
    for bad in (
        {"name": "a", "split": {"into": ["a", "b"], "sizes": [0, 2]}},
        {"name": "a", "reorder_blocks": {"axis": 0}},
        {"name": "a", "reorder_blocks": {"order": [1, 0], "axes": 0}},
        {"name": "a", "add_to_block": {"blocks": 4, "block": 1}},
        {"name": "a", "add_to_block": {"blocks": 4, "block": -1, "value": 1}},
    ):
        document = {"version": 1, "rules": [bad]}
        assert list(validator.iter_errors(document)), bad
        with pytest.raises(MapError):
            parse_map(json.dumps(document))  # the loader refuses what the schema refuses


def test_an_optional_concat_is_skipped_only_when_none_of_its_sources_exist(
    tf: Any, tmp_path: Path
) -> None:
    map_path = tmp_path / "m.yaml"
    map_path.write_text(
        textwrap.dedent("""
        version: 1
        rules:
          - concat: {sources: [a, b], axis: 0, into: ab}
            optional: true
        """)
    )
    neither = tf_save(tf, tmp_path / "neither", {"c": np.ones(2, np.float32)})
    skipped = plan(neither, map_path, strict=True)
    assert [v.name for v in skipped.outputs] == ["c"]
    assert skipped.warnings == ()
    both = tf_save(
        tf, tmp_path / "both", {"a": np.ones(2, np.float32), "b": np.zeros(1, np.float32)}
    )
    assert [v.name for v in plan(both, map_path).outputs] == ["ab"]
    half = tf_save(tf, tmp_path / "half", {"a": np.ones(2, np.float32)})
    with pytest.raises(MapError, match=r"'b' do\(es\) not exist"):
        plan(half, map_path)


def test_a_split_after_a_concat_keeps_what_was_concatenated(tf: Any, tmp_path: Path) -> None:
    map_path = tmp_path / "m.yaml"
    map_path.write_text(
        textwrap.dedent("""
        version: 1
        rules:
          - concat: {sources: [a, b], axis: 0, into: ab}
          - name: ab
            split: {axis: 0, sizes: [1, -1], into: [first, rest]}
        """)
    )
    a, b = np.float32([1, 2]), np.float32([3, 4, 5])
    prefix = tf_save(tf, tmp_path / "ckpt", {"a": a, "b": b})
    result = convert(prefix, map_path, tmp_path / "out")
    reader = tf.train.load_checkpoint(str(result.prefix))
    np.testing.assert_array_equal(reader.get_tensor("first"), [1])
    np.testing.assert_array_equal(reader.get_tensor("rest"), [2, 3, 4, 5])


def test_an_absurdly_long_size_expression_is_refused_not_a_crash() -> None:
    from ckptmigrate.mapping.exprs import parse_size_expr

    with pytest.raises(ValueError, match="too long"):
        parse_size_expr("(" * 3000 + "1" + ")" * 3000)


def test_an_operation_that_forgets_a_method_cannot_be_built() -> None:
    """Each operation owns its shape, value, wording and slot behaviour: one that misses
    any of them is refused when built, not silently treated as another operation."""
    from dataclasses import dataclass

    from ckptmigrate.mapping.ops import ValueOp

    @dataclass(frozen=True)
    class Halve(ValueOp):  # no for_slot
        def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
            return shape

        def apply(self, value: np.ndarray, name: str) -> np.ndarray:
            return value / 2

        def describe(self) -> str:
            return "halve"

    with pytest.raises(TypeError, match="for_slot"):
        Halve()  # type: ignore[abstract]


def test_every_map_operation_parses_into_an_operation_that_describes_itself() -> None:
    from ckptmigrate.mapping.ops import Operation, ValueOp
    from ckptmigrate.mapping.rules import Rule

    body = textwrap.dedent("""\
        version: 1
        rules:
          - {name: a, rename: b}
          - {name: c, drop: true}
          - {name: d, slice: '[:2]'}
          - {name: e, pad: {shape: [4]}}
          - {name: f, reshape: [2, 2]}
          - {name: g, transpose: [1, 0]}
          - {name: h, cast: float64}
          - {name: i, split: {axis: 0, into: [i1, i2]}}
          - {name: j, resize: {shape: [8]}}
          - {name: k, reorder_blocks: {axis: 0, order: [1, 0]}}
          - {name: l, add_to_block: {axis: 0, blocks: 2, block: 1, value: 1.0}}
    """)
    rules = parse_map(body).rules
    ops = [r.op for r in rules if isinstance(r, Rule)]
    assert len(ops) == len(rules) == 11
    assert all(isinstance(op, Operation) and op.describe() for op in ops)
    value_ops = [op for op in ops if isinstance(op, ValueOp)]
    # A ValueOp either follows the variable into its slots (maybe with another fill) or not.
    assert all(op.for_slot() is None or isinstance(op.for_slot(), ValueOp) for op in value_ops)
