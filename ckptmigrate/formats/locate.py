"""Turn whatever path a user typed into a checkpoint prefix, or explain precisely why not.

People pass directories, prefixes, `.index` or `.data-*` files, the `checkpoint` state file,
`.meta` graphs, Keras files and SavedModels. Anything that names one checkpoint without
ambiguity is resolved (and the resolution is recorded as a note); anything else is an error
that says what the path is and what to pass instead.
"""

from __future__ import annotations

import difflib
import errno
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from ..errors import (
    CheckpointNotFoundError,
    CkptMigrateError,
    CorruptCheckpointError,
    OutputError,
    UnsupportedCheckpointError,
)
from .checkpoint_state import (
    MAX_STATE_BYTES,
    STATE_FILENAME,
    StateFileError,
    looks_like_state_file,
    parse_state,
    resolve_state_path,
)
from .remote import RemotePath, as_path, is_url
from .table import FOOTER_SIZE, has_table_magic

Format = Literal["v2", "v1", "safetensors", "keras_h5", "torch"]
# Every rule below works on either: RemotePath speaks the part of pathlib used here.
AnyPath = Path | RemotePath

INDEX_SUFFIX = ".index"
SAFETENSORS_SUFFIX = ".safetensors"
SAFETENSORS_INDEX_SUFFIX = ".safetensors.index.json"
_DATA_SUFFIX = re.compile(r"\.data-(\d{5})-of-(\d{5})$")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
# torch.save's legacy (pre-1.6) format: a bare pickle starting with a pickled magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@dataclass(frozen=True, slots=True)
class CheckpointLocation:
    prefix: AnyPath
    format: Format
    given: AnyPath
    notes: tuple[str, ...] = ()
    # What a user should see before anything is written (a conversion shows them); each is
    # among the notes too.
    warnings: tuple[str, ...] = ()

    @property
    def is_remote(self) -> bool:
        return isinstance(self.prefix, RemotePath)


@overload
def index_path(prefix: Path) -> Path: ...
@overload
def index_path(prefix: RemotePath) -> RemotePath: ...
@overload
def index_path(prefix: AnyPath) -> AnyPath: ...
def index_path(prefix: AnyPath) -> AnyPath:
    return prefix.with_name(prefix.name + INDEX_SUFFIX)


@overload
def data_path(prefix: Path, shard: int, num_shards: int) -> Path: ...
@overload
def data_path(prefix: RemotePath, shard: int, num_shards: int) -> RemotePath: ...
@overload
def data_path(prefix: AnyPath, shard: int, num_shards: int) -> AnyPath: ...
def data_path(prefix: AnyPath, shard: int, num_shards: int) -> AnyPath:
    return prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{num_shards:05d}")


def _read_range(path: AnyPath, start: int, end: int) -> bytes:
    """Bytes [start, end) of a file: a ranged request for a remote one, not a download."""
    if isinstance(path, RemotePath):
        return path.read_range(start, end)
    with path.open("rb") as f:
        f.seek(start)
        return f.read(end - start)


def _is_v1_file(path: AnyPath) -> bool:
    try:
        size = path.stat().st_size
        if size < FOOTER_SIZE or not path.is_file():
            return False
        return has_table_magic(_read_range(path, size - 8, size))
    except OSError:
        return False


def _existing_format(prefix: AnyPath) -> Format | None:
    try:
        if index_path(prefix).is_file():
            return "v2"
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        return None  # a name no file can have (a state file's path, a typo)
    if _is_v1_file(prefix):
        return "v1"
    return None


def _prefixes_in(directory: AnyPath) -> list[str]:
    try:
        return sorted(p.name[: -len(INDEX_SUFFIX)] for p in directory.glob("*" + INDEX_SUFFIX))
    except OSError:
        return []


