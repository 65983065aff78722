"""How alike a checkpoint variable and a target variable are: names (words weighted by how
rare they are on their side, leaves, layer numbers), shapes and position, scored from 0 to 1.

Everything a score reads about one name is computed once per variable (``views``), so
scoring a pair is a few set operations, never a string alignment."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..inventory import Inventory, VariableSpec
from ..names import Role, variable_path

MIN_SCORE = 0.5  # below this a pair is a guess too wild to write down

MARGIN = 0.03  # another candidate this close makes a choice uncertain

SIMILAR_SCOPES = 0.45  # layer paths less alike than this: paired by leaf, shape, position

SAME_NAME_SCORE = 0.01  # name scores this close count as equally similar

_W_NAME, _W_SHAPE, _W_POSITION = 0.55, 0.30, 0.15  # name, shape fit, position
SCOPE_BONUS = 0.15  # for a pair moving its scope as two or more others do (minus: elsewhere)

_NUMBER = re.compile(r"\d+")

_CHUNKS = re.compile(r"(\d+)")

# Words of a name: lower-case runs, camelCase split (LayerNorm: layer, norm).
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")


def natural_key(text: str) -> tuple[Any, ...]:
    return tuple(int(c) if c.isdigit() else c for c in _CHUNKS.split(text))


def leaf_of(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix(":0").lstrip("_").lower()


def canonical_leaf(leaf: str) -> str:
    """What a leaf is, across naming conventions: TF1 BERT's ``output_weights`` and Keras'
    ``kernel`` are kernels, ``output_bias`` a bias, ``gamma``/``scale`` and
    ``beta``/``offset`` a normalisation's scale and offset."""
    if "embedding" in leaf:
        return "embeddings"
    if leaf.endswith(("kernel", "weights", "weight")) or leaf == "w":
        return "kernel"
    if leaf.endswith(("bias", "biases")) or leaf == "b":
        return "bias"
    if leaf in ("gamma", "scale"):
        return "scale"
    if leaf in ("beta", "offset", "center"):
        return "offset"
    return leaf


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _numbers(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in _NUMBER.findall(_parent(name)))


