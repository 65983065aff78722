"""A plan written as a Keras 3 weights file (``.weights.h5``) or ``.keras`` archive.

Keras 3 cannot restore TensorFlow checkpoints, so a tf-keras ``save_weights('x.ckpt')`` or
TF1 checkpoint reaches a Keras 3 model as a ``.weights.h5`` (or a whole ``.keras`` archive).
The target model's own layout, found by Keras, says which dataset each weight goes to; the
plan's outputs are named by those dataset paths, and each value is computed and written one
at a time.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..formats.keras_weights import (
    LayoutEntry,
    read_dataset,
    write_keras_archive,
    write_weights_h5,
)
from ..mapping.plan import PlannedVariable
from .job import Job
from .values import Sources, stored_value

__all__ = ["check_keras_output", "keras_value", "write_keras"]

_SUFFIXES = (".weights.h5", ".keras")


def check_keras_output(output: Path, target: Any) -> None:
    """Refuse, before any work, a Keras output without a target model or with a name Keras
    will not load.

    Raises:
        OutputError: no target, or a name that is neither ``*.weights.h5`` nor ``*.keras``.
    """
    if target is None:
        raise OutputError(
            "a Keras output needs a target: the Keras 3 model whose weights file to write",
            path=output,
            hint="pass a .keras file or a builder module:function returning the model.",
        )
    if not output.name.lower().endswith(_SUFFIXES):
        raise OutputError(
            "a Keras 3 output must be named *.weights.h5 (for model.load_weights) or "
            "*.keras (a whole model for keras.saving.load_model)",
            path=output,
        )


def keras_value(sources: Sources, variable: PlannedVariable) -> Any:
    """What a Keras output holds for ``variable``: the target's own value from Keras'
    template file (``fill_missing_from_target``), else the plan's value."""
    if variable.from_target:
        import h5py

        assert variable.origin is not None
        with h5py.File(variable.origin, "r") as template:
            return read_dataset(template[variable.name])
    return stored_value(sources, variable)


def write_keras(job: Job, output: Path, stack: contextlib.ExitStack) -> None:
    """Write the plan's outputs into a copy of the target model's weights file (or a whole
    ``.keras`` archive for an output so named), published atomically."""
    planned = {v.name: v for v in job.plan.outputs}

    def values(entry: LayoutEntry) -> Any:
        variable = planned[entry.h5_path]
        job.written(variable)
        return keras_value(job.sources, variable)

    layout = job.target_model.keras
    assert layout is not None
    options = job.options
    if not output.name.lower().endswith(".keras"):
        write_weights_h5(
            layout, values, output, overwrite=options.overwrite, durable=options.durable
        )
        return
    # Staged beside the output: the weights may not fit the system's /tmp.
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError.from_os_error(e, output) from e
    folder = Path(
        stack.enter_context(tempfile.TemporaryDirectory(prefix=".ckptmigrate-", dir=output.parent))
    )
    weights = write_weights_h5(layout, values, folder / "model.weights.h5")
    write_keras_archive(
        _archive_template(job.target, job.target_model.live, folder),
        weights,
        output,
        overwrite=options.overwrite,
        durable=options.durable,
    )


def _archive_template(target: Any, model: Any, folder: Path) -> Path:
    """The .keras archive whose config the output shares: the target's own file, or the
    built model saved by Keras."""
    if isinstance(target, str | Path) and str(target).lower().endswith(".keras"):
        return Path(target)
    archive = folder / "target.keras"
    model.save(str(archive))
    return archive