def _list_for_hint(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _recorded_target(directory: AnyPath, recorded: str) -> AnyPath:
    """Where the state file's path points. In a remote directory a recorded URL is followed;
    a local absolute path (TF saving to local disk before the upload) is not looked up on
    this machine: the same name beside the state file is what was uploaded."""
    if isinstance(directory, Path):
        return resolve_state_path(directory, recorded)
    if is_url(recorded):
        return as_path(recorded)
    if Path(recorded).is_absolute():
        return directory / Path(recorded).name
    return directory / recorded


def _show(name: str, limit: int = 200) -> str:
    """A recorded path as a message shows it: control characters escaped, not pages long."""
    shown = name if name.isprintable() else repr(name)
    return shown if len(shown) <= limit else f"{shown[: limit - 3]}..."


def _from_state_file(state: AnyPath, given: AnyPath) -> CheckpointLocation:
    directory = state.parent
    try:
        # At most one byte more than a state file may hold: parse_state refuses it.
        data = _read_range(state, 0, MAX_STATE_BYTES + 1)
    except OSError as e:
        raise CheckpointNotFoundError(
            f"cannot read the checkpoint state file: {e}", path=str(state)
        ) from e
    try:
        parsed = parse_state(data)
    except StateFileError as e:
        present = _prefixes_in(directory)
        raise CorruptCheckpointError(
            f"this checkpoint state file is unreadable: {e}",
            path=str(state),
            hint=f"checkpoints present here: {_list_for_hint(present)}; pass one of them as a "
            "prefix, or let TensorFlow rewrite the state file with its next save."
            if present
            else "pass the checkpoint prefix (e.g. model.ckpt-1000) instead.",
        ) from e
    if parsed is None:
        raise CheckpointNotFoundError(
            "this checkpoint state file has no model_checkpoint_path line",
            path=str(state),
            hint="pass the checkpoint prefix (e.g. model.ckpt-1000) instead of the state file.",
        )
    recorded = parsed.latest
    assert recorded is not None
    target: AnyPath | None = None
    fmt: Format | None = None
    # TensorFlow appends ".index" to the recorded string; a path ending in "/", "." or ".."
    # would lose its last part to pathlib's normalisation instead: it names no prefix.
    names_prefix = recorded.rsplit("/", 1)[-1] not in ("", ".", "..")
    try:
        if names_prefix:
            target = _recorded_target(directory, recorded)
            fmt = _existing_format(target)
    except (CkptMigrateError, OSError, ValueError) as e:
        if isinstance(directory, Path) and isinstance(e, PermissionError):
            raise
        # A URL of another store (or one this machine can't reach) is as stale as a
        # path from another machine: the checkpoint beside the state file is looked for.
        # So is a path no file can have (a name longer than the filesystem allows).
        target, fmt = None, None
    notes = [f"followed the checkpoint state file {state} to {target or recorded}"]
    warnings: list[str] = []
    if target is not None and not isinstance(directory, Path) and Path(recorded).is_absolute():
        notes.append(
            f"the state file records this machine's path {recorded!r}; using {target} "
            "found beside it"
        )
    if isinstance(state, Path) and isinstance(target, Path):
        outside = _outside_warning(state, state.parent, recorded, target)
        if outside is not None:
            notes.append(outside)
            warnings.append(outside)
    if target is None or fmt is None:
        # Checkpoints get moved; the state file then holds a stale absolute path or one
        # relative to another working directory. A prefix of the same name beside the
        # state file is what the user means.
        name = Path(recorded).name if names_prefix else ""
        beside = directory / name
        beside_fmt = _existing_format(beside) if name else None
        if beside_fmt is not None and beside != target:
            note = (
                f"the state file {state} records {recorded!r}, which is missing; "
                f"using {beside} found beside it"
            )
            return CheckpointLocation(beside, beside_fmt, given, (note,))
        present = _prefixes_in(directory)
        hint = (
            f"checkpoints present here: {_list_for_hint(present)}; pass one of them as a prefix."
            if present
            else "no checkpoint files are in that directory; was it copied without them?"
        )
        looked_for = index_path(target or beside) if name or target else None
        raise CheckpointNotFoundError(
            f"this is the checkpoint state file; it points at {_show(recorded)}, which is "
            "missing" + (f" (looked for {_show(str(looked_for))})" if looked_for else ""),
            path=str(state),
            hint=hint,
        )
    return CheckpointLocation(target, fmt, given, tuple(notes), tuple(warnings))


def _outside_warning(state: Path, directory: Path, recorded: str, target: Path) -> str | None:
    """Say so when a state file's absolute path leads out of its directory.

    A directory copied with a TF1 Saver's state file still names the original's absolute
    path; TensorFlow's latest_checkpoint follows it while it exists (and finds nothing once
    it is gone), so the original is what is read, and what a conversion links its unchanged
    shards from, though a checkpoint of the same name sits beside the state file.
    """
    if not Path(recorded).is_absolute():
        return None
    try:
        if target.resolve().parent == directory.resolve():
            return None
    except OSError:
        return None
    beside = directory / Path(recorded).name
    copy = (
        f", not {beside} beside it; pass {beside} to read that one"
        if (_existing_format(beside) is not None)
        else ""
    )
    return (
        f"the state file {state} records the absolute path {_show(recorded)}, outside "
        f"{directory}: that checkpoint is read, as TensorFlow's latest_checkpoint reads it"
        f"{copy}"
    )


def _from_directory(directory: AnyPath, given: AnyPath) -> CheckpointLocation:
    state = directory / STATE_FILENAME
    if state.is_file():
        return _from_state_file(state, given)
    saved_model_vars = directory / "variables" / "variables"
    if index_path(saved_model_vars).is_file():
        note = f"{directory} is a SavedModel; reading its variables checkpoint"
        return CheckpointLocation(saved_model_vars, "v2", given, (note,))
    prefixes = _prefixes_in(directory)
    if len(prefixes) == 1:
        prefix = directory / prefixes[0]
        note = f"{directory} has no state file; using its only checkpoint {prefixes[0]}"
        return CheckpointLocation(prefix, "v2", given, (note,))
    if prefixes:
        raise CheckpointNotFoundError(
            f"this directory holds {len(prefixes)} checkpoints and no `checkpoint` state file "
            "saying which is the latest",
            path=str(directory),
            hint=f"pass one prefix, e.g. {directory / prefixes[-1]} "
            f"(present: {_list_for_hint(prefixes)}).",
        )
    v1_files = sorted(p.name for p in directory.iterdir() if _is_v1_file(p))
    if len(v1_files) == 1:
        note = f"{directory} has no state file; using its only V1 checkpoint {v1_files[0]}"
        return CheckpointLocation(directory / v1_files[0], "v1", given, (note,))
    raise _describe_directory(directory)


def _describe_directory(directory: AnyPath) -> CheckpointNotFoundError:
    """No checkpoint here: say what is here instead, and where the checkpoint may be."""
    entries: list[AnyPath]
    try:
        entries = sorted(directory.iterdir(), key=lambda p: p.name)
    except OSError:
        entries = []
    subdirs = [p for p in entries if p.is_dir()]
    versions = [p for p in subdirs if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    if versions:
        versions.sort(key=lambda p: int(p.name))
        return CheckpointNotFoundError(
            "this is a TF Serving model base directory: its versions "
            f"{_list_for_hint([p.name for p in versions])} are SavedModels",
            path=str(directory),
            hint=f"pass one version, e.g. the latest: {versions[-1]}.",
        )
    holding = [p.name for p in subdirs if (p / STATE_FILENAME).is_file() or _prefixes_in(p)]
    if holding:
        return CheckpointNotFoundError(
            "no checkpoint directly in this directory, but its subdirectories "
            f"{_list_for_hint(holding)} hold checkpoints",
            path=str(directory),
            hint=f"pass one of them, e.g. {directory / holding[0]}.",
        )
    graphs = [p.name for p in entries if p.name.endswith((".meta", ".pbtxt"))]
    if graphs:
        return CheckpointNotFoundError(
            f"this directory holds only graphs ({_list_for_hint(graphs)}): the model's "
            "structure without its variable values (no `checkpoint` state file, no *.index)",
            path=str(directory),
            hint="a graph is accepted as a check's [[target]]; the values are in the "
            "checkpoint TensorFlow saved beside it (model.ckpt-N.index and .data-*).",
        )
    what = f"it holds {_list_for_hint([p.name for p in entries])}" if entries else "it is empty"
    return CheckpointNotFoundError(
        f"no checkpoint in this directory (no `checkpoint` state file, no *.index file); {what}",
        path=str(directory),
        hint="pass the directory TensorFlow saved into, or a prefix such as model.ckpt-1000.",
    )


def _describe_foreign_file(path: AnyPath, head: bytes) -> CheckpointNotFoundError:
    if not head:
        return CheckpointNotFoundError(
            "the file is empty", path=str(path), hint="was the copy or download interrupted?"
        )
    if head.startswith(ZIP_SIGNATURE):
        return CheckpointNotFoundError(
            "this is a zip archive (a Keras .keras file?), not a TensorFlow checkpoint",
            path=str(path),
            hint="pass the checkpoint prefix or its directory instead.",
        )
    if path.name == "saved_model.pb":
        return CheckpointNotFoundError(
            "this is a SavedModel graph; its values live in variables/variables.*",
            path=str(path),
            hint=f"pass the SavedModel directory {path.parent} instead.",
        )
    return CheckpointNotFoundError(
        "not a TensorFlow checkpoint (no table footer, not a state file)",
        path=str(path),
        hint="pass a checkpoint prefix (model.ckpt-1000), its .index file, or its directory.",
    )


def _is_torch_zip(path: AnyPath) -> bool:
    """A zip archive with one ``<folder>/data.pkl``: what torch.save writes (a ``.keras``
    file has no data.pkl; a remote one is judged by its name)."""
    if isinstance(path, RemotePath):
        return path.name.lower().endswith(_TORCH_SUFFIXES)
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, RuntimeError):
        return False
    return any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names)


