"""The base install has no TensorFlow: the CLI is run in a child process where TensorFlow and
Keras cannot be imported (as after ``pip install ckptmigrate``). What needs no TensorFlow
works; what does says so in one paragraph with the install command, exit 2, before writing
anything."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import tf_save

# Runs the CLI with a meta-path finder that makes the ML frameworks unimportable, as if they
# were not installed (find_spec answers None; an import raises ModuleNotFoundError).
_CHILD = textwrap.dedent("""
    import importlib.abc, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.partition(".")[0] in ("tensorflow", "keras", "tf_keras"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    import importlib.util
    real_find_spec = importlib.util.find_spec
    def find_spec(name, package=None):
        if name.partition(".")[0] in ("tensorflow", "keras", "tf_keras"):
            return None
        return real_find_spec(name, package)
    importlib.util.find_spec = find_spec
    sys.argv = ["ckptmigrate", *sys.argv[1:]]
    from ckptmigrate.cli import main
    main()
""")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def checkpoints(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("no-tf")
    rng = np.random.default_rng(0)
    tensors = {
        "dense/kernel": rng.standard_normal((4, 3)).astype("f4"),
        "dense/bias": np.zeros(3, "f4"),
    }
    old = tf_save(tf, root / "old" / "model.ckpt", tensors)
    new = tf_save(
        tf, root / "new" / "model.ckpt", {f"head/{k.split('/')[1]}": v for k, v in tensors.items()}
    )
    (root / "map.yaml").write_text(
        "version: 1\nrules:\n  - match: 'dense/(.*)'\n    rename: 'head/{1}'\n"
    )
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.get_variable("head/kernel", shape=(4, 3))
        tf.compat.v1.train.export_meta_graph(str(root / "model.meta"))
    return {"root": root, "old": old, "new": new, "map": root / "map.yaml"}


def test_inspect_check_convert_and_suggest_need_no_tensorflow(checkpoints: dict[str, Path]) -> None:
    root = checkpoints["root"]
    assert run("inspect", str(checkpoints["old"]), cwd=root).returncode == 0
    assert (
        run(
            "check", str(checkpoints["old"]), "--target", str(checkpoints["old"]), cwd=root
        ).returncode
        == 0
    )
    out = root / "converted"
    done = run(
        "convert",
        str(checkpoints["old"]),
        "--map",
        str(checkpoints["map"]),
        "-o",
        str(out),
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    check = run("check", str(out), "--target", str(checkpoints["new"]), cwd=root)
    assert check.returncode == 0, check.stdout
    suggested = run(
        "suggest",
        str(checkpoints["old"]),
        "--target",
        str(checkpoints["new"]),
        "-o",
        str(root / "s.yaml"),
        cwd=root,
    )
    assert suggested.returncode == 0, suggested.stderr


def test_what_needs_tensorflow_says_so_before_writing(checkpoints: dict[str, Path]) -> None:
    root = checkpoints["root"]
    out = root / "verified"
    verified = run(
        "convert",
        str(checkpoints["old"]),
        "--map",
        str(checkpoints["map"]),
        "-o",
        str(out),
        "--verify",
        cwd=root,
    )
    assert verified.returncode == 2, verified.stderr
    assert "pip install 'ckptmigrate[tensorflow]'" in verified.stderr
    assert "--verify" in verified.stderr
    assert "Traceback" not in verified.stderr
    assert not out.exists()  # refused before anything was written

    meta = run("check", str(checkpoints["old"]), "--target", str(root / "model.meta"), cwd=root)
    assert meta.returncode == 2, meta.stderr
    assert "pip install 'ckptmigrate[tensorflow]'" in meta.stderr
    assert "Traceback" not in meta.stderr
