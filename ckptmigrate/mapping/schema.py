"""The map language: YAML in, validated frozen rules out. Every problem is found here, at
load time, with file:line:column, before any checkpoint is opened.

A map is ``version: 1``, an optional ``description`` and an ordered list of ``rules``. A rule
selects variables by exact ``name`` or by regex ``match`` (full match) and applies one
operation; ``keep`` (an allow-list) and ``init`` (a new variable) stand alone.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType

from .. import dtypes
from ..names import Role
from ..regex import UserRegex, compile_user_regex
from ..yaml_text import YamlTextError, read_text
from .exprs import Size, SizeExpr, SplitSize, bind_index, bind_size, parse_index, parse_size_expr
from .fills import FILL_KINDS, Fill, fill_value_problem
from .located import MapError, Node, Where, load_located, read_map_text
from .ops import (
    AddToBlock,
    Cast,
    Drop,
    Operation,
    Pad,
    RemapRows,
    Rename,
    ReorderBlocks,
    Replace,
    Reshape,
    Resize,
    Slice,
    Split,
    Transpose,
)
from .rules import (
    AnyRule,
    ConcatRule,
    FromRule,
    InitRule,
    KeepRule,
    Map,
    Rule,
    Selector,
)
from .template import TemplateError, parse_template

MAP_VERSION = 1
# Vocabularies of millions of tokens are tens of MiB; the bound keeps a wrong path (a disk
# image, a checkpoint shard) from being read whole into memory.
VOCAB_MAX_BYTES = 256 << 20
# Inside the package (a link to the repository's mappings/), so wheels ship the maps too.
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "mappings"

OPERATIONS = (
    "rename",
    "replace",
    "drop",
    "slice",
    "pad",
    "reshape",
    "transpose",
    "cast",
    "split",
    "resize",
    "remap_rows",
    "reorder_blocks",
    "add_to_block",
)
STANDALONE = ("keep", "init", "concat", "from")
RULE_KEYS = ("name", "match", "role", "optional", "note", *STANDALONE, *OPERATIONS)
RESIZE_METHODS = ("linear", "nearest")
TOP_KEYS = ("version", "description", "params", "rules")
_PARAM_NAME = re.compile(r"[A-Za-z_]\w*")
# The map's parameters while it is parsed: size expressions are bound to them at load time.
_PARAMS: ContextVar[Mapping[str, int]] = ContextVar("map_params", default=MappingProxyType({}))


# -- helpers ---------------------------------------------------------------------------


def _unknown_key(where: Where, key: str, allowed: tuple[str, ...], what: str) -> MapError:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"{what} keys are: {', '.join(allowed)}."
    return MapError(where, f"unknown key {key!r} in {what}", hint=hint)


def _check_keys(node: Node, allowed: tuple[str, ...], what: str) -> dict[str, Node]:
    mapping = node.expect_mapping(what)
    for key in mapping:
        if key not in allowed:
            where = (node.key_where or {}).get(key, node.where)
            raise _unknown_key(where, key, allowed, what)
    return mapping


def _sizes(node: Node, what: str, minimum: int = 0) -> tuple[Size, ...]:
    """Integers >= ``minimum``, or expressions over the variable's shape and the map's
    parameters (``dim1/heads``, ``hidden * 4``), the parameters bound now."""
    sizes: list[Size] = []
    for item in node.expect_list(what):
        value = item.value
        if isinstance(value, str):
            try:
                bound = bind_size(SizeExpr(value.strip(), parse_size_expr(value)), _PARAMS.get())
            except ValueError as e:
                raise MapError(item.where, f"bad {what} {value!r}: {e}") from None
            if isinstance(bound, int) and bound < minimum:
                raise MapError(item.where, f"{what} {value!r} is {bound}, below {minimum}")
            sizes.append(bound)
        elif isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            sizes.append(value)
        else:
            raise MapError(
                item.where,
                f"{what}s are integers >= {minimum} or expressions such as 'dim1/heads', "
                f"got {value!r}",
            )
    return tuple(sizes)


def _constant_sizes(node: Node, what: str) -> tuple[int, ...]:
    """Sizes known when the map is loaded: numbers and the map's parameters (there is no
    variable yet whose shape an expression could read)."""
    sizes = _sizes(node, what)
    for item, size in zip(node.expect_list(what), sizes, strict=True):
        if not isinstance(size, int):
            raise MapError(item.where, f"{what} {size.text!r} reads a dimension; there is none")
    return tuple(s for s in sizes if isinstance(s, int))


def _params(node: Node | None, overrides: Mapping[str, int], path: str) -> dict[str, int]:
    """The map's declared parameters, with the caller's values for some of them."""
    declared: dict[str, int] = {}
    keys: dict[str, Where] = {}
    if node is not None:
        body = node.expect_mapping("params")
        keys = node.key_where or {}
        for name, item in body.items():
            if not _PARAM_NAME.fullmatch(name) or re.fullmatch(r"dim\d+", name):
                raise MapError(keys.get(name, node.where), f"{name!r} is not a parameter name")
            if not isinstance(item.value, int) or isinstance(item.value, bool):
                raise MapError(item.where, f"parameter {name} must be an integer")
            declared[name] = item.value
    for name, value in overrides.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise MapError(
                path,
                f"the map has no parameter {name!r} to set",
                hint=f"its parameters: {known}.",
            )
        declared[name] = int(value)
    return declared


def parse_settings(settings: list[str]) -> dict[str, int]:
    """``["heads=12", "hidden=768"]`` as parameter values.

    Raises:
        MapError: a setting that is not NAME=INTEGER.
    """
    values: dict[str, int] = {}
    for setting in settings:
        name, equals, value = setting.partition("=")
        name = name.strip()
        if (
            not equals
            or not _PARAM_NAME.fullmatch(name)
            or not re.fullmatch(r"-?\d+", value.strip())
        ):
            raise MapError("[[params]]", f"{setting!r} is not NAME=INTEGER", hint="e.g. heads=12.")
        values[name] = int(value)
    return values


def _int_list(node: Node, what: str, minimum: int = 0) -> tuple[int, ...]:
    items = node.expect_list(what)
    out = []
    for item in items:
        if not isinstance(item.value, int) or isinstance(item.value, bool) or item.value < minimum:
            raise MapError(
                item.where, f"{what} must hold integers >= {minimum}, got {item.value!r}"
            )
        out.append(item.value)
    return tuple(out)


def _text(node: Node, what: str) -> str:
    if not isinstance(node.value, str) or not node.value:
        raise MapError(node.where, f"{what} must be non-empty text, got {node.value!r}")
    return node.value


def _dtype(node: Node) -> str:
    name = _text(node, "dtype")
    if name not in dtypes.BY_NAME or dtypes.BY_NAME[name].itemsize is None:
        fixed = [n for n, d in dtypes.BY_NAME.items() if d.itemsize is not None]
        close = difflib.get_close_matches(name, fixed, n=1, cutoff=0.6)
        raise MapError(
            node.where,
            f"{name!r} is not a dtype that can be cast to or created",
            hint=f"did you mean {close[0]!r}?"
            if close
            else "e.g. float32, float16, bfloat16, int64.",
        )
    return dtypes.BY_NAME[name].name


def _regex(node: Node, what: str) -> UserRegex:
    text = _text(node, what)
    try:
        return compile_user_regex(text)
    except re.error as e:
        raise MapError(
            node.where,
            f"{what} '{text}' is not a valid regular expression: {e}",
            hint="quote the pattern in YAML and escape literal dots as \\.",
        ) from None


def _number(node: Node, what: str) -> float:
    if isinstance(node.value, bool) or not isinstance(node.value, int | float):
        raise MapError(node.where, f"{what} must be a number, got {node.value!r}")
    return float(node.value)


def _fill(node: Node | None, extra: dict[str, Node], allow_mean: bool) -> Fill:
    """A fill named by ``fill:`` with its parameters as sibling keys."""
    if node is None:
        return Fill()
    kind = _text(node, "fill")
    kinds = FILL_KINDS if allow_mean else tuple(k for k in FILL_KINDS if k != "mean")
    if kind not in kinds:
        close = difflib.get_close_matches(kind, kinds, n=1, cutoff=0.6)
        raise MapError(
            node.where,
            f"unknown fill {kind!r}",
            hint=f"did you mean {close[0]!r}?" if close else f"fills are: {', '.join(kinds)}.",
        )
    value: float = 0.0
    if "value" in extra:
        value = _fill_value(extra["value"])
    elif kind == "constant":
        raise MapError(node.where, "fill: constant needs a value: key")
    mean = _finite(extra["mean"], "mean") if "mean" in extra else 0.0
    stddev = _finite(extra["stddev"], "stddev") if "stddev" in extra else 0.05
    if stddev < 0:
        raise MapError(extra["stddev"].where, "stddev must not be negative")
    seed = None
    if "seed" in extra:
        seed = extra["seed"].value
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= _MAX_SEED:
            raise MapError(
                extra["seed"].where,
                f"seed must be a whole number from 0 to 2**64 - 1, got {seed!r}",
                hint="any seed in that range reproduces the same values run after run.",
            )
    return Fill(kind, value, mean, stddev, seed)


# numpy's generators take a non-negative seed (its words are 32-bit); 64 bits is plenty.
_MAX_SEED = 2**64 - 1


def _fill_value(node: Node) -> float:
    """A constant fill's value: integers stay exact (int64's extremes are not floats);
    whether it fits the variable's dtype is checked where the dtype is known."""
    value = node.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _number(node, "value")


