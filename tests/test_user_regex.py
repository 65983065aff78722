"""User-written regexes (map selectors, inspect --filter, check --ignore) run in linear
time against hostile names, match exactly what Python's re matches, and a bad one is a
clean error (issue 12, medium 11)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptmigrate.compare import CheckOptions, compare
from ckptmigrate.errors import CkptMigrateError
from ckptmigrate.inventory import Inventory, Scheme, VariableSpec
from ckptmigrate.mapping.schema import parse_map
from ckptmigrate.names import Role
from ckptmigrate.regex import compile_user_regex

CATASTROPHIC = [
    (r"(.*)/(.*)/(.*)/kernel", "a/" * 3000 + "x"),  # 6 KB key, cubic for a backtracker
    (r"(a+)+b", "a" * 50_000),  # exponential for a backtracker
    (r"(\w+\s?)*$x", "word " * 5000),
]


@pytest.mark.parametrize(("pattern", "text"), CATASTROPHIC)
def test_hostile_names_cannot_make_a_selector_slow(pattern: str, text: str) -> None:
    # RE2 never backtracks: these return at once (Python's re takes minutes or more).
    regex = compile_user_regex(pattern)
    assert regex.engine == "re2"
    assert regex.fullmatch(text) is None
    assert regex.search(text + "!") is None or pattern == r"(a+)+b"


def test_a_map_rule_runs_on_re2_and_renames_as_before() -> None:
    rules = parse_map(
        "version: 1\nrules:\n  - match: '(?P<scope>[^/]+)/layer_(\\d+)/(.*)'\n"
        "    rename: '{scope}/block_{2+1}/{3}'\n"
    ).rules
    selector = rules[0].selector  # type: ignore[union-attr]
    assert selector.pattern.engine == "re2"
    match = selector.match("encoder/layer_4/kernel")
    assert match is not None
    assert rules[0].op.template.render(match) == "encoder/block_5/kernel"  # type: ignore[union-attr]


def test_patterns_re2_cannot_run_fall_back_to_python_re_and_say_so() -> None:
    lookahead = compile_user_regex(r"(?!optimizer/).*kernel")
    assert lookahead.engine.startswith("python re")
    assert lookahead.fullmatch("dense/kernel") is not None
    assert lookahead.fullmatch("optimizer/kernel") is None
    backref = compile_user_regex(r"(\w+)/\1")
    assert backref.fullmatch("a/a") is not None
    assert backref.fullmatch("a/b") is None


def test_unicode_classes_match_as_in_python() -> None:
    # RE2's \w is ASCII; a non-ASCII name is matched by Python's re, as users expect.
    word = compile_user_regex(r"(\w+)/kernel")
    match = word.fullmatch("модель/kernel")
    assert match is not None
    assert match.group(1) == "модель"
    assert compile_user_regex(r"\d+").fullmatch("١٢") is not None  # Arabic-Indic digits


NAMES = st.text(alphabet="ab/_.:0189xyzé", max_size=12)
PATTERNS = st.sampled_from(
    [r"a.*", r"(a|b)+/.*", r"[^/]+/(\d+)", r"\w+", r".*/_?x", r"a{1,3}b?", r"(?i)AB.*", r"\.\d"]
)


@settings(max_examples=300, deadline=None)
@given(pattern=PATTERNS, name=NAMES)
def test_same_matches_as_python_re(pattern: str, name: str) -> None:
    ours, theirs = compile_user_regex(pattern), re.compile(pattern)
    for mine, python in (
        (ours.fullmatch(name), theirs.fullmatch(name)),
        (ours.search(name), theirs.search(name)),
    ):
        assert (mine is None) == (python is None)
        if mine is not None and python is not None:
            assert mine.group(0) == python.group(0)
            assert mine.groups() == python.groups()


def test_a_bad_ignore_pattern_is_a_clean_error() -> None:
    empty = Inventory(
        "checkpoint", "x", Scheme.TF1, {"a": VariableSpec("a", (1,), "float32", Role.MODEL)}
    )
    with pytest.raises(CkptMigrateError, match="not a valid regular expression"):
        compare(empty, empty, CheckOptions(ignore=("(",)))


def test_a_bad_filter_is_a_clean_error(tmp_path: Path) -> None:
    from ckptmigrate.inspection import inspect_checkpoint

    with pytest.raises(CkptMigrateError, match="not a valid regular expression"):
        inspect_checkpoint(tmp_path / "nothing", filter="(")


def test_pythons_future_warnings_on_a_users_pattern_stay_off_stderr() -> None:
    """'[[a]' makes Python warn "possible nested set" on stderr; a map's pattern is the
    user's (the fuzz soak's maps printed it)."""
    import warnings

    from ckptmigrate.regex import compile_user_regex

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = compile_user_regex("[[a]")
    assert compiled.search("[") is not None
