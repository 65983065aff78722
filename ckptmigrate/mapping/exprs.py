"""The small expression languages inside a map: numpy indices written as text (``[:, :3]``)
and size expressions over a variable's shape (``dim1/4``). Hand-written parsers, never eval."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["SizeExpr", "SplitSize", "parse_index", "parse_size_expr", "size_value"]


class ExprError(ValueError):
    """An expression that does not apply to this variable's shape."""


@dataclass(frozen=True, slots=True)
class SizeExpr:
    """A split size computed from the variable's shape at plan time: ``dim1/4``,
    ``dim0 - dim1``. ``tree`` is ("int", n), ("dim", axis) or (operator, left, right);
    ``/`` divides exactly (a remainder is an error, not a silent floor)."""

    text: str
    tree: tuple[Any, ...]


SplitSize = int | SizeExpr  # -1 is "the rest of the axis"

_INDEX_PART = re.compile(r"^\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?)?$")


def parse_index(text: str) -> tuple[Any, ...]:
    """A numpy basic index written as text: ``[:, :3]``, ``[..., 0:2]``, ``[1]``."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise ValueError("write the index in brackets, e.g. '[:, :3]'")
    parts = [p.strip() for p in body[1:-1].split(",")] if body[1:-1].strip() else []
    out: list[Any] = []
    for part in parts:
        if part == "...":
            if Ellipsis in out:
                raise ValueError("only one ... is allowed")
            out.append(Ellipsis)
            continue
        match = _INDEX_PART.match(part)
        if not part or match is None:
            raise ValueError(f"{part!r} is not an index, a start:stop:step slice or ...")
        start, stop, step = (None if g is None else int(g) for g in match.groups())
        if ":" not in part:
            out.append(start)
        else:
            if step == 0:
                raise ValueError("a slice step cannot be 0")
            out.append(slice(start, stop, step))
    return tuple(out)


_SIZE_TOKEN = re.compile(r"\s*(?:(\d+)|dim(\d+)|([-+*/()]))")

_MAX_SIZE_TOKENS = 200


def parse_size_expr(text: str) -> tuple[Any, ...]:
    """Parse ``dim1/4``, ``dim0 - dim1``, ``(dim1 - 2) * 3``: integers, ``dimN`` (axis N of
    the variable's shape), + - * / and parentheses. A hand-written parser, never eval."""
    tokens: list[tuple[str, Any]] = []
    pos, text = 0, text.rstrip()
    while pos < len(text):
        found = _SIZE_TOKEN.match(text, pos)
        if found is None:
            rest = text[pos:].strip()
            raise ValueError(f"unexpected {rest[:10]!r}; use integers, dimN, + - * / ( )")
        number, dim, symbol = found.groups()
        if number is not None:
            tokens.append(("int", int(number)))
        elif dim is not None:
            tokens.append(("dim", int(dim)))
        else:
            tokens.append(("op", symbol))
        pos = found.end()
    if not tokens:
        raise ValueError("the expression is empty")
    if len(tokens) > _MAX_SIZE_TOKENS:  # also bounds the parser's recursion depth
        raise ValueError(f"the expression is too long (over {_MAX_SIZE_TOKENS} tokens)")
    tree, used = _sum(tokens, 0)
    if used != len(tokens):
        raise ValueError(f"unexpected {_token_text(tokens[used])!r} after a complete expression")
    return tree


def _token_text(token: tuple[str, Any]) -> str:
    kind, value = token
    return f"dim{value}" if kind == "dim" else str(value)


def _sum(tokens: list[tuple[str, Any]], at: int) -> tuple[tuple[Any, ...], int]:
    tree, at = _product(tokens, at)
    while at < len(tokens) and tokens[at] in (("op", "+"), ("op", "-")):
        right, after = _product(tokens, at + 1)
        tree, at = (tokens[at][1], tree, right), after
    return tree, at


def _product(tokens: list[tuple[str, Any]], at: int) -> tuple[tuple[Any, ...], int]:
    tree, at = _atom(tokens, at)
    while at < len(tokens) and tokens[at] in (("op", "*"), ("op", "/")):
        right, after = _atom(tokens, at + 1)
        tree, at = (tokens[at][1], tree, right), after
    return tree, at


def _atom(tokens: list[tuple[str, Any]], at: int) -> tuple[tuple[Any, ...], int]:
    if at >= len(tokens):
        raise ValueError("the expression ends early")
    kind, value = tokens[at]
    if kind in ("int", "dim"):
        return (kind, value), at + 1
    if value == "(":
        tree, after = _sum(tokens, at + 1)
        if after >= len(tokens) or tokens[after] != ("op", ")"):
            raise ValueError("a ( is not closed")
        return tree, after + 1
    raise ValueError(f"unexpected {value!r}")


def size_value(expr: SizeExpr, shape: tuple[int, ...]) -> int:
    """Evaluate a split size expression against a shape (ExprError if it does not apply)."""
    return _evaluate(expr.text, expr.tree, shape)


def _evaluate(text: str, tree: tuple[Any, ...], shape: tuple[int, ...]) -> int:
    kind = tree[0]
    if kind == "int":
        return int(tree[1])
    if kind == "dim":
        axis = int(tree[1])
        if axis >= len(shape):
            raise ExprError(
                f"split size {text!r} reads dim{axis}, the variable {list(shape)} has "
                f"rank {len(shape)}"
            )
        return shape[axis]
    left, right = _evaluate(text, tree[1], shape), _evaluate(text, tree[2], shape)
    if kind == "+":
        return left + right
    if kind == "-":
        return left - right
    if kind == "*":
        return left * right
    if right == 0 or left % right:
        raise ExprError(
            f"split size {text!r} divides {left} by {right} for shape {list(shape)}, "
            "which is not a whole number"
        )
    return left // right