def _finite(node: Node, what: str) -> float:
    value = _number(node, what)
    if not math.isfinite(value):
        raise MapError(
            node.where,
            f"{what} must be a finite number, got {value}",
            hint=f"a random fill with an infinite or nan {what} writes no usable value.",
        )
    return value


def _fill_fits(fill: Fill, dtype: str, node: Node) -> None:
    problem = fill_value_problem(fill, dtype)
    if problem is not None:
        raise MapError(node.where, problem, hint=_FILL_FITS_HINT)


_FILL_FITS_HINT = "give a value the dtype holds (numpy's cast would wrap or saturate it)."


_FILL_PARAMS = ("fill", "value", "mean", "stddev", "seed")


def _split(node: Node, selector: Selector) -> Split:
    body = _check_keys(node, ("axis", "into", "sizes"), "split")
    if "into" not in body:
        raise MapError(node.where, "split needs `into:` the names of the parts")
    texts = tuple(_text(item, "split into") for item in body["into"].expect_list("split into"))
    if len(texts) < 2:
        raise MapError(body["into"].where, "split needs at least two parts")
    try:
        templates = tuple(parse_template(t, selector.pattern) for t in texts)
    except TemplateError as e:
        raise MapError(body["into"].where, f"bad name template in split: {e}") from None
    axis = _axis_key(body)
    sizes = None
    if "sizes" in body:
        sizes = _split_sizes(body["sizes"])
        if len(sizes) != len(texts):
            raise MapError(body["sizes"].where, f"{len(sizes)} sizes for {len(texts)} parts")
    return Split(axis, templates, texts, sizes)