def is_safetensors_path(path: AnyPath | str) -> bool:
    """A ``.safetensors`` file or a sharded model's ``.safetensors.index.json``."""
    name = (path if isinstance(path, str) else path.name).lower()
    return name.endswith((SAFETENSORS_SUFFIX, SAFETENSORS_INDEX_SUFFIX))


def _from_file(path: AnyPath, given: AnyPath) -> CheckpointLocation:
    name = path.name
    if is_safetensors_path(path):
        return CheckpointLocation(path, "safetensors", given)
    if name.lower().endswith(".keras"):  # a Keras 3 archive: its model.weights.h5 is read
        return CheckpointLocation(path, "keras_h5", given)
    if name.endswith(INDEX_SUFFIX):
        prefix = path.with_name(name[: -len(INDEX_SUFFIX)])
        return CheckpointLocation(
            prefix, "v2", given, (f"{path} is an index; using prefix {prefix}",)
        )
    if (match := _DATA_SUFFIX.search(name)) is not None:
        prefix = path.with_name(name[: match.start()])
        if not index_path(prefix).is_file():
            raise CheckpointNotFoundError(
                f"this is data shard {int(match.group(1))} of {int(match.group(2))}, but its "
                f"index {index_path(prefix).name} is missing, so its tensors cannot be located",
                path=str(path),
                hint="copy the .index file along with the .data-* shards.",
            )
        note = f"{path} is a data shard; using prefix {prefix}"
        return CheckpointLocation(prefix, "v2", given, (note,))
    if name.endswith(".meta"):
        prefix = path.with_name(name[: -len(".meta")])
        fmt = _existing_format(prefix)
        if fmt is None:
            raise CheckpointNotFoundError(
                "this is a MetaGraph (the graph only, no variable values) and the checkpoint "
                f"beside it is missing (no {index_path(prefix).name})",
                path=str(path),
                hint="a .meta file is accepted as a check's [[target]]; "
                "pass the checkpoint prefix to read values.",
            )
        return CheckpointLocation(prefix, fmt, given, (f"{path} is a MetaGraph; using {prefix}",))
    head = _read_range(path, 0, 64)
    if name == STATE_FILENAME or looks_like_state_file(head):
        return _from_state_file(path, given)
    if index_path(path).is_file():
        return CheckpointLocation(path, "v2", given)
    if _is_v1_file(path):
        return CheckpointLocation(path, "v1", given)
    if head.startswith(_HDF5_SIGNATURE):  # a Keras .h5 / .weights.h5: read with h5py
        return CheckpointLocation(path, "keras_h5", given)
    # A damaged .pt is still one: its reader says what is wrong with the archive.
    if head.startswith(ZIP_SIGNATURE) and (
        path.name.lower().endswith(_TORCH_SUFFIXES) or _is_torch_zip(path)
    ):
        return CheckpointLocation(path, "torch", given)
    if head.startswith(_LEGACY_TORCH_MAGIC):
        raise UnsupportedCheckpointError(
            "this is a PyTorch file in the format torch.save wrote before 1.6 (a bare "
            "pickle), which is not read: unpickling it could run code",
            path=str(path),
            hint="load it once with torch.load(path, weights_only=True) and torch.save the "
            "state_dict again (the zip format), or save it with safetensors.",
        )
    raise _describe_foreign_file(path, head)


