"""``suggest``: write the map that would make a checkpoint fit a target model.

The result is a map in the map language (mappings/README.md) that renames checkpoint
variables onto the target's own names (TF2 object paths without the value suffix, or TF1
variable names), fixes shapes, drops what the target does not restore and initialises what
the checkpoint lacks. ``convert --target`` and ``check --map`` then apply it unchanged.

How variables are paired, deterministically:

1. compare() with ``rekeyed=True`` pairs what a plain name lookup already pairs (by key,
   by original name, or with one extra leading scope on either side). A pair whose
   checkpoint name or original name already equals one of the target's keys needs no
   rule; otherwise it gets a rename onto the target key. A shape mismatch that slicing,
   padding, transposing or reshaping can fix stays paired; one that cannot is released,
   and so is one whose source has exactly the shape of a target variable nothing else
   supplies (positional names such as Keras' ``_operations/2`` would pad a trained head
   into the hidden layer inserted at its index: scored, the head goes to the head).
2. The rest, unpaired model variables on both sides (and step counters among themselves),
   are scored pairwise. Only same-dtype pairs whose shapes are equal, of the same rank,
   transposed or of equal size are candidates. The score mixes
   - name similarity (0.55): the best over checkpoint key/original name against target
     key/original name of: the layer paths' shared words, abbreviations included, and
     difflib ratio (``encoder/dense_1`` is closer to ``enc/dense_1`` than to
     ``head/dense_1``), the leaf (``kernel`` =
     ``_kernel``) and the numbers in the layer path (``hiddenlayer_1`` and ``dense_1``
     share ``1``);
   - shape fit (0.30): equal 1.0, one axis differs 0.7, several 0.5, transposed 0.5,
     same size 0.4;
   - relative position (0.15) of the variable's layer among its side's layers, layers
     ordered naturally (``dense_2`` before ``dense_10``) by original name when known.
3. An optimal assignment (Hungarian algorithm on ``score - MIN_SCORE``, so a strong pair is
   not traded for two weak ones) picks the pairs; below ``MIN_SCORE`` nothing is paired.
   Then a second round: pairs that move their scope the way two or more first-round
   pairs do (``encoder/...`` -> ``enc/...``) gain ``SCOPE_BONUS``, pairs that move such a
   scope anywhere else lose it, and the assignment is made again.
   A pair is *uncertain* when another candidate scores within ``MARGIN`` of it for the
   same target or source, when its names differ much, or when its fix is a reshape or
   transpose; the YAML carries a comment saying why.
4. Rules: renames (in an order that never lets one land on a name another still holds,
   grouped into one scope rename when all of a scope moves), shape fixes (slice the axes
   that are too long, then pad those too short: kernels ``glorot_uniform``, biases
   ``zeros``, scales ``ones``; an optimizer slot that the target keeps is padded by its
   own rule first, with what the optimizer starts that slot at: the target's own start
   when it has one constant (a ``.meta`` graph's initialiser), else the optimizer's
   default for the slot's kind (Adagrad/Ftrl accumulators 0.1, Ftrl's linear and Adam's
   moments 0; ``fills.slot_kind``), so no accumulator gets zeros or random values), drops
   (a role the target has none of is dropped by ``role:``; unpaired model variables and
   leftover slots by name), inits (new optimizer slots start the same way).
5. The map is planned against the checkpoint and compared with the target (rekeyed): what
   is still unused is dropped by name, what is still missing initialised, and the final
   prediction is kept as ``Suggestion.predicted``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dtypes
from .compare import CheckOptions, Kind, Report, compare
from .errors import OutputError
from .formats.object_graph import OBJECT_GRAPH_KEY
from .fs import staged_file
from .inventory import Inventory, VariableSpec
from .mapping.fills import slot_kind
from .names import Role, variable_path
from .output_format import OutputFormat

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Pair", "Section", "SuggestedRule", "Suggestion", "suggest", "write_map"]

MIN_SCORE = 0.5  # below this a pair is a guess too wild to write down
MARGIN = 0.03  # another candidate this close makes a choice uncertain
SIMILAR_SCOPES = 0.45  # layer paths less alike than this: paired by leaf, shape, position
SAME_NAME_SCORE = 0.01  # name scores this close count as equally similar
SCOPE_BONUS = 0.15  # for a pair moving its scope as two or more others do (minus: elsewhere)
GREEDY_ABOVE = 400  # more unpaired variables than this on a side: greedy, not optimal
_W_NAME, _W_SHAPE, _W_POSITION = 0.55, 0.30, 0.15

_ACCUMULATOR = re.compile(r"(Adagrad|Ftrl|RMSProp|Adadelta|accumulator)", re.IGNORECASE)
_ONES_LEAVES = {"gamma", "moving_variance", "variance", "scale"}
_MATRIX_LEAVES = {"kernel", "weights", "embeddings", "embedding_weights", "w"}


class Section(int, Enum):
    """Where a rule goes in the map; the value is the order."""

    BASE = -1  # the rules of the bundled map the suggestion starts from
    FREE = 0  # drops of variables whose name a rename will take
    RENAME = 1
    SHAPE = 2
    DROP = 3
    INIT = 4


@dataclass(frozen=True)
class SuggestedRule:
    """One rule of the suggested map, as the map writes it (selector, operation, note)."""

    section: Section
    body: dict[str, Any]
    uncertain: str | None = None  # why a reviewer should look at this one

    @property
    def kind(self) -> str:
        selectors = ("name", "match", "role", "optional", "note")
        return next(key for key in self.body if key not in selectors)


@dataclass(frozen=True)
class Pair:
    """A checkpoint variable paired with a target variable (display names)."""

    source: str
    target: str
    score: float  # 1.0 for pairs compare() made by name
    uncertain: str | None = None


@dataclass(frozen=True)
class Suggestion:
    checkpoint: str
    target: str
    rules: tuple[SuggestedRule, ...]
    pairs: tuple[Pair, ...]
    predicted: Report | None = None  # the target compared with the converted checkpoint
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def uncertain(self) -> tuple[SuggestedRule, ...]:
        return tuple(r for r in self.rules if r.uncertain)

    @property
    def description(self) -> str:
        return f"suggested by ckptmigrate: {self.checkpoint} -> {self.target}"

    def to_dict(self) -> dict[str, Any]:
        """The map as data (what ``to_yaml`` writes, without the comments)."""
        return {
            "version": 1,
            "description": self.description,
            "rules": [dict(r.body) for r in self.rules],
        }

    def to_yaml(self) -> str:
        return _render_yaml(self)


# -- the variables, as the matcher sees them ------------------------------------------


_NUMBER = re.compile(r"\d+")
_CHUNKS = re.compile(r"(\d+)")


def _natural(text: str) -> tuple[Any, ...]:
    return tuple(int(c) if c.isdigit() else c for c in _CHUNKS.split(text))


def _leaf(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix(":0").lstrip("_").lower()


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _numbers(name: str) -> tuple[int, ...]:
    found = tuple(int(n) for n in _NUMBER.findall(_parent(name)))
    return found or (0,)  # Keras names its first layer `dense`, the next `dense_1`


@dataclass(frozen=True)
class _Var:
    spec: VariableSpec
    name: str  # the display name rules select (TF2 keys without the value suffix)
    texts: tuple[str, ...]  # names to compare: display name, original name
    position: float = 0.5

    @property
    def original(self) -> str | None:
        return self.spec.original_name.removesuffix(":0") if self.spec.original_name else None


def _views(inventory: Inventory, specs: Iterable[VariableSpec]) -> dict[str, _Var]:
    """Display name -> view, with each variable's layer position on its side."""
    models = [v for v in inventory.variables.values() if v.role is Role.MODEL]
    layer_of = {v.name: _parent(_order_name(v)) for v in models}
    layers = sorted(set(layer_of.values()), key=_natural)
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
        out[name] = _Var(spec, name, texts, position)
    return out


