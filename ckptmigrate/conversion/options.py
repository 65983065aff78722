"""How a conversion runs (its options) and what it reports (its result)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CkptMigrateError
from ..formats.locate import AnyPath
from ..output_format import OutputFormat
from .sharding import ShardPolicy

if TYPE_CHECKING:
    from ..mapping.plan import Plan, PlannedVariable
    from ..verification import Verification

__all__ = [
    "ConvertOptions",
    "ConvertResult",
    "Counts",
    "OutputFormat",
    "dask_cluster",
    "frozen_params",
    "kind_of",
]


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """Everything but the inputs: built once (by the API or the CLI) and passed down whole."""

    root: str | None = "model"
    """The attribute a TF2 target is restored through (``tf.train.Checkpoint(model=...)``);
    None: the target itself is the root."""
    format: OutputFormat = OutputFormat.CHECKPOINT
    fill_missing_from_target: bool = False
    """Target variables the map does not supply keep the target's own values."""
    strict: bool = False
    """Every rule must match; unmatched checkpoint variables are refused."""
    require_all: bool = False
    """Every checkpoint variable must be matched by a rule."""
    overwrite: bool = False
    """Replace an existing output."""
    copy: bool = False
    """Copy unchanged shards instead of linking them."""
    durable: bool = False
    """fsync every file before publishing."""
    verify: bool = False
    """Have TensorFlow (or Keras) restore the output and compare every value."""
    params: tuple[tuple[str, int], ...] = ()
    """Values for parameters the map declares (``params: {heads: 12}``)."""
    shards: ShardPolicy = field(default_factory=ShardPolicy)
    """How the written tensors are spread over data shards."""
    workers: int | None = None
    """Threads computing values ahead of the writer; None: one per CPU (at most 8)."""
    max_memory: int | None = None
    """Bytes of computed values that may wait for the writer; None: 128 MiB."""
    dask: Any = None
    """Run the conversion on a Dask cluster: ``"local:N"`` (a LocalCluster of N worker
    processes on this machine), a scheduler's address (``"tcp://host:8786"``), or a
    ``distributed.Client``; None: in this process."""

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise CkptMigrateError(f"[[workers]] must be at least 1, got {self.workers}")
        if self.max_memory is not None and self.max_memory < 1:
            raise CkptMigrateError(
                f"[[max_memory]] must be at least one byte, got {self.max_memory}"
            )
        if self.dask is not None:
            _check_dask(self.dask, self.format)
        if self.shards.active and self.format is OutputFormat.KERAS:
            raise CkptMigrateError(
                "a Keras weights file has no data shards ([[max_shard_size]], [[num_shards]] "
                "apply to checkpoints)",
                hint="leave the sharding options out with [[format_keras]].",
            )


def dask_cluster(local: str | None, scheduler: str | None) -> str | None:
    """The ``dask`` option from the command line's two ways to give it (``--dask local:N``,
    ``--scheduler ADDRESS``), at most one.

    Raises:
        CkptMigrateError: both are given, or a scheduler's address is not a URL.
    """
    if local is not None and scheduler is not None:
        raise CkptMigrateError(
            "a local cluster and a scheduler's address both name the cluster ([[dask]]); give one",
            hint="local:N starts one on this machine, tcp://host:8786 uses a running one.",
        )
    if scheduler is not None and "://" not in scheduler:
        raise CkptMigrateError(
            f"{scheduler!r} is not a scheduler's address ([[dask]])",
            hint="write it as tcp://host:8786.",
        )
    return local if local is not None else scheduler


def _check_dask(spec: Any, output_format: OutputFormat) -> None:
    if output_format is not OutputFormat.CHECKPOINT:
        raise CkptMigrateError(
            "only a checkpoint output is written on a Dask cluster ([[dask]])",
            hint="leave [[dask]] out for a Keras, safetensors or PyTorch output.",
        )
    if not isinstance(spec, str):
        return  # a distributed.Client, checked when it is used
    if spec.startswith("local:"):
        count = spec.removeprefix("local:")
        if not (count.isdigit() and int(count) >= 1):
            raise CkptMigrateError(
                f"{spec!r} is not a local cluster ([[dask]])",
                hint="write local:N for N worker processes on this machine, e.g. local:4.",
            )
    elif "://" not in spec:
        raise CkptMigrateError(
            f"{spec!r} is neither local:N nor a scheduler's address ([[dask]])",
            hint="write local:4 for a LocalCluster of 4 processes, or a scheduler's address "
            "such as tcp://host:8786.",
        )


def frozen_params(params: Mapping[str, int] | None) -> tuple[tuple[str, int], ...]:
    """Map parameter values as ConvertOptions holds them (sorted pairs: hashable, ordered)."""
    return tuple(sorted((params or {}).items()))


def kind_of(variable: PlannedVariable) -> str:
    """Which count of a :class:`Counts` writing ``variable`` adds to."""
    if variable.from_target:
        return "from_target"
    if variable.raw_copy:
        return "copied"
    return "initialised" if variable.init is not None else "transformed"


@dataclass
class Counts:
    """How many output variables were written each way."""

    copied: int = 0
    """Copied as stored bytes."""
    transformed: int = 0
    initialised: int = 0
    from_target: int = 0
    """The target's own values (``fill_missing_from_target``, target metadata)."""

    def add(self, variable: PlannedVariable) -> None:
        """Count ``variable`` as written."""
        kind = kind_of(variable)
        setattr(self, kind, getattr(self, kind) + 1)

    def to_dict(self) -> dict[str, int]:
        """The counts by name, as the provenance record and ``--json`` show them."""
        return {
            "copied": self.copied,
            "transformed": self.transformed,
            "initialised": self.initialised,
            "from_target": self.from_target,
        }


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`ckptmigrate.convert` wrote."""

    prefix: AnyPath
    """The output checkpoint's prefix (a RemotePath for a URL), or the Keras file."""
    plan: Plan
    copied: int
    transformed: int
    initialised: int
    linked_shards: tuple[str, ...] = ()
    """How each wholly unchanged source shard was carried over (reflink, hard link, copy)."""
    verification: Verification | None = None
    """The restore's verdict, with ``verify=True``."""
    from_target: int = 0

    @classmethod
    def of(
        cls,
        prefix: AnyPath,
        the_plan: Plan,
        counts: Counts,
        *,
        linked_shards: tuple[str, ...] = (),
        verification: Verification | None = None,
    ) -> ConvertResult:
        """A result from the counts a writer kept."""
        return cls(
            prefix,
            the_plan,
            copied=counts.copied,
            transformed=counts.transformed,
            initialised=counts.initialised,
            linked_shards=linked_shards,
            verification=verification,
            from_target=counts.from_target,
        )

    def __repr__(self) -> str:
        counts = (
            f"{self.copied} copied, {self.transformed} transformed, "
            f"{self.initialised} initialised, "
            + (f"{self.from_target} from the target, " if self.from_target else "")
            + f"{len(self.plan.dropped)} dropped"
        )
        verified = self.verification
        verdict = "" if verified is None else f"; verify {'ok' if verified.ok else 'FAILED'}"
        return f"<ConvertResult {self.prefix}: {counts}{verdict}>"

    def to_dict(self) -> dict[str, Any]:
        """The plan's JSON object plus what was written (``convert --json``)."""
        return {
            **self.plan.to_dict(),
            "output": str(self.prefix),
            "copied": self.copied,
            "transformed": self.transformed,
            "initialised": self.initialised,
            "from_target": self.from_target,
            "shards_carried_over": list(self.linked_shards),
            "verification": None if self.verification is None else self.verification.to_dict(),
        }