def _missing(path: AnyPath, given: AnyPath) -> CheckpointNotFoundError:
    directory = path.parent
    if path.name.endswith((".meta", INDEX_SUFFIX, ".pbtxt")) or ".data-" in path.name:
        # A file name, not a prefix: it is the file that is missing.
        names = [p.name for p in directory.iterdir()] if directory.is_dir() else []
        close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.5)
        return CheckpointNotFoundError(
            "no such file",
            path=str(given),
            hint=f"did you mean {', '.join(str(directory / c) for c in close)}?"
            if close
            else f"the directory {directory} does not exist."
            if not directory.is_dir()
            else f"checkpoints in {directory}: {_list_for_hint(_prefixes_in(directory))}."
            if _prefixes_in(directory)
            else f"no checkpoint files are in {directory}.",
        )
    found: list[AnyPath] = [*directory.glob(path.name + ".data-*")] if directory.is_dir() else []
    shards = sorted(found, key=str)
    if shards:
        return CheckpointNotFoundError(
            f"the data shards exist ({shards[0].name}...) but the index "
            f"{index_path(path).name} is missing",
            path=str(given),
            hint="copy the .index file along with the .data-* shards.",
        )
    meta = path.with_name(path.name + ".meta")
    if meta.is_file():
        return CheckpointNotFoundError(
            f"only the MetaGraph {meta.name} exists; the variable values "
            f"({index_path(path).name} and .data-* files) are missing",
            path=str(given),
        )
    if not directory.is_dir():
        return CheckpointNotFoundError(
            "no such file or directory",
            path=str(given),
            hint=f"the directory {directory} does not exist.",
        )
    candidates = _prefixes_in(directory)
    close = difflib.get_close_matches(path.name, candidates, n=3, cutoff=0.5)
    if close:
        hint = f"did you mean {', '.join(str(directory / c) for c in close)}?"
    elif candidates:
        hint = f"checkpoints in {directory}: {_list_for_hint(candidates)}."
    else:
        hint = f"no checkpoint files are in {directory}."
    return CheckpointNotFoundError("no checkpoint at this path", path=str(given), hint=hint)