def _order_name(spec: VariableSpec) -> str:
    # Keras 3 checkpoints key weights by the optimizer's list; the original name keeps
    # the layer (sequential/dense_2/kernel), so it orders layers better when present.
    return (spec.original_name or variable_path(spec.name)).removesuffix(":0")


# -- scoring ---------------------------------------------------------------------------


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
    la, lb = _leaf(a), _leaf(b)
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
class _Score:
    total: float
    name: float
    shape: float
    scope: float  # how alike the layer paths are (difflib ratio), for doubts


def _score(source: _Var, target: _Var) -> _Score | None:
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
    return _Score(round(total, 6), round(name, 6), fit, scope)


def _hungarian(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """Rows and columns paired to maximise the total weight (weight 0: no edge).

    The classic O(n^2 m) shortest augmenting path method with potentials."""
    n = len(weights)
    m = len(weights[0]) if n else 0
    if n == 0 or m == 0:
        return []
    if n > m:
        return [(i, j) for j, i in _hungarian([list(col) for col in zip(*weights, strict=True)])]
    inf = float("inf")
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    p = [0] * (m + 1)  # p[j]: the row (1-based) column j is assigned to
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta, j1 = inf, 0
            row = weights[i0 - 1]
            for j in range(1, m + 1):
                if not used[j]:
                    cur = -row[j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    return [(p[j] - 1, j - 1) for j in range(1, m + 1) if p[j] and weights[p[j] - 1][j - 1] > 0]


def _greedy(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    edges = sorted(
        ((w, i, j) for i, row in enumerate(weights) for j, w in enumerate(row) if w > 0),
        key=lambda e: (-e[0], e[1], e[2]),
    )
    rows: set[int] = set()
    cols: set[int] = set()
    out = []
    for _, i, j in edges:
        if i not in rows and j not in cols:
            rows.add(i)
            cols.add(j)
            out.append((i, j))
    return out


def _move(source: str, target: str) -> tuple[str, str] | None:
    """(old scope, new scope): the names without their common trailing components."""
    a, b = source.split("/"), target.split("/")
    common = 0
    while common < min(len(a), len(b)) and a[-1 - common] == b[-1 - common]:
        common += 1
    if common == 0:
        return None
    return "/".join(a[: len(a) - common]), "/".join(b[: len(b) - common])


def _assign(scores: dict[tuple[int, int], _Score], shape: tuple[int, int]) -> list[tuple[int, int]]:
    weights = [
        [
            scores[i, j].total - MIN_SCORE + 1e-9 if (i, j) in scores else 0.0
            for j in range(shape[1])
        ]
        for i in range(shape[0])
    ]
    return (_greedy if max(shape) > GREEDY_ABOVE else _hungarian)(weights)


def _match(sources: list[_Var], targets: list[_Var]) -> list[Pair]:
    """The best assignment of unpaired sources to unpaired targets, uncertainty flagged."""
    scores: dict[tuple[int, int], _Score] = {}
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            found = _score(s, t)
            if found is not None and found.total >= MIN_SCORE:
                scores[i, j] = found
    shape = (len(sources), len(targets))
    chosen = _assign(scores, shape)
    # Second round: a scope move two or more first-round pairs agree on (encoder/ ->
    # enc/) is likely the move for the rest of that scope too.
    support: dict[tuple[str, str], int] = {}
    for i, j in chosen:
        move = _move(sources[i].name, targets[j].name)
        if move is not None:
            support[move] = support.get(move, 0) + 1
    agreed = {move for move, n in support.items() if n >= 2}
    moved = {old for old, _ in agreed}
    if agreed:
        for (i, j), found in scores.items():
            move = _move(sources[i].name, targets[j].name)
            if move in agreed:
                total = found.total + SCOPE_BONUS
            elif move is not None and move[0] in moved:
                total = found.total - SCOPE_BONUS  # its scope moves elsewhere
            else:
                continue
            scores[i, j] = _Score(round(total, 6), found.name, found.shape, found.scope)
        chosen = _assign(scores, shape)
    pairs = []
    own_s = {i: scores[i, j].total for i, j in chosen}
    own_t = {j: scores[i, j].total for i, j in chosen}
    for i, j in sorted(chosen, key=lambda ij: _natural(targets[ij[1]].name)):
        best = scores[i, j]
        why = _doubt((i, j), scores, sources, targets, (own_s, own_t))
        pairs.append(Pair(sources[i].name, targets[j].name, min(best.total, 1.0), why))
    return pairs


def _doubt(
    pair: tuple[int, int],
    scores: dict[tuple[int, int], _Score],
    sources: list[_Var],
    targets: list[_Var],
    owns: tuple[dict[int, float], dict[int, float]],
) -> str | None:
    i, j = pair
    chosen = scores[i, j]

    def rival(other: _Score | None, own: float | None) -> bool:
        # Close in total, or as similar by name and shape, so only position decided; and
        # not much happier with its own pair (else it is no real alternative).
        if other is None or (own is not None and other.total < own - MARGIN):
            return False
        same_fit = other.shape == chosen.shape and other.name >= chosen.name - SAME_NAME_SCORE
        return other.total >= chosen.total - MARGIN or same_fit

    own_s, own_t = owns
    rivals = [
        f"{sources[k].name!r} {_shape(sources[k].spec.shape)} fits {targets[j].name!r} as "
        f"well (score {scores[k, j].total:.2f} vs {chosen.total:.2f})"
        for k in range(len(sources))
        if k != i and rival(scores.get((k, j)), own_s.get(k))
    ]
    rivals += [
        f"{targets[k].name!r} {_shape(targets[k].spec.shape)} fits {sources[i].name!r} as "
        f"well (score {scores[i, k].total:.2f} vs {chosen.total:.2f})"
        for k in range(len(targets))
        if k != j and rival(scores.get((i, k)), own_t.get(k))
    ]
    if rivals:
        return "ambiguous: " + "; ".join(rivals[:3])
    if chosen.scope < SIMILAR_SCOPES:
        return (
            f"the names differ ({sources[i].name!r} vs {targets[j].name!r}); paired by "
            f"leaf, shape and position (score {chosen.total:.2f})"
        )
    return None


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# -- shape fixes and fills -------------------------------------------------------------


def _fill_for(name: str, shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
    """A fill that starts a new cell the way a fresh layer would."""
    leaf = _leaf(name)
    if not dtype.startswith(("float", "bfloat", "half")):
        return {"fill": "zeros"}
    if leaf in _ONES_LEAVES:
        return {"fill": "ones"}
    if len(shape) >= 2 or leaf in _MATRIX_LEAVES:
        return {"fill": "glorot_uniform"}
    return {"fill": "zeros"}


def _constant_fill(value: float) -> dict[str, Any]:
    if value == 0.0:
        return {"fill": "zeros"}
    if value == 1.0:
        return {"fill": "ones"}
    return {"fill": "constant", "value": value}


def _constant_of(value: np.ndarray | None) -> float | None:
    """The one value every cell of a float tensor holds (what a constant initialiser
    gives), written as briefly as it round-trips in its dtype; None otherwise."""
    import numpy as np

    if value is None or value.size == 0 or value.dtype.kind not in "fV":
        return None
    if value.dtype.kind == "V":  # bfloat16, float8 (ml_dtypes): compared as float32
        try:
            value = value.astype(np.float32)
        except (TypeError, ValueError):
            return None
    first = value.reshape(-1)[0]
    if not np.isfinite(first) or not np.all(value == first):
        return None
    return float(np.format_float_positional(first, unique=True, trim="-"))


class _SlotStarts:
    """What new optimizer state starts at: the target's own start where it has one (a
    ``.meta`` graph's initialiser, a built model's optimizer: one constant for the whole
    slot), else what the optimizer creates for the slot's kind (Adagrad and Ftrl
    accumulators ``initial_accumulator_value`` 0.1, Ftrl's linear and Adam's moments 0,
    TF1 RMSProp's rms 1); never the variable's random initialiser."""

    def __init__(self, target: Inventory, initial_value: Callable[[str], Any]) -> None:
        self._keys: dict[str, str] = {}
        for spec in target.variables.values():
            for key in _target_keys(spec):
                self._keys.setdefault(key, spec.name)
        self._initial_value = initial_value

    def fill(self, name: str) -> tuple[dict[str, Any] | None, str]:
        """(fill, why) for the slot named ``name`` (a target key or its display name);
        fill None: nothing is known about it."""
        kind = slot_kind(name)
        what = f"{kind.optimizer}'s {kind.slot} " if kind is not None else ""
        key = self._keys.get(variable_path(name), name)
        own = _constant_of(self._initial_value(key))
        if own is not None and not (kind is not None and kind.positive and own <= 0.0):
            return _constant_fill(own), f"at {what}{own:g}, the target's own start"
        if kind is not None:
            return _constant_fill(kind.start), (
                f"at {what}{kind.start:g}, the optimizer's default (the target holds no "
                "single start value)"
            )
        return None, (
            "an optimizer slot of no known kind, which the target gives no single start "
            "value: check that the optimizer starts it at zero"
        )

    def pad_fill(self, name: str) -> dict[str, Any]:
        fill, _ = self.fill(name)
        if fill is not None:
            return fill
        # Unknown kind: an accumulator divides by its square root, so its new cells get
        # the mean of the old ones (positive); anything else zeros.
        leaf = name.rsplit("/", 1)[-1]
        return {"fill": "mean"} if _ACCUMULATOR.search(leaf) else {"fill": "zeros"}


def _index(source: tuple[int, ...], target: tuple[int, ...]) -> str | None:
    if all(a <= b for a, b in zip(source, target, strict=True)):
        return None
    parts = [f":{b}" if a > b else ":" for a, b in zip(source, target, strict=True)]
    while parts and parts[-1] == ":":  # `[:, :2]` but `[:2]`, as people write them
        parts.pop()
    return "[" + ", ".join(parts) + "]"


def _shape_ops(
    source: tuple[int, ...], target: tuple[int, ...], fill: dict[str, Any]
) -> tuple[list[dict[str, Any]], str | None]:
    """Operations (as map bodies) turning ``source`` into ``target``, and a doubt."""
    if source == target:
        return [], None
    if len(source) == len(target):
        if len(source) == 2 and source == target[::-1] and source[0] != source[1]:
            return [{"transpose": [1, 0]}], "transposed shape: a transpose is a guess"
        ops: list[dict[str, Any]] = []
        index = _index(source, target)
        if index is not None:
            ops.append({"slice": index})
        if any(a < b for a, b in zip(source, target, strict=True)):
            ops.append({"pad": {"shape": list(target), **fill}})
        return ops, None
    return [{"reshape": list(target)}], (
        f"reshape {_shape(source)} -> {_shape(target)} keeps the values in memory order; "
        "check the layout"
    )


# -- building the rules ----------------------------------------------------------------


@dataclass
class _Plan:
    """What the matcher decided, before it becomes rules."""

    renames: dict[str, str] = field(default_factory=dict)  # source -> target name
    fixes: dict[str, tuple[VariableSpec, VariableSpec]] = field(default_factory=dict)
    drops: list[str] = field(default_factory=list)  # model/step variables by name
    inits: list[VariableSpec] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # source -> why it is paired
    # original names several variables share (tf.Variable's default 'Variable'): equal
    # ones don't make a conversion pair two variables, so they don't spare a rename
    shared_originals: frozenset[str] = frozenset()


def _target_keys(spec: VariableSpec) -> set[str]:
    keys = {variable_path(k) for k in (spec.name, *spec.aliases)}
    if spec.original_name:
        keys.add(spec.original_name.removesuffix(":0"))
    return keys


def _output_keys(spec: VariableSpec) -> set[str]:
    # A converted checkpoint keeps a variable's name and original name, not its aliases.
    keys = {variable_path(spec.name)}
    if spec.original_name:
        keys.add(spec.original_name.removesuffix(":0"))
    return keys


def _fixable(source: VariableSpec, target: VariableSpec) -> bool:
    return len(source.shape) == len(target.shape) or source.num_elements == target.num_elements


def _decide(ckpt: Inventory, target: Inventory) -> _Plan:
    report = compare(ckpt, target, CheckOptions(rekeyed=True))
    plan = _Plan(shared_originals=_shared_originals(ckpt, target))
    pool_sources: list[VariableSpec] = []
    pool_targets: list[VariableSpec] = []
    poolable = (Role.MODEL, Role.STEP)
    # Slots follow their variable's renames and shape fixes; the simulation catches the rest.
    owned = {slot for slots in _slots_of(ckpt).values() for slot in slots}
    # A name pair whose shapes differ while a target variable nothing supplies has exactly
    # the source's shape is doubtful: positional names (Keras' _operations/2) pair a
    # trained head with the hidden layer inserted at its index. Such pairs go to the
    # scored pools, where shape, name and layer position (the head is last on both
    # sides) decide.
    vacant = Counter(
        (f.target.shape, f.target.dtype)
        for f in report.findings
        if f.kind is Kind.MISSING and f.target is not None and f.target.role in poolable
    )
    for f in report.findings:
        if f.checkpoint is not None and variable_path(f.checkpoint.name) in owned:
            continue
        if (
            f.kind is Kind.SHAPE_MISMATCH
            and f.checkpoint is not None
            and f.target is not None
            and f.checkpoint.role in poolable
            and vacant[(f.checkpoint.shape, f.checkpoint.dtype)]
        ):
            pool_sources.append(f.checkpoint)
            pool_targets.append(f.target)
            continue
        if f.kind is Kind.UNUSED:
            if f.checkpoint is not None and f.checkpoint.role in poolable:
                pool_sources.append(f.checkpoint)
            continue
        assert f.target is not None
        if f.kind is Kind.MISSING:
            if f.target.role in poolable:
                pool_targets.append(f.target)
            continue
        assert f.checkpoint is not None
        if f.kind is Kind.SHAPE_MISMATCH and not _fixable(f.checkpoint, f.target):
            pool_sources.append(f.checkpoint)
            pool_targets.append(f.target)
            continue
        _pair(plan, f.checkpoint, f.target, f"compare pairs it {report.matching}")
        plan.pairs.append(Pair(variable_path(f.checkpoint.name), variable_path(f.target.name), 1.0))
    _match_pools(plan, ckpt, target, pool_sources, pool_targets)
    return plan


def _shared_originals(*inventories: Inventory) -> frozenset[str]:
    shared: set[str] = set()
    for inventory in inventories:
        counts = Counter(
            v.original_name.removesuffix(":0")
            for v in inventory.variables.values()
            if v.original_name
        )
        shared |= {name for name, count in counts.items() if count > 1}
    return frozenset(shared)


def _pair(plan: _Plan, source: VariableSpec, target: VariableSpec, reason: str) -> None:
    name = variable_path(source.name)
    if not (_output_keys(source) & _target_keys(target)) - plan.shared_originals:
        plan.renames[name] = variable_path(target.name)
    if source.shape != target.shape or source.dtype != target.dtype:
        plan.fixes[name] = (source, target)
    plan.reasons[name] = reason


def _match_pools(
    plan: _Plan,
    ckpt: Inventory,
    target: Inventory,
    sources: list[VariableSpec],
    targets: list[VariableSpec],
) -> None:
    for role in (Role.MODEL, Role.STEP):
        s_views = _views(ckpt, (s for s in sources if s.role is role))
        t_views = _views(target, (t for t in targets if t.role is role))
        s_list = sorted(s_views.values(), key=lambda v: _natural(v.name))
        t_list = sorted(t_views.values(), key=lambda v: _natural(v.name))
        paired_s: set[str] = set()
        paired_t: set[str] = set()
        for pair in _match(s_list, t_list):
            s, t = s_views[pair.source].spec, t_views[pair.target].spec
            _pair(plan, s, t, f"closest unpaired {role.value} variable (score {pair.score:.2f})")
            plan.pairs.append(pair)
            paired_s.add(pair.source)
            paired_t.add(pair.target)
        plan.drops += [v.name for v in s_list if v.name not in paired_s]
        plan.inits += [v.spec for v in t_list if v.name not in paired_t]


def _slots_of(ckpt: Inventory) -> dict[str, list[str]]:
    """Variable display name -> its optimizer slots' display names (plan.py's rule: the
    longest prefix of the slot's name that is another, non-optimizer variable)."""
    owners = {
        variable_path(v.name) for v in ckpt.variables.values() if v.role is not Role.OPTIMIZER
    }
    slots: dict[str, list[str]] = {}
    for v in ckpt.variables.values():
        if v.role is not Role.OPTIMIZER:
            continue
        parts = variable_path(v.name).split("/")
        for cut in range(len(parts) - 1, 0, -1):
            owner = "/".join(parts[:cut])
            if owner in owners:
                slots.setdefault(owner, []).append(variable_path(v.name))
                break
    return slots


def _rule(section: Section, body: dict[str, Any], uncertain: str | None = None) -> SuggestedRule:
    return SuggestedRule(section, body, uncertain)


def _rename_rules(plan: _Plan, ckpt: Inventory, doubts: dict[str, str]) -> list[SuggestedRule]:
    """Renames in an order where no rename lands on a name still held by another source,
    with a whole scope renamed by one rule where it can be."""
    pending = dict(plan.renames)
    slot_names = {s for slots in _slots_of(ckpt).values() for s in slots}
    names = [variable_path(k) for k in ckpt.variables if k != OBJECT_GRAPH_KEY]
    plain = [n for n in names if n not in slot_names]
    rules: list[SuggestedRule] = []
    for (old, new), members in _scope_groups(pending, plain).items():
        pattern = ("" if not old else re.escape(old) + "/") + "(.*)"
        template = ("" if not new else new.replace("{", "{{").replace("}", "}}") + "/") + "{1}"
        doubt = "; ".join(doubts[m] for m in members if m in doubts) or None
        body = {
            "match": pattern,
            "rename": template,
            "note": f"{len(members)} variables move from {old or 'the top'}/ to "
            f"{new or 'the top'}/",
        }
        rules.append(_rule(Section.RENAME, body, doubt))
        for m in members:
            del pending[m]
    while pending:
        held = set(pending)
        ready = [s for s, d in pending.items() if d not in held or d == s]
        if not ready:  # a cycle (a <-> b): park one under a temporary name first
            first = min(pending, key=_natural)
            parked = first + "__ckptmigrate_tmp"
            rules.append(
                _rule(Section.RENAME, {"name": first, "rename": parked, "note": "frees the name"})
            )
            pending[parked] = pending.pop(first)
            continue
        for source in sorted(ready, key=_natural):
            body = {"name": source, "rename": pending.pop(source)}
            body["note"] = plan.reasons.get(source, "renamed")
            rules.append(_rule(Section.RENAME, body, doubts.get(source)))
    return rules


def _scope_groups(renames: dict[str, str], names: list[str]) -> dict[tuple[str, str], list[str]]:
    """(old scope, new scope) -> sources, where every variable under the old scope moves
    to the new one keeping the rest of its path, and nothing else there stays behind."""
    groups: dict[tuple[str, str], list[str]] = {}
    for source, dest in renames.items():
        a, b = source.split("/"), dest.split("/")
        common = 0
        while common < min(len(a), len(b)) and a[-1 - common] == b[-1 - common]:
            common += 1
        if common == 0 or common == len(a) == len(b):
            continue
        old, new = "/".join(a[: len(a) - common]), "/".join(b[: len(b) - common])
        groups.setdefault((old, new), []).append(source)
    held = set(renames)
    out = {}
    for (old, new), members in groups.items():
        inside = {n for n in names if not old or n.startswith(old + "/")}
        lands_on_source = any(renames[m] in held and renames[m] not in members for m in members)
        if len(members) >= 2 and inside == set(members) and not lands_on_source:
            out[old, new] = sorted(members, key=_natural)
    return out


def _fix_rules(
    plan: _Plan,
    ckpt: Inventory,
    target: Inventory,
    doubts: dict[str, str],
    starts: _SlotStarts,
) -> list[SuggestedRule]:
    slots = _slots_of(ckpt)
    wanted = set().union(*(_target_keys(t) for t in target.variables.values()))
    rules: list[SuggestedRule] = []
    for source in sorted(plan.fixes, key=lambda s: _natural(plan.renames.get(s) or s)):
        src, tgt = plan.fixes[source]
        name = plan.renames.get(source, source)
        if src.dtype != tgt.dtype:
            narrowing = dtypes.BY_NAME[src.dtype].itemsize or 0
            cast: Any = tgt.dtype
            if narrowing > (dtypes.BY_NAME[tgt.dtype].itemsize or 0):
                cast = {"dtype": tgt.dtype, "allow_precision_loss": True}
            rules.append(_rule(Section.SHAPE, {"name": name, "cast": cast}))
        ops, doubt = _shape_ops(src.shape, tgt.shape, _fill_for(name, tgt.shape, tgt.dtype))
        # Slots the target keeps get their own rules, first: pads need a slot's fill (an
        # accumulator must not get random cells), and plan.py lets a rule on the variable
        # reach a slot only while their shapes agree, which its own order can break. The
        # operations reach the target shape, so a second application changes nothing.
        for slot in sorted(slots.get(source, []), key=_natural):
            slot_name = name + slot[len(source) :]
            if slot_name in wanted:
                slot_ops, _ = _shape_ops(src.shape, tgt.shape, starts.pad_fill(slot_name))
                for op in slot_ops:
                    rules.append(_rule(Section.SHAPE, {"name": slot_name, **op}))
        why = doubt or doubts.get(source)
        for op in ops:
            rules.append(_rule(Section.SHAPE, {"name": name, **op}, why))
    return rules


def _drop_rules(plan: _Plan, ckpt: Inventory, target: Inventory) -> list[SuggestedRule]:
    present = {v.role for k, v in ckpt.variables.items() if k != OBJECT_GRAPH_KEY}
    needed = {v.role for k, v in target.variables.items() if k != OBJECT_GRAPH_KEY}
    roles = [r for r in (Role.OPTIMIZER, Role.STEP, Role.METADATA) if r in present - needed]
    rules = []
    if roles:
        labels = ", ".join(r.label + "s" for r in roles)
        body = {
            "role": [r.value for r in roles],
            "drop": True,
            "note": f"the target restores no {labels}",
        }
        rules.append(_rule(Section.DROP, body))
    destinations = set(plan.renames.values())
    by_role = {variable_path(k): v.role for k, v in ckpt.variables.items()}
    for name in sorted(plan.drops, key=_natural):
        if by_role.get(name) in roles:
            continue  # the role rule drops it
        # Dropped before the renames when a rename takes its name, after them otherwise.
        section = Section.FREE if name in destinations else Section.DROP
        note = "no target variable fits it"
        if section is Section.FREE:
            note += "; dropped first because a rename takes its name"
        rules.append(_rule(section, {"name": name, "drop": True, "note": note}))
    return rules


def _init_rule(spec: VariableSpec, note: str, starts: _SlotStarts) -> SuggestedRule | None:
    dtype = dtypes.BY_NAME.get(spec.dtype)
    if dtype is None or dtype.itemsize is None:
        return None  # strings, variants: nothing a map can create
    name = variable_path(spec.name)
    fill: dict[str, Any] = {"fill": "zeros"}
    if spec.role is Role.MODEL:
        fill = _fill_for(name, spec.shape, spec.dtype)
    uncertain = None
    if spec.role is Role.OPTIMIZER and spec.dtype.startswith(("float", "bfloat", "half")):
        start, why = starts.fill(spec.name)
        if start is None:
            uncertain = why
        else:
            fill = start
            note = f"{note}; it starts {why}"
    init = {"name": name, "shape": list(spec.shape), "dtype": spec.dtype, **fill}
    body: dict[str, Any] = {"init": init, "note": note}
    return _rule(Section.INIT, body, uncertain)


# -- simulation ------------------------------------------------------------------------


def _predict(checkpoint: str | Path, target: Inventory, rules: Sequence[SuggestedRule]) -> Report:
    """The target compared with the checkpoint as the rules would convert it."""
    from .checker import mapped_inventory
    from .mapping.schema import parse_map

    text = _yaml_rules(list(rules))
    the_map = parse_map(text, "<suggested map>", Path.cwd())
    # The target's metadata (save_counter) comes with the target: convert fills it in.
    restored = {k: v for k, v in target.variables.items() if v.role is not Role.METADATA}
    return compare(
        mapped_inventory(checkpoint, the_map),
        replace(target, variables=restored),
        CheckOptions(rekeyed=True),
    )


def _leftover_rules(report: Report, starts: _SlotStarts) -> list[SuggestedRule]:
    rules = []
    for f in report.findings:
        if f.kind is Kind.UNUSED and f.checkpoint is not None:
            name = variable_path(f.checkpoint.name)
            body = {"name": name, "drop": True, "note": "the target does not restore it"}
            rules.append(_rule(Section.DROP, body))
        elif f.kind is Kind.MISSING and f.target is not None and f.target.role is not Role.METADATA:
            rule = _init_rule(f.target, "the checkpoint has no value for it", starts)
            if rule is not None:
                rules.append(rule)
    return rules


def _ordered(rules: Iterable[SuggestedRule]) -> tuple[SuggestedRule, ...]:
    return tuple(sorted(rules, key=lambda r: r.section.value))  # stable within a section


def suggest(
    checkpoint: str | Path,
    target: str | Path | Any,
    *,
    root: str | None = "model",
    format: str = "checkpoint",
) -> Suggestion:
    """The map that would make ``checkpoint`` fit ``target``.

    Args:
        checkpoint: the checkpoint to migrate.
        target: anything :func:`ckptmigrate.check` takes.
        root, format: as for :func:`ckptmigrate.convert` with this target: new variables
            get the keys that conversion writes.

    Returns:
        The suggestion: its rules (uncertain ones marked), notes, and ``to_yaml()``.

    Raises:
        CkptMigrateError: the checkpoint or target cannot be read.
    """
    from .targets.checkpoint import load_checkpoint_inventory
    from .targets.model import open_conversion_target

    ckpt = load_checkpoint_inventory(checkpoint)
    with open_conversion_target(
        target, root=root, format=OutputFormat.parse(format)
    ) as target_model:
        starts = _SlotStarts(target_model.inventory, target_model.initial_value)
        return _suggest(checkpoint, ckpt, target_model.inventory, starts)


def _suggest(
    checkpoint: str | Path, ckpt: Inventory, target_inventory: Inventory, starts: _SlotStarts
) -> Suggestion:
    start = _bundled_start(checkpoint, ckpt, target_inventory)
    base: list[SuggestedRule] = []
    notes: list[str] = []
    if start is not None:
        ckpt, base, note = start
        notes.append(note)
    plan = _decide(ckpt, target_inventory)
    doubts = {p.source: p.uncertain for p in plan.pairs if p.uncertain}
    rules = [
        *base,
        *_rename_rules(plan, ckpt, doubts),
        *_fix_rules(plan, ckpt, target_inventory, doubts, starts),
        *_drop_rules(plan, ckpt, target_inventory),
    ]
    # Metadata (a tf.train.Checkpoint's save_counter) comes with the target's own value.
    inits = [s for s in plan.inits if s.role is not Role.METADATA]
    for spec in sorted(inits, key=lambda s: _natural(s.name)):
        rule = _init_rule(spec, "the checkpoint has nothing that fits it", starts)
        if rule is not None:
            rules.append(rule)
    rules = list(_ordered(rules))
    first = _predict(checkpoint, target_inventory, rules)
    leftovers = _leftover_rules(first, starts)
    if leftovers:
        rules = list(_ordered([*rules, *leftovers]))
    predicted = _predict(checkpoint, target_inventory, rules) if leftovers else first
    rules = _flag_discarded_fits(rules, ckpt)
    target_name = target_inventory.source
    return Suggestion(
        str(checkpoint),
        target_name,
        tuple(rules),
        tuple(plan.pairs),
        predicted,
        (*notes, *predicted.notes),
    )


def _flag_discarded_fits(rules: list[SuggestedRule], ckpt: Inventory) -> list[SuggestedRule]:
    """A trained model variable dropped while a new one of its very shape and dtype starts
    fresh is the likeliest missed pairing: both rules are marked for the reviewer."""
    specs = {variable_path(k): v for k, v in ckpt.variables.items()}
    dropped = {
        r.body["name"]: specs[r.body["name"]]
        for r in rules
        if "drop" in r.body and "name" in r.body and r.body["name"] in specs
    }
    dropped = {n: v for n, v in dropped.items() if v.role is Role.MODEL}
    inits = [r for r in rules if "init" in r.body]
    fits = {id(r): [n for n, v in dropped.items() if _init_fits(r.body["init"], v)] for r in inits}
    suspects = {n for names in fits.values() for n in names}
    out = []
    for rule in rules:
        why = None
        if fits.get(id(rule)):
            shown = ", ".join(repr(n) for n in fits[id(rule)][:3])
            why = f"this starts fresh while {shown} (same shape and dtype) is dropped: rename it?"
        elif "drop" in rule.body and rule.body.get("name") in suspects:
            why = "a trained value dropped while a target variable of its shape starts fresh"
        out.append(replace(rule, uncertain=rule.uncertain or why) if why else rule)
    return out


def _init_fits(init: dict[str, Any], spec: VariableSpec) -> bool:
    return tuple(init["shape"]) == spec.shape and init["dtype"] == spec.dtype


def _bundled_start(
    checkpoint: str | Path, ckpt: Inventory, target: Inventory
) -> tuple[Inventory, list[SuggestedRule], str] | None:
    """A bundled map to start from: the one after which the most target variables pair,
    if any pairs more than the checkpoint as it is. Layout changes no rename can express
    (a TF1 RNN cell's fused kernel and gate order) are known to those maps."""
    import yaml

    from .checker import mapped_inventory
    from .errors import CkptMigrateError
    from .mapping.schema import BUNDLED_DIR, bundled_maps, load_map

    options = CheckOptions(rekeyed=True)
    best_count = compare(ckpt, target, options).count(Kind.MATCHED)
    best: tuple[str, Inventory] | None = None
    for name, _ in bundled_maps():
        try:
            mapped = mapped_inventory(checkpoint, load_map(name))
        except CkptMigrateError:
            continue  # the map does not apply to this checkpoint
        count = compare(mapped, target, options).count(Kind.MATCHED)
        if count > best_count:
            best_count, best = count, (name, mapped)
    if best is None:
        return None
    name, mapped = best
    document = yaml.safe_load((BUNDLED_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    rules = [_rule(Section.BASE, dict(body)) for body in document["rules"]]
    note = (
        f"starts from the bundled map {name} (its rules come first): with it "
        f"{best_count} target variables pair; see mappings/{name}.yaml for what it assumes"
    )
    return mapped, rules, note


def write_map(suggestion: Suggestion, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the suggested map atomically.

    Args:
        suggestion: what :func:`suggest` returned.
        path: the map file to write.
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        OutputError: the path is a directory, exists (without ``overwrite``), its directory
            is missing, or it cannot be written.
    """
    out = Path(path)
    if out.is_dir():
        raise OutputError("is a directory; give a file name for the map", path=out)
    if not out.parent.is_dir():
        raise OutputError("the directory for the map does not exist", path=out)
    with staged_file(out, overwrite=overwrite) as staged:
        staged.write_text(suggestion.to_yaml(), encoding="utf-8")
    return out


# -- YAML ------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_SECTION_TITLES = {
    Section.BASE: "the bundled map this suggestion starts from (see above)",
    Section.FREE: "drops that free a name a rename takes",
    Section.RENAME: "renames onto the target's names",
    Section.SHAPE: "shape and dtype fixes (on the new names)",
    Section.DROP: "drops: what the target does not restore",
    Section.INIT: "new variables: what the checkpoint lacks",
}


_PLAIN_BLOCK = re.compile(r"[A-Za-z0-9_][^:#'\"{}\[\],]*[^:#'\"{}\[\], ]")


def _scalar(value: Any, flow: bool = False) -> str:
    """YAML for one value: plain where YAML reads it back as the same text, else quoted."""
    import yaml

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v, True) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_scalar(v, True)}" for k, v in value.items()) + "}"
    text = str(value)
    plain = _PLAIN.fullmatch(text) or (not flow and _PLAIN_BLOCK.fullmatch(text))
    if plain and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("'", "''") + "'"


def _yaml_rules(rules: list[SuggestedRule], comments: bool = False) -> str:
    lines = ["version: 1", "rules:"]
    section: Section | None = None
    for rule in rules:
        if comments and rule.section is not section:
            section = rule.section
            lines.append(f"  # -- {_SECTION_TITLES[section]}")
        if comments and rule.uncertain:
            lines.append(f"  # UNCERTAIN: {' '.join(rule.uncertain.split())}")
        items = list(rule.body.items())
        for i, (key, value) in enumerate(items):
            lead = "  - " if i == 0 else "    "
            lines.append(f"{lead}{key}: {_scalar(value)}")
    if not rules:
        lines[-1] = "rules: []"
    return "\n".join(lines) + "\n"


def _render_yaml(suggestion: Suggestion) -> str:
    from .mapping.schema import BUNDLED_DIR

    # The installed copy of the schema: editors with yaml-language-server validate against it.
    schema = (BUNDLED_DIR / "schema.json").as_uri()
    head = [
        f"# yaml-language-server: $schema={schema}",
        f"# Suggested by `ckptmigrate suggest`: {suggestion.checkpoint} -> {suggestion.target}.",
        "# Review before use, the UNCERTAIN rules first.",
    ]
    head += [f"# Note: {n}." for n in suggestion.notes if n.startswith("starts from")]
    if suggestion.predicted is not None:
        head.append(f"# With this map: {suggestion.predicted.headline}.")
        problems = [
            f
            for f in suggestion.predicted.findings
            if f.kind in (Kind.MISSING, Kind.SHAPE_MISMATCH, Kind.DTYPE_MISMATCH)
        ]
        for f in problems[:10]:
            head.append(f"# still {f.kind.label}: {f.name}")
    if suggestion.uncertain:
        head.append(f"# {len(suggestion.uncertain)} rule(s) marked UNCERTAIN.")
    body = _yaml_rules(list(suggestion.rules), comments=True)
    version, rest = body.split("\n", 1)
    description = f"description: {_scalar(suggestion.description)}"
    return "\n".join([*head, version, description, rest])
