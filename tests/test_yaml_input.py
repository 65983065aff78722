"""Maps and spec files written to hurt: alias bombs, deep nesting, tags that cannot build
their value, bytes that are not UTF-8. Each is a one-paragraph error with the place, fast;
never a traceback (issue 12, medium 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptmigrate.errors import CkptMigrateError
from ckptmigrate.mapping.located import MapError
from ckptmigrate.mapping.schema import load_map
from ckptmigrate.targets.spec import load_spec

RULE = "rules:\n  - {name: a, drop: true}\n"


def alias_bomb(levels: int = 9) -> str:
    """Each level lists the previous one ten times: 10**levels values from a few hundred
    bytes once the aliases are expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb": (f"version: 1\n{RULE}description: x\nbomb:\n  {alias_bomb()}", "expands to over"),
    "deep nesting": (
        "version: 1\n" + RULE + "x: " + "[" * 5000 + "]" * 5000 + "\n",
        "nested too deeply",
    ),
    "bad int tag": ("version: !!int abc\n" + RULE, "int value 'abc'"),
    "bad timestamp": ("version: 1\n" + RULE + "when: !!timestamp 2020-13-45\n", "timestamp value"),
    "python tag": (
        "version: !!python/object:os.system ls\n" + RULE,
        "could not determine a constructor",
    ),
}


@pytest.mark.parametrize(("text", "expected"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_maps_are_clean_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MapError, match=expected) as error:
        load_map(path)  # the alias bomb took 48 s: now its expansion is counted and refused
    assert str(error.value).startswith(f"{path}:")  # file:line:column


def test_a_map_that_is_not_utf8_says_where(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_bytes(b"version: 1\nrules:\n  - {name: caf\xe9, drop: true}\n")
    with pytest.raises(MapError, match=r"not UTF-8 text \(byte 0xe9") as error:
        load_map(path)
    assert f"{path}:3:" in str(error.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("variables:\n  a: {shape: [2]}\nbomb:\n  " + alias_bomb(), "expands to over"),
        ("variables: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("variables:\n  a: {shape: !!int x}\n", "int value 'x'"),
    ],
    ids=["alias bomb", "deep nesting", "bad tag"],
)
def test_hostile_spec_files_are_clean_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CkptMigrateError, match=expected):
        load_spec(path)
    path.write_bytes(b"variables:\n  \xff: {shape: [2]}\n")
    with pytest.raises(CkptMigrateError, match="not UTF-8"):
        load_spec(path)