def locate(path: str | Path | RemotePath) -> CheckpointLocation:
    """Resolve ``path`` (directory, prefix, index, shard, state file, meta) to a checkpoint.
    A URL (``s3://bucket/run/``, ``gs://...``) follows the same rules on its filesystem."""
    given = as_path(path).expanduser()
    if isinstance(given, RemotePath):
        return _locate_remote(given)
    return _locate(given)


def _locate(given: AnyPath) -> CheckpointLocation:
    try:
        if given.is_dir():
            return _from_directory(given, given)
        if given.is_file():
            return _from_file(given, given)
        fmt = _existing_format(given)
        if fmt is not None:
            return CheckpointLocation(given, fmt, given)
    except PermissionError as e:
        raise CheckpointNotFoundError(f"permission denied: {e.filename}", path=str(given)) from e
    raise _missing(given, given)


def _locate_remote(given: RemotePath) -> CheckpointLocation:
    try:
        return _locate(given)
    except CheckpointNotFoundError:
        raise
    except Exception as e:
        # Network, credential and endpoint failures come from the store's client library
        # in its own exception types (botocore, aiohttp, google-auth): say what failed.
        raise remote_error(e, given) from e


def check_output(output: AnyPath, given: AnyPath, prefix: AnyPath, overwrite: bool) -> None:
    """Refuse outputs that are, contain or sit inside the source: replacing them (overwrite)
    would destroy it. A source given as a directory owns everything under it; a source
    given as a prefix owns its files and the names they start with (an output there
    shadows it). Symlinks are resolved first. Local and remote paths never compare equal,
    so a URL output is checked against a URL source."""
    try:
        _check_output(output, given, prefix, overwrite)
    except CkptMigrateError:
        raise
    except Exception as e:  # a store's client raises its own types (no credentials, ...)
        if not isinstance(output, RemotePath):
            raise
        raise unreachable_output(e, output) from e


