"""``suggest``: write the map that would make a checkpoint fit a target model.

The package: ``model`` (the Suggestion and its rules), ``scoring`` (how alike two variables
are), ``assign`` (which pairs to make), ``fixes`` (shape fixes and fills), ``rules`` (pairs to
rules), ``synthesis`` (``suggest`` itself) and ``yaml_out`` (the map as YAML).

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
   ``zeros``, scales ``ones``; function-preserving by default: a weight matrix's new
   input rows, fed by the new units of a widened layer before it, are padded with
   zeros after its new columns, so the grown model computes what the trained one did;
   ``preserve_function=False`` pads them at random too; an optimizer slot that the
   target keeps is padded by its own rule first, with what the optimizer starts that
   slot at: the target's own start when it has one constant (a ``.meta`` graph's
   initialiser), else the optimizer's default for the slot's kind (Adagrad/Ftrl
   accumulators 0.1, Ftrl's linear and Adam's moments 0; ``fills.slot_kind``), so no
   accumulator gets zeros or random values), drops
   (a role the target has none of is dropped by ``role:``; unpaired model variables and
   leftover slots by name), inits (new optimizer slots start the same way).
5. The map is planned against the checkpoint and compared with the target (rekeyed): what
   is still unused is dropped by name (or, for an optimizer slot the target keeps under
   a longer or shorter scope, renamed there), what is still missing initialised, and
   the final prediction is kept as ``Suggestion.predicted``.
"""

from __future__ import annotations

from .model import Pair, Section, SuggestedRule, Suggestion
from .synthesis import suggest, write_map

__all__ = ["Pair", "Section", "SuggestedRule", "Suggestion", "suggest", "write_map"]
