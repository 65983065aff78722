"""YAML (and JSON) written by people, read defensively: maps and spec files are small, so a
file that is not UTF-8, nests too deeply, expands through aliases into millions of nodes, or
holds a value its tag cannot build is refused with the place it happens, never a traceback
or minutes of work (a 664-byte file of nested aliases is a million nodes)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "YamlTextError",
    "compose",
    "construct",
    "plain",
    "read_text",
]

MAX_NODES = 100_000  # aliases count every time they are used
MAX_DEPTH = 64
MAX_BYTES = 4 << 20


class YamlTextError(ValueError):
    """Where (1-based line and column, when known) and what is wrong."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def read_text(
    path: Path, max_bytes: int = MAX_BYTES, too_large: str = "maps and specs are small"
) -> str:
    """The text of the regular file ``path``, at most ``max_bytes`` of it.

    Raises:
        YamlTextError: not a regular file, larger than ``max_bytes`` (``too_large`` says
            why that is enough), or not UTF-8 (the offset of the first bad byte).
        OSError: the file cannot be read.
    """
    # Without O_NONBLOCK, opening a FIFO waits for a writer forever; /dev/zero never ends.
    # Both are refused by what fstat says, before a byte is read.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise YamlTextError("not a regular file (a directory, pipe or device)")
        # The size first, so a large file costs nothing; the read is bounded too (a file
        # under /proc says 0 bytes).
        data = b"" if status.st_size > max_bytes else f.read(max_bytes + 1)
    if status.st_size > max_bytes or len(data) > max_bytes:
        raise YamlTextError(f"the file is over {max_bytes >> 20} MiB; {too_large}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise YamlTextError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", line, column
        ) from None


def compose(text: str) -> Any:
    """The YAML node tree of ``text`` (None for an empty document), bounded in size and
    depth with aliases counted at every use.

    Raises:
        YamlTextError: invalid YAML, or over the bounds.
    """
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlTextError(f"not valid YAML: {e.problem}", line, column) from None
    except yaml.YAMLError as e:
        raise YamlTextError(f"not valid YAML: {e}") from None
    except RecursionError:
        raise YamlTextError(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    if root is not None:
        _check_bounds(root)
    return root


def _check_bounds(root: Any) -> None:
    import yaml

    count = 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:  # iterative: a deep document must not exhaust the Python stack here
        node, depth = stack.pop()
        count += 1
        where = (node.start_mark.line + 1, node.start_mark.column + 1)
        if count > MAX_NODES:
            raise YamlTextError(
                f"the document expands to over {MAX_NODES:,} values (aliases count at every use)",
                *where,
            )
        if depth > MAX_DEPTH:
            raise YamlTextError(f"nested too deeply (more than {MAX_DEPTH} levels)", *where)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)


def construct(node: Any, constructor: Any) -> Any:
    """The Python value of a scalar node (its tag's constructor, safe types only).

    Raises:
        YamlTextError: the tag cannot build this value (``!!int abc``, a bad timestamp).
    """
    import yaml

    try:
        value = constructor.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    except (AttributeError, IndexError):  # PyYAML: a timestamp its pattern fails, an empty int
        problem = "not a value of this type"
    else:
        return value
    raise YamlTextError(
        f"{node.tag.rsplit(':', 1)[-1]} value {node.value!r}: {problem}",
        node.start_mark.line + 1,
        node.start_mark.column + 1,
    ) from None


def plain(node: Any, constructor: Any) -> Any:
    """The node tree as plain Python values (dicts, lists, scalars)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = plain(key_node, constructor)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise YamlTextError(
                    f"a mapping key must be a plain value, got {type(key).__name__}",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            out[key] = plain(value_node, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [plain(item, constructor) for item in node.value]
    return construct(node, constructor)
