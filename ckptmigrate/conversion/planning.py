"""From the inputs a caller gives (map, target, options) to a plan: shared by the process
that runs a conversion and by each Dask worker, which re-plans from the same inputs rather
than receiving the plan (whose rules hold compiled patterns)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint
from ..errors import CkptMigrateError
from ..mapping.plan import Plan, plan_conversion
from ..mapping.rules import NO_MAP, Map
from ..mapping.schema import load_map
from .options import ConvertOptions

__all__ = ["as_map", "plan_for", "target_model"]


def as_map(mapping: Map | str | Path | None, target: Any, options: ConvertOptions) -> Map:
    """The map to plan with: loaded from a file or a bundled name, or the empty map when
    only a target decides the output."""
    if mapping is None and target is None:
        raise CkptMigrateError(
            "a conversion needs a map, a target, or both", hint="pass [[map]] and/or [[target]]."
        )
    if mapping is None:
        return NO_MAP
    if isinstance(mapping, Map):
        return mapping
    return load_map(mapping, dict(options.params))


def target_model(
    target: Any, options: ConvertOptions, ckpt: Checkpoint
) -> contextlib.AbstractContextManager[Any]:
    """The opened conversion target (``targets.model.TargetModel``) for converting ``ckpt``,
    or None without one."""
    if target is None:
        return contextlib.nullcontext(None)
    from ..targets.model import open_conversion_target  # TensorFlow may be needed: only then

    return open_conversion_target(
        target, root=options.root, format=options.format, keras_weights=is_keras3_file(ckpt)
    )


def is_keras3_file(ckpt: Checkpoint) -> bool:
    """A Keras 3 weights file (``.weights.h5``, ``.keras``): its keys are the dataset paths
    a Keras 3 target's own layout names, so the target is opened with them as aliases."""
    from ..formats.keras_h5 import KerasH5Reader

    return isinstance(ckpt.reader, KerasH5Reader) and not ckpt.reader.listing.legacy


def plan_for(ckpt: Checkpoint, mapping: Map, opened_target: Any, options: ConvertOptions) -> Plan:
    """The plan for ``ckpt`` under ``mapping``, retargeted to ``opened_target`` if any."""
    the_plan = plan_conversion(
        ckpt,
        mapping,
        strict=options.strict,
        require_all=options.require_all,
        keep_object_graph=opened_target is None,
    )
    if opened_target is None:
        if options.fill_missing_from_target:
            raise CkptMigrateError("[[fill_missing_from_target]] needs [[target]]")
        return the_plan
    from ..mapping.retarget import outputs_inventory, retarget
    from ..targets.checkpoint import inventory_of

    mapped = outputs_inventory(the_plan, inventory_of(ckpt))
    return retarget(
        the_plan,
        mapped,
        opened_target,
        fill_missing_from_target=options.fill_missing_from_target,
        strict=options.strict,
    )[0]