def _axis_key(body: dict[str, Node]) -> int:
    axis = body["axis"].value if "axis" in body else 0
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise MapError(body["axis"].where, "axis must be an integer")
    return axis


def _split_sizes(node: Node) -> tuple[SplitSize, ...]:
    """Integers >= 1, at most one -1 (the rest), or expressions over the shape."""
    sizes: list[SplitSize] = []
    for item in node.expect_list("split sizes"):
        value = item.value
        if isinstance(value, str):
            try:
                expr = SizeExpr(value.strip(), parse_size_expr(value))
                sizes.append(bind_size(expr, _PARAMS.get()))
            except ValueError as e:
                raise MapError(item.where, f"bad split size {value!r}: {e}") from None
        elif isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1):
            sizes.append(value)
        else:
            raise MapError(
                item.where,
                f"split sizes are integers >= 1, -1 (the rest) or expressions such as "
                f"'dim1/4', got {value!r}",
            )
    if sizes.count(-1) > 1:
        raise MapError(node.where, "split sizes allow one -1 (the rest of the axis)")
    return tuple(sizes)


def _reorder_blocks(node: Node) -> ReorderBlocks:
    body = _check_keys(node, ("axis", "order"), "reorder_blocks")
    if "order" not in body:
        raise MapError(
            node.where, "reorder_blocks needs `order:` e.g. [0, 2, 1, 3] (input block per output)"
        )
    order = _int_list(body["order"], "reorder_blocks order")
    if len(order) < 2 or sorted(order) != list(range(len(order))):
        raise MapError(
            body["order"].where,
            f"reorder_blocks order must be a permutation of 0..{max(len(order) - 1, 1)}, "
            f"got {list(order)}",
        )
    return ReorderBlocks(_axis_key(body), order)


