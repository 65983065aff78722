"""Which pairs to make: an optimal assignment on the scores (Hungarian algorithm; greedy
above a size), a second round that favours consistent scope moves, and the doubts that
mark a choice UNCERTAIN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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
)

if TYPE_CHECKING:
    pass


GREEDY_ABOVE = 400  # more unpaired variables than this on a side: greedy, not optimal


def hungarian(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """Rows and columns paired to maximise the total weight (weight 0: no edge).

    The classic O(n^2 m) shortest augmenting path method with potentials."""
    n = len(weights)
    m = len(weights[0]) if n else 0
    if n == 0 or m == 0:
        return []
    if n > m:
        return [(i, j) for j, i in hungarian([list(col) for col in zip(*weights, strict=True)])]
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


def _assign(scores: dict[tuple[int, int], Score], shape: tuple[int, int]) -> list[tuple[int, int]]:
    weights = [
        [
            scores[i, j].total - MIN_SCORE + 1e-9 if (i, j) in scores else 0.0
            for j in range(shape[1])
        ]
        for i in range(shape[0])
    ]
    return (greedy if max(shape) > GREEDY_ABOVE else hungarian)(weights)


def assign_pairs(sources: list[Var], targets: list[Var]) -> list[Pair]:
    """The best assignment of unpaired sources to unpaired targets, uncertainty flagged."""
    scores: dict[tuple[int, int], Score] = {}
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            found = score_pair(s, t)
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
            scores[i, j] = Score(round(total, 6), found.name, found.shape, found.scope)
        chosen = _assign(scores, shape)
    pairs = []
    own_s = {i: scores[i, j].total for i, j in chosen}
    own_t = {j: scores[i, j].total for i, j in chosen}
    for i, j in sorted(chosen, key=lambda ij: natural_key(targets[ij[1]].name)):
        best = scores[i, j]
        why = _doubt((i, j), scores, sources, targets, (own_s, own_t))
        pairs.append(Pair(sources[i].name, targets[j].name, min(best.total, 1.0), why))
    return pairs


def _doubt(
    pair: tuple[int, int],
    scores: dict[tuple[int, int], Score],
    sources: list[Var],
    targets: list[Var],
    owns: tuple[dict[int, float], dict[int, float]],
) -> str | None:
    i, j = pair
    chosen = scores[i, j]

    def rival(other: Score | None, own: float | None) -> bool:
        # Close in total, or as similar by name and shape, so only position decided; and
        # not much happier with its own pair (else it is no real alternative).
        if other is None or (own is not None and other.total < own - MARGIN):
            return False
        same_fit = other.shape == chosen.shape and other.name >= chosen.name - SAME_NAME_SCORE
        return other.total >= chosen.total - MARGIN or same_fit

    own_s, own_t = owns
    rivals = [
        f"{sources[k].name!r} {shape_text(sources[k].spec.shape)} fits {targets[j].name!r} as "
        f"well (score {scores[k, j].total:.2f} vs {chosen.total:.2f})"
        for k in range(len(sources))
        if k != i and rival(scores.get((k, j)), own_s.get(k))
    ]
    rivals += [
        f"{targets[k].name!r} {shape_text(targets[k].spec.shape)} fits {sources[i].name!r} as "
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
