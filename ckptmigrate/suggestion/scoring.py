"""How alike a checkpoint variable and a target variable are: names (words, leaves, layer
numbers), shapes and position, scored from 0 to 1."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..inventory import Inventory, VariableSpec
from ..names import Role, variable_path

if TYPE_CHECKING:
    pass


MIN_SCORE = 0.5  # below this a pair is a guess too wild to write down

MARGIN = 0.03  # another candidate this close makes a choice uncertain

SIMILAR_SCOPES = 0.45  # layer paths less alike than this: paired by leaf, shape, position

SAME_NAME_SCORE = 0.01  # name scores this close count as equally similar

_W_NAME, _W_SHAPE, _W_POSITION = 0.55, 0.30, 0.15  # name, shape fit, position
SCOPE_BONUS = 0.15  # for a pair moving its scope as two or more others do (minus: elsewhere)

_NUMBER = re.compile(r"\d+")

_CHUNKS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[Any, ...]:
    return tuple(int(c) if c.isdigit() else c for c in _CHUNKS.split(text))


def leaf_of(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix(":0").lstrip("_").lower()


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _numbers(name: str) -> tuple[int, ...]:
    found = tuple(int(n) for n in _NUMBER.findall(_parent(name)))
    return found or (0,)  # Keras names its first layer `dense`, the next `dense_1`


@dataclass(frozen=True)
class Var:
    spec: VariableSpec
    name: str  # the display name rules select (TF2 keys without the value suffix)
    texts: tuple[str, ...]  # names to compare: display name, original name
    position: float = 0.5

    @property
    def original(self) -> str | None:
        return self.spec.original_name.removesuffix(":0") if self.spec.original_name else None


def views(inventory: Inventory, specs: Iterable[VariableSpec]) -> dict[str, Var]:
    """Display name -> view, with each variable's layer position on its side."""
    models = [v for v in inventory.variables.values() if v.role is Role.MODEL]
    layer_of = {v.name: _parent(_order_name(v)) for v in models}
    layers = sorted(set(layer_of.values()), key=natural_key)
    rank = {layer: i for i, layer in enumerate(layers)}
    out = {}
    for spec in specs:
        name = variable_path(spec.name)
        original = spec.original_name.removesuffix(":0") if spec.original_name else None
        texts = (name,) if original is None or original == name else (name, original)
        layer = layer_of.get(spec.name)
        position = 0.5
        if layer is not None and len(layers) > 1:
            position = rank[layer] / (len(layers) - 1)
        out[name] = Var(spec, name, texts, position)
    return out


def _order_name(spec: VariableSpec) -> str:
    # Keras 3 checkpoints key weights by the optimizer's list; the original name keeps
    # the layer (sequential/dense_2/kernel), so it orders layers better when present.
    return (spec.original_name or variable_path(spec.name)).removesuffix(":0")


_WORD = re.compile(r"[a-z]+")


def _words(path: str) -> list[str]:
    return _WORD.findall(path.lower())


def _same_word(a: str, b: str) -> bool:
    # Equal, or one abbreviates the other (enc / encoder, emb / embeddings).
    short, long = sorted((a, b), key=len)
    return a == b or (len(short) >= 3 and long.startswith(short))


def _scope_similarity(a: str, b: str) -> float:
    """How alike two layer paths are: shared words (difflib alone finds `encoder/dense_1`
    about as close to `head/dense_1` as to `enc/dense_1`), then characters."""
    pa, pb = _parent(a).lower(), _parent(b).lower()
    wa, wb = _words(pa), _words(pb)
    if wa or wb:
        hits = sum(any(_same_word(x, y) for y in wb) for x in wa)
        hits += sum(any(_same_word(y, x) for x in wa) for y in wb)
        words = hits / (len(wa) + len(wb))
    else:
        words = 1.0
    return 0.7 * words + 0.3 * difflib.SequenceMatcher(None, pa, pb).ratio()


def _name_similarity(a: str, b: str) -> float:
    la, lb = leaf_of(a), leaf_of(b)
    leaf = 1.0 if la == lb else 0.5 * difflib.SequenceMatcher(None, la, lb).ratio()
    numbers = 1.0 if _numbers(a) == _numbers(b) else 0.0
    # The layer path, not the whole name: the shared leaf would make every kernel alike.
    return 0.45 * _scope_similarity(a, b) + 0.3 * leaf + 0.25 * numbers


def _shape_fit(source: tuple[int, ...], target: tuple[int, ...]) -> float | None:
    if source == target:
        return 1.0
    if len(source) == len(target) and len(source) > 0:
        differ = sum(1 for a, b in zip(source, target, strict=True) if a != b)
        if len(source) == 2 and source == target[::-1]:
            return 0.5
        return 0.7 if differ == 1 else 0.5
    if math.prod(source) == math.prod(target):
        return 0.4
    return None


@dataclass(frozen=True)
class Score:
    total: float
    name: float
    shape: float
    scope: float  # how alike the layer paths are (difflib ratio), for doubts


def score_pair(source: Var, target: Var) -> Score | None:
    if source.spec.dtype != target.spec.dtype:
        return None
    fit = _shape_fit(source.spec.shape, target.spec.shape)
    if fit is None:
        return None
    combos = [(a, b) for a in source.texts for b in target.texts]
    name = max(_name_similarity(a, b) for a, b in combos)
    scope = max(_scope_similarity(a, b) for a, b in combos)
    position = 1.0 - abs(source.position - target.position)
    total = _W_NAME * name + _W_SHAPE * fit + _W_POSITION * position
    return Score(round(total, 6), round(name, 6), fit, scope)


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def target_keys(spec: VariableSpec) -> set[str]:
    keys = {variable_path(k) for k in (spec.name, *spec.aliases)}
    if spec.original_name:
        keys.add(spec.original_name.removesuffix(":0"))
    return keys


def output_keys(spec: VariableSpec) -> set[str]:
    # A converted checkpoint keeps a variable's name and original name, not its aliases.
    keys = {variable_path(spec.name)}
    if spec.original_name:
        keys.add(spec.original_name.removesuffix(":0"))
    return keys
