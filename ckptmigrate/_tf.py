"""The only gate to TensorFlow and Keras: every path that needs them imports them here.

Nothing imports TensorFlow at module level, so ``import ckptmigrate`` and the commands that
read, compare and write checkpoints stay fast and work without it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from .errors import TensorFlowRequiredError

__all__ = [
    "INSTALL_HINT",
    "import_keras",
    "import_tensorflow",
    "import_tf_keras",
    "keras_backend",
    "require_keras",
    "require_tensorflow",
]

# The base install is TensorFlow-free (inspect, checkpoint-vs-checkpoint check, convert,
# suggest); restoring, models and Keras outputs need the extra.
INSTALL_HINT = "pip install 'ckptmigrate[tensorflow]' (TensorFlow and Keras)"


def require_tensorflow(what: str) -> None:
    """Refuse, before any work, something that will need TensorFlow when it is missing:
    ``convert --verify`` must not write its output first and then fail.

    Args:
        what: what needs it, for the message (``"verifying the output"``).

    Raises:
        TensorFlowRequiredError: TensorFlow (or Keras) is not installed.
    """
    import importlib.util

    missing = [m for m in ("tensorflow", "keras") if importlib.util.find_spec(m) is None]
    if missing:
        raise TensorFlowRequiredError(
            f"{what} needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed",
            hint=INSTALL_HINT + ".",
        )


def require_keras(what: str) -> None:
    """As :func:`require_tensorflow`, for what Keras 3 (on any backend) and h5py do alone:
    a Keras weights output and its verification.

    Raises:
        TensorFlowRequiredError: Keras or h5py is not installed.
    """
    import importlib.util

    missing = [m for m in ("keras", "h5py") if importlib.util.find_spec(m) is None]
    if missing:
        raise TensorFlowRequiredError(
            f"{what} needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed",
            hint="pip install keras h5py (and the backend Keras runs on).",
        )


def import_tensorflow() -> Any:
    """Import TensorFlow, keeping its C++ start-up chatter off the user's terminal unless
    they asked for TF logging.

    Returns:
        The ``tensorflow`` module.

    Raises:
        TensorFlowRequiredError: TensorFlow cannot be imported.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    # Users who want TF's logs set TF_CPP_MIN_LOG_LEVEL to 0 or 1; otherwise stay quiet.
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL") not in ("0", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _stderr_silenced(quiet):
            import tensorflow as tf
    except ImportError as e:
        raise TensorFlowRequiredError(
            f"this needs TensorFlow, which cannot be imported ({e})",
            hint=INSTALL_HINT + ".",
        ) from e
    return tf


def import_keras() -> Any:
    """Import Keras 3: on its TensorFlow backend TensorFlow first, quietly, as Keras would
    import it anyway; on the JAX, PyTorch or NumPy backend Keras alone (it never imports
    TensorFlow there, and neither does ckptmigrate).

    Returns:
        The ``keras`` module.

    Raises:
        TensorFlowRequiredError: Keras (or, for its TensorFlow backend, TensorFlow) cannot
            be imported.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    if keras_backend() == "tensorflow":
        return _import_after_tensorflow("keras", "Keras 3", INSTALL_HINT + ".")
    import importlib

    try:
        return importlib.import_module("keras")
    except ImportError as e:
        raise TensorFlowRequiredError(
            f"this needs Keras 3, which cannot be imported ({e})", hint="pip install keras."
        ) from e


def keras_backend() -> str:
    """The backend Keras 3 runs on (or will, once imported): ``tensorflow``, ``jax``,
    ``torch`` or ``numpy``. Keras decides it once, at import, from ``KERAS_BACKEND`` or
    else ``keras.json`` in ``KERAS_HOME`` (default ``~/.keras``); read the same way here so
    that deciding does not import Keras (and with it TensorFlow)."""
    keras = sys.modules.get("keras")
    if keras is not None:
        return str(keras.backend.backend())
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        return chosen
    import json

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return "tensorflow"
    backend = config.get("backend") if isinstance(config, dict) else None
    return backend if isinstance(backend, str) and backend else "tensorflow"


def import_tf_keras() -> Any:
    """Import tf-keras (Keras 2), which reads legacy ``.h5`` models, TensorFlow first.

    Returns:
        The ``tf_keras`` module.

    Raises:
        TensorFlowRequiredError: TensorFlow or tf-keras cannot be imported.
    """
    return _import_after_tensorflow("tf_keras", "tf-keras", "pip install tf-keras.")


def tf_keras_safe_mode() -> contextlib.AbstractContextManager[Any]:
    """tf-keras' safe mode, for loading a legacy ``.h5`` model: a Lambda layer's marshalled
    Python is refused instead of run. ``load_model(safe_mode=True)`` covers only ``.keras``
    files; the legacy loader reads the same switch from this scope (tf-keras has no public
    name for it)."""
    import importlib

    import_tf_keras()
    serialization_lib = importlib.import_module("tf_keras.src.saving.serialization_lib")
    scope: contextlib.AbstractContextManager[Any] = serialization_lib.SafeModeScope(True)
    return scope


def _import_after_tensorflow(module: str, what: str, hint: str) -> Any:
    import importlib

    import_tensorflow()
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise TensorFlowRequiredError(
            f"this needs {what}, which cannot be imported ({e})", hint=hint
        ) from e


@contextlib.contextmanager
def _stderr_silenced(enabled: bool) -> Iterator[None]:
    # absl writes "All log messages before absl::InitializeLog()..." straight to fd 2.
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
