"""The small expression languages inside a map: numpy indices written as text (``[:, :3]``)
and size expressions over a variable's shape (``dim1/4``). Hand-written parsers, never eval."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Size",
    "SizeExpr",
    "SplitSize",
    "bind_index",
    "bind_params",
    "bind_size",
    "parse_index",
    "parse_size_expr",
    "resolve",
    "resolve_index",
    "size_value",
    "uses_dims",
]


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

_INTEGER = re.compile(r"-?\d+")


def _bound(text: str) -> int | SizeExpr | None:
    text = text.strip()
    if not text:
        return None
    if _INTEGER.fullmatch(text):
        return int(text)
    return SizeExpr(text, parse_size_expr(text))


def parse_index(text: str) -> tuple[Any, ...]:
    """A numpy basic index written as text: ``[:, :3]``, ``[..., 0:2]``, ``[1]``; a bound
    may be a size expression (``[:, :dim1/2]``, ``[:hidden]``), resolved against the
    variable's shape when the map is planned."""
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
        pieces = part.split(":")
        if not part or len(pieces) > 3:
            raise ValueError(f"{part!r} is not an index, a start:stop:step slice or ...")
        try:
            bounds = [_bound(piece) for piece in pieces]
        except ValueError as e:
            raise ValueError(f"{part!r}: {e}") from None
        if len(pieces) == 1:
            if bounds[0] is None:
                raise ValueError(f"{part!r} is not an index, a start:stop:step slice or ...")
            out.append(bounds[0])
        else:
            start, stop, step = (*bounds, None)[:3]
            if step == 0:
                raise ValueError("a slice step cannot be 0")
            out.append(slice(start, stop, step))
    return tuple(out)


def resolve_index(index: tuple[Any, ...], shape: tuple[int, ...]) -> tuple[Any, ...]:
    """``index`` with its size expressions evaluated against ``shape``."""

    def one(bound: Any) -> Any:
        return size_value(bound, shape) if isinstance(bound, SizeExpr) else bound

    return tuple(
        slice(one(p.start), one(p.stop), one(p.step)) if isinstance(p, slice) else one(p)
        for p in index
    )


def bind_index(index: tuple[Any, ...], params: Mapping[str, int]) -> tuple[Any, ...]:
    """``index`` with the map's parameters bound in its size expressions."""

    def one(bound: Any) -> Any:
        if isinstance(bound, SizeExpr):
            return bind_size(bound, params)
        return bound

    return tuple(
        slice(one(p.start), one(p.stop), one(p.step)) if isinstance(p, slice) else one(p)
        for p in index
    )


def bind_size(size: Size, params: Mapping[str, int]) -> Size:
    """A size with the map's parameters bound: a plain integer when nothing else is left."""
    if not isinstance(size, SizeExpr):
        return size
    tree = bind_params(size.tree, params)
    if not uses_dims(tree):
        return _evaluate(size.text, tree, ())
    return SizeExpr(size.text, tree)


_SIZE_TOKEN = re.compile(r"\s*(?:(\d+)|dim(\d+)\b|([A-Za-z_]\w*)|([-+*/()]))")

_MAX_SIZE_TOKENS = 200


def parse_size_expr(text: str) -> tuple[Any, ...]:
    """Parse ``dim1/4``, ``dim0 - dim1``, ``(dim1 - 2) * 3``, ``dim1/heads``: integers,
    names of the map's parameters (bound when the map is loaded), ``dimN`` (axis N of
    the variable's shape), + - * / and parentheses. A hand-written parser, never eval."""
    tokens: list[tuple[str, Any]] = []
    pos, text = 0, text.rstrip()
    while pos < len(text):
        found = _SIZE_TOKEN.match(text, pos)
        if found is None:
            rest = text[pos:].strip()
            raise ValueError(
                f"unexpected {rest[:10]!r}; use integers, dimN, parameters, + - * / ( )"
            )
        number, dim, name, symbol = found.groups()
        if number is not None:
            tokens.append(("int", int(number)))
        elif dim is not None:
            tokens.append(("dim", int(dim)))
        elif name is not None:
            tokens.append(("param", name))
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
    if kind in ("int", "dim", "param"):
        return (kind, value), at + 1
    if value == "(":
        tree, after = _sum(tokens, at + 1)
        if after >= len(tokens) or tokens[after] != ("op", ")"):
            raise ValueError("a ( is not closed")
        return tree, after + 1
    raise ValueError(f"unexpected {value!r}")


def bind_params(tree: tuple[Any, ...], params: Mapping[str, int]) -> tuple[Any, ...]:
    """``tree`` with every parameter replaced by its value.

    Raises:
        ValueError: a name that is not one of ``params``.
    """
    kind = tree[0]
    if kind == "param":
        if tree[1] not in params:
            known = ", ".join(sorted(params)) or "none"
            raise ValueError(f"unknown parameter {tree[1]!r} (the map's parameters: {known})")
        return ("int", params[tree[1]])
    if kind in ("int", "dim"):
        return tree
    return (kind, bind_params(tree[1], params), bind_params(tree[2], params))


def uses_dims(tree: tuple[Any, ...]) -> bool:
    """Whether the expression reads the variable's shape (else it is a constant)."""
    if tree[0] == "dim":
        return True
    return tree[0] not in ("int", "param") and (uses_dims(tree[1]) or uses_dims(tree[2]))


Size = int | SizeExpr
"""A size in a map: a number, or an expression over the variable's shape."""


def resolve(sizes: tuple[Size, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """``sizes`` with every expression evaluated against ``shape``."""
    return tuple(size_value(s, shape) if isinstance(s, SizeExpr) else s for s in sizes)


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
                f"size {text!r} reads dim{axis}, the variable {list(shape)} has rank {len(shape)}"
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
            f"size {text!r} divides {left} by {right} for shape {list(shape)}, "
            "which is not a whole number"
        )
    return left // right
