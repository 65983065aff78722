"""Which pairs to make: candidates (every shape-compatible pair of small pools; for large
ones the pairs that share rare name words or sit at the same place among variables of one
shape), an optimal assignment on their scores, a second round that favours variables
moving with their layer and scope, and the doubts that mark a choice UNCERTAIN."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

from .model import Pair
from .scoring import (
    MARGIN,
    MIN_SCORE,
    SAME_NAME_SCORE,
    SCOPE_BONUS,
    SIMILAR_SCOPES,
    Score,
    Var,
    natural_key,
    score_pair,
    shape_text,
    words_of,
)

ALL_PAIRS_UP_TO = 60_000  # sources x targets up to this: every pair is a candidate
NAME_CANDIDATES = 12  # else, per variable: this many sharing the rarest words
PLACE_CANDIDATES = 4  # and this many of its very shape nearest its place
COMMON_TOKEN = 1000  # a word more variables than this hold finds no candidates

Edges = dict[tuple[int, int], Score]


def hungarian(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """Rows and columns paired to maximise the total weight (weight 0: no edge)."""
    edges = {(i, j): w for i, row in enumerate(weights) for j, w in enumerate(row) if w > 0}
    return best_assignment(edges, len(weights), len(weights[0]) if weights else 0)


def best_assignment(edges: dict[tuple[int, int], float], n: int, m: int) -> list[tuple[int, int]]:
    """The edges (positive weights) of a maximum-weight matching of n rows and m columns.

    SciPy's sparse LAPJV (``min_weight_full_bipartite_matching``) on the graph made full
    by a dummy partner for every row and column: a real edge costs ``2 top - weight``, a
    row or column left alone ``top`` (so the number of pairs made changes nothing), and
    the cheapest full matching is the heaviest matching of the real edges, in time near
    linear in the edges for these sparse graphs (the Python Hungarian algorithm it
    replaces was cubic: 753 s for 619 a side)."""
    if not edges:
        return []
    import numpy as np
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    keys = sorted(edges)
    top = max(edges.values()) + 1.0
    rows_ = np.array([i for i, _ in keys], dtype=np.int64)
    cols_ = np.array([j for _, j in keys], dtype=np.int64)
    cost = np.array([2 * top - edges[k] for k in keys], dtype=np.float64)
    # rows: the n real rows, then one dummy per column; columns: the m real columns, then
    # one dummy per row. Dummy row m_j meets dummy column n_i wherever (i, j) is an edge.
    r = np.concatenate([rows_, np.arange(n), n + np.arange(m), n + cols_])
    c = np.concatenate([cols_, m + np.arange(n), np.arange(m), m + rows_])
    w = np.concatenate([cost, np.full(n, top), np.full(m, top), np.full(len(keys), 1e-9)])
    graph = csr_array((w, (r, c)), shape=(n + m, m + n))
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    return sorted(
        (int(i), int(j)) for i, j in zip(row_ind, col_ind, strict=True) if i < n and j < m
    )


def greedy(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
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


def _layer(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _tokens(var: Var) -> set[str]:
    """What a cheap first look pairs by: words, their first three letters (abbreviations)
    and the numbers of the layer path (or that it has none)."""
    out: set[str] = set()
    for text, features in zip(var.texts, var.features, strict=True):
        for word in words_of(text):
            out.add(word)
            if len(word) > 3:
                out.add(word[:3] + "~")
        out.update(f"#{n}" for n in features.numbers)
        if not features.numbers:
            out.add("#")  # no number: a head or an embedding, not one of many layers
    return out


def _by_words(mine: list[set[str]], theirs: list[set[str]]) -> set[tuple[int, int]]:
    """(mine, theirs) index pairs: for each of mine, the ones of theirs sharing its rarest
    words (rare on their side), ``NAME_CANDIDATES`` of them, the most shared first."""
    post: dict[str, list[int]] = defaultdict(list)
    for b, tokens in enumerate(theirs):
        for token in tokens:
            post[token].append(b)
    out: set[tuple[int, int]] = set()
    for a, tokens in enumerate(mine):
        ranked = sorted(
            (len(post[t]), t) for t in tokens if t in post and len(post[t]) <= COMMON_TOKEN
        )
        found: set[int] = set()
        for _, token in ranked:
            if len(found) >= NAME_CANDIDATES:
                break
            found.update(post[token])

        def shared(b: int, tokens: set[str] = tokens) -> float:
            return sum(1.0 / len(post[t]) for t in tokens & theirs[b])

        best = sorted(found, key=lambda b: (-shared(b), b))[:NAME_CANDIDATES]
        out.update((a, b) for b in best)
    return out


def _candidates(sources: list[Var], targets: list[Var]) -> set[tuple[int, int]]:
    """The pairs worth scoring: all of them for small pools; for large ones, per variable
    the ones sharing its rarest words (an inverted index; a word more than
    ``COMMON_TOKEN`` variables of the other side hold finds none) and the nearest by place
    among those of its dtype and very shape."""
    if len(sources) * len(targets) <= ALL_PAIRS_UP_TO:
        return {(i, j) for i in range(len(sources)) for j in range(len(targets))}
    s_tokens = [_tokens(s) for s in sources]
    t_tokens = [_tokens(t) for t in targets]
    out = _by_words(s_tokens, t_tokens)
    out.update((i, j) for j, i in _by_words(t_tokens, s_tokens))
    # By place: variables of one dtype and shape, in layer order on each side.
    buckets: dict[tuple[str, tuple[int, ...]], list[tuple[float, int]]] = defaultdict(list)
    for j, t in enumerate(targets):
        buckets[t.spec.dtype, t.spec.shape].append((t.position, j))
    for bucket in buckets.values():
        bucket.sort()
    for i, s in enumerate(sources):
        bucket = buckets.get((s.spec.dtype, s.spec.shape), [])
        at = bisect.bisect_left(bucket, (s.position, -1))
        near = bucket[max(0, at - PLACE_CANDIDATES) : at + PLACE_CANDIDATES]
        near.sort(key=lambda e: (abs(e[0] - s.position), e[1]))
        out.update((i, j) for _, j in near[:PLACE_CANDIDATES])
    return out


def _assign(scores: Edges, shape: tuple[int, int]) -> list[tuple[int, int]]:
    edges = {k: s.total - MIN_SCORE + 1e-9 for k, s in scores.items() if s.total >= MIN_SCORE}
    return best_assignment(edges, *shape)


def assign_pairs(sources: list[Var], targets: list[Var]) -> list[Pair]:
    """The best assignment of unpaired sources to unpaired targets, uncertainty flagged."""
    scores: Edges = {}
    floor = MIN_SCORE - SCOPE_BONUS  # the second round may lift a pair this far
    for i, j in _candidates(sources, targets):
        found = score_pair(sources[i], targets[j])
        if found is not None and found.total >= floor:
            scores[i, j] = found
    shape = (len(sources), len(targets))
    chosen = _assign(scores, shape)
    scores = _second_round(scores, chosen, sources, targets)
    chosen = _assign(scores, shape)
    rows: dict[int, list[int]] = defaultdict(list)
    cols: dict[int, list[int]] = defaultdict(list)
    for i, j in scores:
        rows[i].append(j)
        cols[j].append(i)
    pairs = []
    own_s = {i: scores[i, j].total for i, j in chosen}
    own_t = {j: scores[i, j].total for i, j in chosen}
    for i, j in sorted(chosen, key=lambda ij: natural_key(targets[ij[1]].name)):
        best = scores[i, j]
        why = _doubt(
            (i, j),
            scores,
            adjacency=(rows, cols),
            sources=sources,
            targets=targets,
            owns=(own_s, own_t),
        )
        pairs.append(Pair(sources[i].name, targets[j].name, min(best.total, 1.0), why))
    return pairs


def _second_round(
    scores: Edges, chosen: list[tuple[int, int]], sources: list[Var], targets: list[Var]
) -> Edges:
    """Variables move with their layer and scope: a pair that moves its layer where the
    first round moved the layer's other variables, all to one place (a kernel's bias
    follows it), or its scope the way two or more first-round pairs do (``encoder/...``
    -> ``enc/...``), gains ``SCOPE_BONUS``; one that moves such a layer or scope anywhere
    else loses it. (A layer whose variables went to several places, as BERT's
    ``embeddings`` to three Keras layers, says nothing.)"""
    support: dict[tuple[str, str], int] = defaultdict(int)
    layers: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for i, j in chosen:
        move = _move(sources[i].name, targets[j].name)
        if move is not None:
            support[move] += 1
        layers[_layer(sources[i].name)][_layer(targets[j].name)] += 1
    agreed = {move for move, n in support.items() if n >= 2}
    moved = {old for old, _ in agreed}
    # source layer -> (its one destination, how many went there)
    layer_to = {old: next(iter(new.items())) for old, new in layers.items() if len(new) == 1}
    first = dict(chosen)
    out: Edges = {}
    for (i, j), found in scores.items():
        s, t = sources[i].name, targets[j].name
        move = _move(s, t)
        went = layer_to.get(_layer(s))
        # how many of the layer's other variables the first round moved there
        others = 0 if went is None else went[1] - (i in first)
        if move in agreed or (others >= 1 and went is not None and went[0] == _layer(t)):
            total = found.total + SCOPE_BONUS
        elif (move is not None and move[0] in moved) or (
            others >= 1 and went is not None and went[0] != _layer(t)
        ):
            total = found.total - SCOPE_BONUS  # its layer or scope moves elsewhere
        else:
            total = found.total
        out[i, j] = Score(round(total, 6), found.name, found.shape, found.scope)
    return out


def _doubt(
    pair: tuple[int, int],
    scores: Edges,
    *,
    adjacency: tuple[dict[int, list[int]], dict[int, list[int]]],
    sources: list[Var],
    targets: list[Var],
    owns: tuple[dict[int, float], dict[int, float]],
) -> str | None:
    i, j = pair
    chosen = scores[i, j]
    rows, cols = adjacency

    def rival(other: Score | None, own: float | None) -> bool:
        # Close in total, or as similar by name and shape, so only position decided; and
        # not much happier with its own pair (else it is no real alternative).
        if other is None or other.total < MIN_SCORE:
            return False
        if own is not None and other.total < own - MARGIN:
            return False
        same_fit = other.shape == chosen.shape and other.name >= chosen.name - SAME_NAME_SCORE
        return other.total >= chosen.total - MARGIN or same_fit

    own_s, own_t = owns
    rivals = [
        f"{sources[k].name!r} {shape_text(sources[k].spec.shape)} fits {targets[j].name!r} as "
        f"well (score {scores[k, j].total:.2f} vs {chosen.total:.2f})"
        for k in sorted(cols[j])
        if k != i and rival(scores.get((k, j)), own_s.get(k))
    ]
    rivals += [
        f"{targets[k].name!r} {shape_text(targets[k].spec.shape)} fits {sources[i].name!r} as "
        f"well (score {scores[i, k].total:.2f} vs {chosen.total:.2f})"
        for k in sorted(rows[i])
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