def unreachable_output(error: BaseException, output: RemotePath) -> OutputError:
    """A store's client failing before anything is written (no credentials, no route)."""
    return OutputError(
        f"cannot reach the output on the store ({type(error).__name__}: {error})",
        path=str(output),
        hint="check the URL, the credentials and the endpoint "
        "(e.g. AWS_PROFILE, FSSPEC_S3_ENDPOINT_URL for S3-compatible servers).",
    )


def _check_output(output: AnyPath, given: AnyPath, prefix: AnyPath, overwrite: bool) -> None:
    out = output.resolve()
    real_prefix = prefix.resolve()
    source_dir = real_prefix.parent
    given_dir = given.resolve() if given.is_dir() else None
    # An output named after the prefix, beside its files, was allowed: `-o src/model.ckpt-1`
    # made the prefix a directory, which the next read of the source took for it. Outputs
    # elsewhere in a prefix's directory stay allowed: `x.ckpt` -> `x.weights.h5` beside it
    # is how a tf-keras save_weights checkpoint is converted.
    shadows = out.parent == source_dir and out.name.startswith(real_prefix.name)
    if shadows or out == source_dir or (given_dir is not None and given_dir in (out, *out.parents)):
        raise OutputError(
            "the output is the source checkpoint's directory or inside it",
            path=str(output),
            hint="write the converted checkpoint somewhere else.",
        )
    if out in source_dir.parents:
        raise OutputError(
            "the output directory contains the source checkpoint; replacing it "
            "would destroy the source",
            path=str(output),
        )
    if output.exists() and not overwrite:
        raise OutputError(
            "the output already exists",
            path=str(output),
            hint="choose a new path, or pass [[overwrite]] to replace it.",
        )


def remote_error(error: BaseException, path: RemotePath) -> CheckpointNotFoundError:
    return CheckpointNotFoundError(
        f"cannot read from the store ({type(error).__name__}: {error})",
        path=str(path),
        hint="check the URL, the credentials and the endpoint "
        "(e.g. AWS_PROFILE, FSSPEC_S3_ENDPOINT_URL for S3-compatible servers).",
    )
