"""YAML loaded with line/column kept for every value, so a bad map is refused with the
exact place to fix (``map.yaml:12:5``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CkptMigrateError
from ..yaml_text import YamlTextError, compose, construct, read_text


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
    """``text`` as a tree of located values.

    Raises:
        MapError: invalid YAML, an empty map, a value its tag cannot build, duplicate or
            non-text keys, or a document over the size and depth bounds.
    """
    import yaml

    try:
        root = compose(text)
    except YamlTextError as e:
        raise MapError(Where(path, e.line, e.column), e.message) from None
    if root is None:
        raise MapError(Where(path, 1, 1), "the map is empty")
    constructor = yaml.SafeLoader(text)
    try:
        return _convert(root, path, constructor)
    except YamlTextError as e:
        raise MapError(Where(path, e.line, e.column), e.message) from None
    finally:
        constructor.dispose()


def _convert(node: Any, path: str, constructor: Any) -> Node:
    import yaml

    where = Where(path, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        values: dict[str, Node] = {}
        keys: dict[str, Where] = {}
        for key_node, value_node in node.value:
            key = construct(key_node, constructor)
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
    return Node(construct(node, constructor), where)


def read_map_text(path: Path) -> str:
    """The map file's text.

    Raises:
        MapError: it cannot be read, is too large, or is not UTF-8.
    """
    try:
        return read_text(path)
    except YamlTextError as e:
        raise MapError(Where(str(path), e.line, e.column), e.message) from None
    except OSError as e:
        raise MapError(str(path), f"cannot read the map: {e.strerror or e}") from e
