"""YAML loaded with line/column kept for every value, so a bad map is refused with the
exact place to fix (``map.yaml:12:5``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CkptMigrateError


@dataclass(frozen=True, slots=True)
class Where:
    path: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class MapError(CkptMigrateError):
    """A map that cannot be applied; refused before anything is written."""

    def __init__(self, where: Where | str, message: str, hint: str | None = None) -> None:
        self.where = where
        super().__init__(message, path=str(where), hint=hint)


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML value (scalars as Python values, lists of Node, dicts of str -> Node)."""

    value: Any
    where: Where
    key_where: dict[str, Where] | None = None  # for mappings: where each key is

    def expect_mapping(self, what: str) -> dict[str, Node]:
        if not isinstance(self.value, dict):
            raise MapError(self.where, f"{what} must be a mapping, got {_kind(self.value)}")
        return self.value

    def expect_list(self, what: str) -> list[Node]:
        if not isinstance(self.value, list):
            raise MapError(self.where, f"{what} must be a list, got {_kind(self.value)}")
        return self.value

    def plain(self) -> Any:
        """The value with all location wrappers removed."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def load_located(text: str, path: str) -> Node:
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = Where(path, mark.line + 1, mark.column + 1) if mark else Where(path, 1, 1)
        raise MapError(where, f"not valid YAML: {e.problem}") from None
    except yaml.YAMLError as e:
        raise MapError(Where(path, 1, 1), f"not valid YAML: {e}") from None
    if root is None:
        raise MapError(Where(path, 1, 1), "the map is empty")
    constructor = yaml.SafeLoader(text)
    try:
        return _convert(root, path, constructor)
    finally:
        constructor.dispose()


def _convert(node: Any, path: str, constructor: Any) -> Node:
    import yaml

    where = Where(path, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        values: dict[str, Node] = {}
        keys: dict[str, Where] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node)
            key_where = Where(path, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key, str):
                raise MapError(key_where, f"keys must be text, got {key!r}")
            if key in values:
                raise MapError(key_where, f"{key!r} appears twice in the same mapping")
            values[key] = _convert(value_node, path, constructor)
            keys[key] = key_where
        return Node(values, where, keys)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(item, path, constructor) for item in node.value], where)
    return Node(constructor.construct_object(node), where)


def read_map_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise MapError(str(path), f"cannot read the map: {e.strerror or e}") from e
