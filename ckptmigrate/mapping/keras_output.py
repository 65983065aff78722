"""``convert --format keras``: the converted values as a Keras 3 weights file.

Keras 3 cannot restore TensorFlow checkpoints, so a tf-keras ``save_weights('x.ckpt')``
or TF1 checkpoint reaches a Keras 3 model as a ``.weights.h5`` (or a whole ``.keras``
archive). The target model's own layout, found by Keras, says which dataset each weight
goes to; the map's outputs pair with the target's variables by their paths, and each
value is computed and written one at a time.
"""

from __future__ import annotations

import contextlib
import functools
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
from ..targets.model import open_keras_target
from .convert import (
    ConvertResult,
    PlanOptions,
    _expected,
    _Layout,
    _Sources,
    kind_of,
    planned_conversion,
)
from .plan import PlannedVariable
from .schema import Map


def convert_to_keras(
    checkpoint: str | Path,
    mapping: Map,
    output: Path,
    target: Any,
    *,
    fill_missing_from_target: bool,
    force: bool,
    strict: bool,
    require_all: bool,
    verify: bool,
    on_variable: Any,
    durable: bool = False,
) -> ConvertResult:
    if target is None:
        raise OutputError(
            "--format keras needs --target: the Keras 3 model whose weights file to write",
            path=output,
            hint="pass a .keras file or a builder module:function returning the model.",
        )
    suffix = output.name.lower()
    if not suffix.endswith((".weights.h5", ".keras")):
        raise OutputError(
            "a Keras 3 output must be named *.weights.h5 (for model.load_weights) or "
            "*.keras (a whole model for keras.saving.load_model)",
            path=output,
        )
    options = PlanOptions(strict, require_all, fill_missing_from_target, force)
    with planned_conversion(checkpoint, mapping, open_keras_target(target), output, options) as (
        ckpt,
        target_model,
        the_plan,
    ):
        planned = {v.name: v for v in the_plan.outputs}
        counts = {"copied": 0, "transformed": 0, "initialised": 0, "from_target": 0}
        with contextlib.ExitStack() as stack:
            sources = _Sources(ckpt, stack, _Layout())
            value_of = functools.partial(_keras_value, sources)

            def values(entry: LayoutEntry) -> Any:
                variable = planned[entry.h5_path]
                kind = kind_of(variable)
                counts[kind] += 1
                if on_variable is not None:
                    on_variable(variable)
                return value_of(variable)

            layout = target_model.keras
            assert layout is not None
            if suffix.endswith(".keras"):
                # Staged beside the output: the weights may not fit the system's /tmp.
                try:
                    output.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise OutputError.from_os_error(e, output) from e
                folder = Path(
                    stack.enter_context(
                        tempfile.TemporaryDirectory(prefix=".ckptmigrate-", dir=output.parent)
                    )
                )
                weights = write_weights_h5(layout, values, folder / "model.weights.h5")
                write_keras_archive(
                    _archive_template(target, target_model.live, folder),
                    weights,
                    output,
                    overwrite=force,
                    durable=durable,
                )
            else:
                write_weights_h5(layout, values, output, overwrite=force, durable=durable)
            verification = None
            if verify:
                from ..verification import KERAS
                from ..verification import verify as run_verify

                expected = {name: functools.partial(value_of, v) for name, v in planned.items()}
                live = target_model.live if target_model.rebuild is None else None
                verification = run_verify(
                    output, live, target_model.rebuild, None, expected, format=KERAS
                )
    return ConvertResult(
        output,
        the_plan,
        copied=counts["copied"],
        transformed=counts["transformed"],
        initialised=counts["initialised"],
        verification=verification,
        from_target=counts["from_target"],
    )


def _keras_value(sources: _Sources, variable: PlannedVariable) -> Any:
    if variable.from_target:  # the target's own value, from Keras' template file
        import h5py

        assert variable.origin is not None
        with h5py.File(variable.origin, "r") as template:
            return read_dataset(template[variable.name])
    return _expected(sources, variable)


def _archive_template(target: Any, model: Any, folder: Path) -> Path:
    """The .keras archive whose config the output shares: the target's own file, or the
    built model saved by Keras."""
    if isinstance(target, str | Path) and str(target).lower().endswith(".keras"):
        return Path(target)
    archive = folder / "target.keras"
    model.save(str(archive))
    return archive
