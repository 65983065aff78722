"""Spec files: a target model described in YAML or JSON, for pipelines that don't build it.

Either form works::

    scheme: tf1-names            # optional; tf2-object for object-based keys
    variables:
      dnn/hiddenlayer_0/kernel: {shape: [4, 20], dtype: float32}
      global_step: {shape: [], dtype: int64}

    variables:
      - {name: dnn/hiddenlayer_0/kernel, shape: [4, 20], dtype: float32}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import dtypes
from ..errors import CkptMigrateError
from ..inventory import Inventory, Scheme, VariableSpec
from ..names import VARIABLE_SUFFIX, classify
from ..yaml_text import YamlTextError, compose, plain, read_text

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def _spec_error(path: Path, message: str, variable: str | None = None) -> CkptMigrateError:
    return CkptMigrateError(
        message,
        path=path,
        variable=variable,
        hint="a spec lists `variables:` as name: {shape: [..], dtype: float32}.",
    )


def _variable(path: Path, name: str, body: Any) -> VariableSpec:
    if not isinstance(body, dict):
        raise _spec_error(path, "expected {shape: [...], dtype: ...}", name)
    unknown = set(body) - {"shape", "dtype", "name"}
    if unknown:
        fields = ", ".join(sorted(str(field) for field in unknown))  # YAML keys may be numbers
        raise _spec_error(path, f"unknown field(s) {fields}", name)
    shape = body.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _spec_error(
            path, f"shape must be a list of non-negative integers, got {shape!r}", name
        )
    dtype_name = body.get("dtype", "float32")
    if not isinstance(dtype_name, str) or dtype_name not in dtypes.BY_NAME:
        raise _spec_error(path, f"unknown dtype {dtype_name!r}", name)
    return VariableSpec(name, tuple(shape), dtypes.BY_NAME[dtype_name].name, classify(name))


def load_spec(path: Path) -> Inventory:
    """A spec file's variables as an Inventory.

    Raises:
        CkptMigrateError: the file cannot be read or parsed (with line:column), or does not
            describe variables.
    """
    import yaml

    try:
        root = compose(read_text(path))  # JSON is YAML too
        data = None if root is None else plain(root, yaml.SafeLoader(""))
    except YamlTextError as e:
        raise _spec_error(Path(f"{path}:{e.line}:{e.column}"), e.message) from None
    except OSError as e:
        raise _spec_error(path, f"cannot read the spec file: {e.strerror or e}") from e
    if not isinstance(data, dict) or "variables" not in data:
        raise _spec_error(path, "the spec has no top-level `variables`")
    raw = data["variables"]
    items: list[tuple[str, Any]]
    if isinstance(raw, dict):
        items = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, list):
        items = []
        for entry in raw:
            if not isinstance(entry, dict) or "name" not in entry:
                raise _spec_error(path, f"list entries need a name: {entry!r}")
            items.append((str(entry["name"]), entry))
    else:
        raise _spec_error(path, "`variables` must be a mapping or a list")
    variables = {name: _variable(path, name, body) for name, body in items}
    scheme_name = data.get("scheme")
    if scheme_name is None:
        object_based = any(name.endswith(VARIABLE_SUFFIX) for name in variables)
        scheme = Scheme.TF2 if object_based else Scheme.TF1
    else:
        try:
            scheme = Scheme(scheme_name)
        except ValueError:
            choices = ", ".join(s.value for s in Scheme)
            raise _spec_error(path, f"unknown scheme {scheme_name!r} (one of {choices})") from None
    return Inventory("spec", str(path), scheme, variables)
