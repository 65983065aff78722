"""`make demo`: build an Estimator-style checkpoint with TensorFlow, then show ckptmigrate
reading it (inspect, verify), checking it against a wider model (the [10] vs [20] story),
rewriting it, and TensorFlow reading the rewrite.

Run with ``python -m ckptmigrate.demo [OUTPUT_DIR]`` (default ./demo-output).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ._tf import import_tensorflow
from .demo_files import WIDEN_MAP, build_estimator_checkpoint
from .isolated import python_command


def _restore_with_saver(meta: Path, checkpoint_dir: Path) -> int:
    tf = import_tensorflow()
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(meta))
        with tf.compat.v1.Session(graph=graph) as session:
            saver.restore(session, tf.train.latest_checkpoint(str(checkpoint_dir)))
            return len(tf.compat.v1.global_variables())


def _restore_and_compare(original: Path, rewritten: Path) -> int:
    import numpy as np

    tf = import_tensorflow()
    before = tf.train.load_checkpoint(str(original))
    after = tf.train.load_checkpoint(str(rewritten))
    names = sorted(before.get_variable_to_shape_map())
    for name in names:
        if not np.array_equal(before.get_tensor(name), after.get_tensor(name)):
            raise SystemExit(f"demo failed: {name} differs after the rewrite")
    return len(names)


def _cli(*args: str, expect: int = 0) -> None:
    print(f"\n$ ckptmigrate {' '.join(args)}", flush=True)
    code = subprocess.run(python_command("ckptmigrate", *args), check=False).returncode
    print(f"(exit code {code})")
    if code != expect:
        raise SystemExit(f"demo failed: expected exit code {expect}, got {code}")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-output").absolute()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"Building an Estimator-style DNN checkpoint with TensorFlow in {out}/run ...")
    prefix = build_estimator_checkpoint(out / "run")
    print(f"... and the fresh [20, 20] model to fine-tune, in {out}/wide ...")
    wide = build_estimator_checkpoint(out / "wide", hidden=(20, 20), steps=0, n_classes=2)
    _cli("inspect", str(out / "run"))
    _cli("inspect", str(prefix), "--filter", "hiddenlayer_0", "--verify")
    print("\nWill the [10, 10] checkpoint restore into the [20, 20] model? (exit 1: no)")
    _cli("check", str(prefix), "--target", f"{wide}.meta", expect=1)
    print("\nAnd into the model it was trained with? (exit 0: yes)")
    _cli("check", str(prefix), "--target", f"{prefix}.meta")

    suggested = out / "suggested.yaml"
    print("\nsuggest writes a map that would make it fit (read it: uncertain choices are marked):")
    _cli("suggest", str(prefix), "--target", f"{wide}.meta", "-o", str(suggested))
    print(suggested.read_text())
    widen = out / "widen.yaml"
    widen.write_text(WIDEN_MAP)
    print(f"A hand-written map that widens the hidden layers ({widen}):\n\n{WIDEN_MAP}")
    _cli("convert", str(prefix), "--map", str(widen), "--dry-run")
    _cli("convert", str(prefix), "--map", str(widen), "-o", str(out / "widened"))
    print("\nThe converted checkpoint restores into the [20, 20] model: (exit 0)")
    _cli("check", str(out / "widened"), "--target", f"{wide}.meta")
    restored = _restore_with_saver(Path(f"{wide}.meta"), out / "widened")
    print(f"TensorFlow's Saver restored all {restored} variables of the [20, 20] model from it.")
    print("\nThe suggested map, straight into the target's keys, verified by TensorFlow:")
    _cli(
        "convert",
        str(prefix),
        "--map",
        str(suggested),
        "--target",
        f"{wide}.meta",
        "-o",
        str(out / "suggested-h20"),
        "--verify",
    )
    from .rewrite import rewrite_checkpoint

    print("\nRewriting it unchanged with the streaming writer ...")
    result = rewrite_checkpoint(prefix, out / "rewritten")
    count = _restore_and_compare(prefix, result.prefix)
    print(f"TensorFlow reads all {count} tensors of {result.prefix} bit for bit.")


if __name__ == "__main__":
    main()