def _add_to_block(node: Node) -> AddToBlock:
    body = _check_keys(node, ("axis", "blocks", "block", "value"), "add_to_block")
    for required in ("blocks", "block", "value"):
        if required not in body:
            raise MapError(
                node.where,
                f"add_to_block needs {required}: e.g. {{axis: 0, blocks: 4, block: 1, value: 1.0}}",
            )
    blocks = _integer(body["blocks"], "add_to_block blocks", minimum=1)
    block = _integer(body["block"], "add_to_block block", minimum=0)
    if block >= blocks:
        raise MapError(
            body["block"].where,
            f"block {block} is out of range for {blocks} blocks (0..{blocks - 1})",
        )
    value = _number(body["value"], "add_to_block value")
    if not math.isfinite(value):
        raise MapError(body["value"].where, f"add_to_block value must be finite, got {value}")
    return AddToBlock(_axis_key(body), blocks, block, value)


def _integer(node: Node, what: str, minimum: int) -> int:
    value = node.value
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MapError(node.where, f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _vocab(node: Node, base_dir: Path, what: str) -> tuple[tuple[str, ...], str]:
    path = base_dir / _text(node, what)
    try:
        lines = read_text(path, VOCAB_MAX_BYTES, "a vocabulary is one token a line").splitlines()
    except OSError as e:
        raise MapError(
            node.where, f"cannot read the {what} file {path}: {e.strerror or e}"
        ) from None
    except YamlTextError as e:
        raise MapError(
            node.where,
            f"cannot use the {what} file {path}: {e}",
            hint="a vocabulary is a UTF-8 text file, one token a line, relative to the map.",
        ) from None
    tokens = tuple(line.rstrip("\r") for line in lines)
    if len(set(tokens)) != len(tokens):
        raise MapError(node.where, f"the {what} file {path} lists a token twice")
    return tokens, str(path)


def _remap_rows(node: Node, base_dir: Path) -> RemapRows:
    body = _check_keys(node, ("old_vocab", "new_vocab", "axis", *_FILL_PARAMS), "remap_rows")
    for required in ("old_vocab", "new_vocab"):
        if required not in body:
            raise MapError(
                node.where,
                f"remap_rows needs {required}: (a file, one token a line, relative to the map)",
            )
    old, old_path = _vocab(body["old_vocab"], base_dir, "old_vocab")
    new, new_path = _vocab(body["new_vocab"], base_dir, "new_vocab")
    axis = body["axis"].value if "axis" in body else 0
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise MapError(body["axis"].where, "axis must be an integer")
    return RemapRows(
        old, new, axis, _fill(body.get("fill"), body, allow_mean=True), old_path, new_path
    )


def _operation(name: str, node: Node, selector: Selector, base_dir: Path) -> Operation:
    if name == "rename":
        text = _text(node, "rename")
        try:
            return Rename(parse_template(text, selector.pattern), text)
        except TemplateError as e:
            raise MapError(node.where, f"bad rename template {text!r}: {e}") from None
    if name == "drop":
        if node.value is not True:
            raise MapError(node.where, "drop takes `true` (other rules can't be undone)")
        return Drop()
    if name == "slice":
        text = _text(node, "slice")
        try:
            return Slice(bind_index(parse_index(text), _PARAMS.get()), text)
        except ValueError as e:
            raise MapError(node.where, f"bad slice {text!r}: {e}") from None
    if name == "pad":
        body = _check_keys(node, ("shape", *_FILL_PARAMS), "pad")
        if "shape" not in body:
            raise MapError(node.where, "pad needs the shape to grow to: {shape: [...]}")
        return Pad(
            _sizes(body["shape"], "pad shape"), _fill(body.get("fill"), body, allow_mean=True)
        )
    if name == "reshape":
        sizes = _sizes(node, "reshape size", minimum=-1)
        if sizes.count(-1) > 1:
            raise MapError(node.where, "reshape allows one -1")
        return Reshape(sizes)
    if name == "replace":
        body = _check_keys(node, ("old", "new"), "replace")
        for required in ("old", "new"):
            if required not in body:
                raise MapError(node.where, f"replace needs `{required}:`")
        old = _text(body["old"], "replace old")
        if not old:
            raise MapError(body["old"].where, "replace needs a non-empty `old:`")
        return Replace(old, str(body["new"].value) if body["new"].value is not None else "")
    if name == "transpose":
        perm = _int_list(node, "transpose")
        if sorted(perm) != list(range(len(perm))):
            raise MapError(
                node.where, f"transpose needs a permutation of 0..{len(perm) - 1}, got {list(perm)}"
            )
        return Transpose(perm)
    if name == "split":
        return _split(node, selector)
    if name == "resize":
        body = _check_keys(node, ("shape", "method"), "resize")
        if "shape" not in body:
            raise MapError(node.where, "resize needs the shape to interpolate to")
        method = _text(body["method"], "method") if "method" in body else "linear"
        if method not in RESIZE_METHODS:
            raise MapError(
                body["method"].where,
                f"unknown resize method {method!r}",
                hint=f"methods: {', '.join(RESIZE_METHODS)}.",
            )
        return Resize(_int_list(body["shape"], "resize shape", minimum=1), method)
    if name == "remap_rows":
        return _remap_rows(node, base_dir)
    if name == "reorder_blocks":
        return _reorder_blocks(node)
    if name == "add_to_block":
        return _add_to_block(node)
    assert name == "cast"
    if isinstance(node.value, str):
        return Cast(_dtype(node))
    body = _check_keys(node, ("dtype", "allow_overflow", "allow_precision_loss"), "cast")
    if "dtype" not in body:
        raise MapError(node.where, "cast needs a dtype")
    flags = {}
    for flag in ("allow_overflow", "allow_precision_loss"):
        if flag in body:
            if not isinstance(body[flag].value, bool):
                raise MapError(body[flag].where, f"{flag} is true or false")
            flags[flag] = body[flag].value
    return Cast(_dtype(body["dtype"]), **flags)


def _role_selector(node: Node) -> Selector:
    items = node.value if isinstance(node.value, list) else [node]
    roles = set()
    for item in items:
        try:
            roles.add(Role(item.value))
        except ValueError:
            choices = ", ".join(r.value for r in Role)
            raise MapError(
                item.where, f"unknown role {item.value!r}", hint=f"roles are: {choices}."
            ) from None
    text = "role: " + ", ".join(sorted(r.value for r in roles))
    return Selector(text, compile_user_regex(r"(?s).*"), True, frozenset(roles))


def _selector(node: Node, is_regex: bool) -> Selector:
    if is_regex:
        return Selector(node.value, _regex(node, "match"), True)
    text = _text(node, "name")
    return Selector(text, compile_user_regex(re.escape(text)), False)


def _rule(number: int, node: Node, base_dir: Path) -> AnyRule:
    body = _check_keys(node, RULE_KEYS, f"rule {number}")
    note = body["note"].value if "note" in body else None
    optional = False
    if "optional" in body:
        if not isinstance(body["optional"].value, bool):
            raise MapError(body["optional"].where, "optional is true or false")
        optional = body["optional"].value
    if "keep" in body:
        extra = set(body) - {"keep", "note", "optional"}
        if extra:
            raise MapError(node.where, f"keep stands alone (drop {', '.join(sorted(extra))})")
        items = body["keep"].value if isinstance(body["keep"].value, list) else [body["keep"]]
        return KeepRule(
            number, node.where, tuple(_selector(i, True) for i in items), note, optional
        )
    if "concat" in body:
        extra = set(body) - {"concat", "note", "optional"}
        if extra:
            raise MapError(node.where, f"concat stands alone (drop {', '.join(sorted(extra))})")
        spec = _check_keys(body["concat"], ("sources", "axis", "into"), "concat")
        for required in ("sources", "into"):
            if required not in spec:
                raise MapError(body["concat"].where, f"concat needs {required}")
        sources = tuple(_text(i, "concat source") for i in spec["sources"].expect_list("sources"))
        if len(sources) < 2:
            raise MapError(spec["sources"].where, "concat needs at least two sources")
        axis = spec["axis"].value if "axis" in spec else 0
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise MapError(spec["axis"].where, "axis must be an integer")
        return ConcatRule(
            number, node.where, sources, axis, _text(spec["into"], "into"), note, optional
        )
    if "from" in body:
        extra = set(body) - {"from", "note"}
        if extra:
            raise MapError(node.where, f"from stands alone (drop {', '.join(sorted(extra))})")
        spec = _check_keys(body["from"], ("checkpoint", "name", "match"), "from")
        if "checkpoint" not in spec:
            raise MapError(
                body["from"].where, "from needs checkpoint: (a path, relative to the map)"
            )
        if ("name" in spec) == ("match" in spec):
            raise MapError(body["from"].where, "from needs exactly one of name or match")
        selector = (
            _selector(spec["match"], True) if "match" in spec else _selector(spec["name"], False)
        )
        path = base_dir / _text(spec["checkpoint"], "checkpoint")
        return FromRule(number, node.where, str(path), selector, note)
    if "init" in body:
        extra = set(body) - {"init", "note"}
        if extra:
            raise MapError(node.where, f"init stands alone (drop {', '.join(sorted(extra))})")
        init = _check_keys(body["init"], ("name", "shape", "dtype", *_FILL_PARAMS), "init")
        for required in ("name", "shape"):
            if required not in init:
                raise MapError(body["init"].where, f"init needs {required}")
        dtype = _dtype(init["dtype"]) if "dtype" in init else "float32"
        fill = _fill(init.get("fill"), init, allow_mean=False)
        if "value" in init:
            _fill_fits(fill, dtype, init["value"])
        return InitRule(
            number,
            node.where,
            _text(init["name"], "init name"),
            _constant_sizes(init["shape"], "init shape"),
            dtype,
            fill,
            note,
        )
    chosen = [key for key in ("name", "match", "role") if key in body]
    if len(chosen) != 1:
        raise MapError(
            node.where,
            f"rule {number} needs exactly one of `name` (exact), `match` (regex) or `role` "
            "(model, optimizer, step, metadata)",
        )
    if "role" in body:
        selector = _role_selector(body["role"])
    elif "match" in body:
        selector = _selector(body["match"], True)
    else:
        selector = _selector(body["name"], False)
    ops = [key for key in body if key in OPERATIONS]
    if len(ops) != 1:
        raise MapError(
            node.where,
            f"rule {number} needs exactly one operation, found "
            f"{len(ops) or 'none'}" + (f" ({', '.join(ops)})" if ops else ""),
            hint=f"operations: {', '.join(OPERATIONS)}; split into several rules.",
        )
    return Rule(
        number,
        node.where,
        selector,
        _operation(ops[0], body[ops[0]], selector, base_dir),
        note,
        optional,
    )


def parse_map(
    text: str,
    path: str = "<map>",
    base_dir: Path | None = None,
    params: Mapping[str, int] | None = None,
) -> Map:
    """Parse map text; relative files it names (vocabularies, checkpoints) are looked up
    in ``base_dir`` (the map's own directory when loaded from a file)."""
    base = base_dir if base_dir is not None else Path.cwd()
    root = load_located(text, path)
    top = _check_keys(root, TOP_KEYS, "the map")
    if "version" not in top:
        raise MapError(root.where, "the map needs `version: 1`")
    version = top["version"].value
    # Exactly the integer: 1.0 and true equal 1 in Python, but are not what a map states.
    if type(version) is not int or version != MAP_VERSION:
        raise MapError(
            top["version"].where,
            f"unsupported map version {version!r}",
            hint=f"this ckptmigrate reads `version: {MAP_VERSION}` (an integer).",
        )
    if "rules" not in top:
        raise MapError(root.where, "the map has no `rules:` list")
    bound = _params(top.get("params"), params or {}, path)
    token = _PARAMS.set(bound)
    try:
        rules = tuple(
            _rule(i, node, base) for i, node in enumerate(top["rules"].expect_list("rules"), 1)
        )
    finally:
        _PARAMS.reset(token)
    description = top["description"].value if "description" in top else None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Map(path, description, rules, digest, tuple(sorted(bound.items())))


def bundled_map_names() -> list[str]:
    """The names ``--map`` takes for the maps shipped in mappings/ (nothing is loaded)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml")) if BUNDLED_DIR.is_dir() else []


def resolve_map_path(spec: str | Path) -> Path:
    """A path, or the name of a bundled map in mappings/ (with or without .yaml).

    Raises:
        MapError: neither; a name close to a bundled map's (``strip-optimiser``) is
            answered with that name.
    """
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec).removesuffix(".yaml")
    bundled = BUNDLED_DIR / f"{name}.yaml"
    if "/" not in name and bundled.is_file():
        return bundled
    names = bundled_map_names()
    close = [] if "/" in name else difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    hint = f"bundled maps: {', '.join(names)}." if names else None
    if close:
        hint = f"did you mean the bundled map {close[0]!r}?"
    raise MapError(str(spec), "no such map file or bundled map", hint=hint)


def load_map(spec: str | Path, params: Mapping[str, int] | None = None) -> Map:
    """Load and completely validate a map.

    Args:
        spec: a YAML map file, or the name of a bundled map (``strip-optimizer``).
        params: values for parameters the map declares (``params: {heads: 12}``), which
            its size expressions use (``reshape: [dim0, heads, dim1/heads]``).

    Returns:
        The validated map: frozen rules, each knowing where in the file it was written.

    Raises:
        MapError: the map is missing or invalid (``file:line:column``, with a hint).
    """
    path = resolve_map_path(spec)
    return parse_map(read_map_text(path), str(path), path.parent, params)


def bundled_maps() -> list[tuple[str, str]]:
    """(name, description) of every map shipped in mappings/."""
    out = []
    for path in sorted(BUNDLED_DIR.glob("*.yaml")) if BUNDLED_DIR.is_dir() else []:
        mapping = load_map(path)
        out.append((path.stem, mapping.description or ""))
    return out