def _number_similarity(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    if a == b:
        return 1.0
    # Keras names its first layer `dense`, the next `dense_1`: no number is nearly a 0.
    if not (a and b) and not any(a) and not any(b):
        return 0.6
    return 0.0


def words_of(path: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(path)]


def _trigrams(text: str) -> frozenset[str]:
    padded = f"  {text} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


@dataclass(frozen=True, slots=True)
class NameFeatures:
    """What scoring reads about one name, computed once."""

    words: frozenset[str]  # of the whole name
    weights: tuple[tuple[str, float], ...]  # each word's weight: rarer on its side, more
    total: float
    grams: frozenset[str]  # character trigrams of the layer path
    leaf: str
    canonical: str
    leaf_grams: frozenset[str]
    numbers: tuple[int, ...]


def _features(name: str, idf: dict[str, float]) -> NameFeatures:
    words = frozenset(words_of(name))
    weights = tuple(sorted((w, idf.get(w, 1.0)) for w in words))
    leaf = leaf_of(name)
    return NameFeatures(
        words,
        weights,
        sum(w for _, w in weights),
        _trigrams(_parent(name).lower()),
        leaf,
        canonical_leaf(leaf),
        _trigrams(leaf),
        _numbers(name),
    )


@dataclass(frozen=True)
class Var:
    spec: VariableSpec
    name: str  # the display name rules select (TF2 keys without the value suffix)
    texts: tuple[str, ...]  # names to compare: display name, original name
    position: float = 0.5
    features: tuple[NameFeatures, ...] = ()  # one per text

    @property
    def original(self) -> str | None:
        return self.spec.original_name.removesuffix(":0") if self.spec.original_name else None


def _idf(names: Iterable[str]) -> dict[str, float]:
    """Word -> weight: log(1 + N / the names holding it). A word in every name of a side
    (`bert`, `transformer`) says little about which variable is which."""
    counts: Counter[str] = Counter()
    n = 0
    for name in names:
        n += 1
        counts.update(set(words_of(name)))
    return {w: math.log(1.0 + n / c) for w, c in counts.items()}


def views(inventory: Inventory, specs: Iterable[VariableSpec]) -> dict[str, Var]:
    """Display name -> view, with each variable's layer position on its side."""
    models = [v for v in inventory.variables.values() if v.role is Role.MODEL]
    layer_of = {v.name: _parent(_order_name(v)) for v in models}
    layers = sorted(set(layer_of.values()), key=natural_key)
    rank = {layer: i for i, layer in enumerate(layers)}
    # An original name several variables share (tf.Variable's default 'Variable') says
    # nothing about which is which.
    shared = Counter(v.original_name for v in inventory.variables.values() if v.original_name)
    idf = _idf(t for v in models for t in _texts(v, shared))
    out = {}
    for spec in specs:
        texts = _texts(spec, shared)
        layer = layer_of.get(spec.name)
        position = 0.5
        if layer is not None and len(layers) > 1:
            position = rank[layer] / (len(layers) - 1)
        features = tuple(_features(t, idf) for t in texts)
        out[texts[0]] = Var(spec, texts[0], texts, position, features)
    return out


def _texts(spec: VariableSpec, shared: Counter[str]) -> tuple[str, ...]:
    name = variable_path(spec.name)
    original = None
    if spec.original_name and shared[spec.original_name] == 1:
        original = spec.original_name.removesuffix(":0")
    return (name,) if original is None or original == name else (name, original)


def _order_name(spec: VariableSpec) -> str:
    # Keras 3 checkpoints key weights by the optimizer's list; the original name keeps
    # the layer (sequential/dense_2/kernel), so it orders layers better when present.
    return (spec.original_name or variable_path(spec.name)).removesuffix(":0")


def _same_word(a: str, b: str) -> bool:
    # Equal, one abbreviates the other (enc / encoder, emb / embeddings, norm /
    # normalization), or a plural; `transform` is no abbreviation of `transformer`.
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if a == b:
        return True
    if len(short) < 3 or not long.startswith(short):
        return False
    return len(short) <= 5 or long == short + "s"


def _matched(mine: NameFeatures, other: NameFeatures, exact: frozenset[str]) -> float:
    """The weight of my words that the other name has (or abbreviates)."""
    total = 0.0
    for word, weight in mine.weights:
        if word in exact or any(_same_word(word, y) for y in other.words - exact):
            total += weight
    return total


def _word_similarity(a: NameFeatures, b: NameFeatures) -> float:
    if not a.total and not b.total:
        return 1.0
    exact = a.words & b.words
    return (_matched(a, b, exact) + _matched(b, a, exact)) / (a.total + b.total)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _scope_similarity(a: NameFeatures, b: NameFeatures) -> float:
    """How alike two names' layers are: shared words, rare ones counting most (a word
    every name of a side holds decides nothing), then shared characters of the layer
    paths (`hiddenlayer` and `hidden_layer`)."""
    return 0.7 * _word_similarity(a, b) + 0.3 * _jaccard(a.grams, b.grams)


def _name_similarity(a: NameFeatures, b: NameFeatures) -> float:
    same = a.canonical == b.canonical
    leaf = 1.0 if same else 0.5 * _jaccard(a.leaf_grams, b.leaf_grams)
    numbers = _number_similarity(a.numbers, b.numbers)
    return 0.45 * _scope_similarity(a, b) + 0.3 * leaf + 0.25 * numbers


def regroups(source: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """The shapes differ only by splitting or merging adjacent axes, so a reshape keeps
    every index's meaning (a [hidden, hidden] kernel as [hidden, heads, head_size])."""
    if source == target or math.prod(source) != math.prod(target) or 0 in source:
        return False

    def cuts(shape: tuple[int, ...]) -> set[int]:
        out, running = set(), 1
        for d in shape:
            running *= d
            out.add(running)
        return out

    a, b = cuts(source), cuts(target)
    return a <= b or b <= a


@lru_cache(maxsize=65536)
def shape_fit(source: tuple[int, ...], target: tuple[int, ...]) -> float | None:
    """How well a shape fix would keep the values: equal 1.0, axes split or merged (attention
    heads) 0.8, transposed 0.6, one axis longer or shorter 0.3 to 0.7 by the share of cells
    kept, several 0.2 to 0.6, same size otherwise 0.4; None: no fix."""
    if source == target:
        return 1.0
    if len(source) == len(target) == 2 and source == target[::-1]:
        return 0.6
    if regroups(source, target):
        return 0.8
    if len(source) == len(target) and len(source) > 0:
        kept = math.prod(min(a, b) for a, b in zip(source, target, strict=True))
        most = math.prod(max(a, b) for a, b in zip(source, target, strict=True))
        share = kept / most if most else 0.0
        differ = sum(1 for a, b in zip(source, target, strict=True) if a != b)
        return (0.3 if differ == 1 else 0.2) + 0.4 * share
    if math.prod(source) == math.prod(target):
        return 0.4
    return None


@dataclass(frozen=True, slots=True)
class Score:
    total: float
    name: float
    shape: float
    scope: float  # how alike the layer paths are, for doubts


def score_pair(source: Var, target: Var) -> Score | None:
    if source.spec.dtype != target.spec.dtype:
        return None
    fit = shape_fit(source.spec.shape, target.spec.shape)
    if fit is None:
        return None
    name = scope = 0.0
    for a in source.features:
        for b in target.features:
            name = max(name, _name_similarity(a, b))
            scope = max(scope, _scope_similarity(a, b))
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
