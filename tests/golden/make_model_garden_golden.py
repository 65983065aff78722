"""Regenerate tests/golden/model_garden/: TensorFlow Model Garden's own BERT converter run on
the tiny google-research/bert checkpoints of tests/bert_tf1.py.

This is the oracle of tests/test_model_garden_map.py (issue 11, "peer equivalence"): the
bundled map bert-to-model-garden must give, bit for bit, what Model Garden's
official/nlp/tools/tf2_bert_encoder_checkpoint_converter.py gives. It needs
tf-models-official, which brings its own TensorFlow and pins versions the project's venv
does not have, so run it from a separate virtualenv (never the project's):

    python3 -m venv /tmp/mg-venv && /tmp/mg-venv/bin/pip install tf-models-official
    /tmp/mg-venv/bin/python tests/golden/make_model_garden_golden.py

For each size in bert_tf1.SIZES (or ``--size NAME``) it writes tests/golden/model_garden/<size>/
(or ``--out DIR``/<size>/, as the live test in tests/test_model_garden_map.py does):

- ``ckpt-1.index``, ``ckpt-1.data-00000-of-00001``, ``checkpoint``: the converter's output, an
  object-based checkpoint of ``tf.train.Checkpoint(encoder=BertEncoder)`` (its command line,
  default flags: ``--checkpoint_model_name encoder --converted_model encoder``);
- ``tf1_names.json``: the name-based checkpoint the converter writes first and restores the
  BertEncoder from (its ``temp_v1/ckpt``, deleted when it finishes; made here by the same
  library call with the same arguments): every name with dtype, shape and the SHA-256 of
  its bytes;
- ``source.json``: the source checkpoint's fingerprint and the versions used.

The files are a few KB; the source checkpoints are re-created by the test, not stored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
OUT = TESTS / "golden" / "model_garden"
sys.path.insert(0, str(TESTS))

# Model Garden is written against tf.keras as Keras 2 (tf-keras); TF >= 2.16 needs this to
# give it that, in this process and in the converter's.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bert_tf1 import SIZES, BertSize, bert_values, fingerprint, save_bert_checkpoint  # noqa: E402

CONVERTER = "official.nlp.tools.tf2_bert_encoder_checkpoint_converter"


def run_converter(source: Path, config: Path, output: Path) -> None:
    """Model Garden's converter, by its command line, in its own process."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            CONVERTER,
            f"--bert_config_file={config}",
            f"--checkpoint_to_convert={source}",
            f"--converted_checkpoint_path={output}",
        ],
        check=True,
    )


def tf1_step(source: Path, heads: int, scratch: Path) -> dict[str, dict[str, object]]:
    """The converter's first step (names, reshapes by num_heads, Adam excluded), called as
    convert_checkpoint calls it; its output described by name."""
    from official.nlp.tools import tf1_bert_checkpoint_converter_lib as lib

    prefix = scratch / "temp_v1" / "ckpt"
    lib.convert(
        checkpoint_from_path=str(source),
        checkpoint_to_path=str(prefix),
        num_heads=heads,
        name_replacements=lib.BERT_V2_NAME_REPLACEMENTS,
        permutations=lib.BERT_V2_PERMUTATIONS,
        exclude_patterns=["adam", "Adam"],
    )
    reader = tf.train.load_checkpoint(str(prefix))
    out: dict[str, dict[str, object]] = {}
    for name in sorted(reader.get_variable_to_shape_map()):
        value = np.ascontiguousarray(reader.get_tensor(name))
        out[name] = {
            "dtype": value.dtype.str,
            "shape": list(value.shape),
            "sha256": hashlib.sha256(value.tobytes()).hexdigest(),
        }
    return out


def make(size: BertSize, scratch: Path, out: Path) -> None:
    source = save_bert_checkpoint(tf, scratch / "src", size)
    config = scratch / "src" / "bert_config.json"
    target = out / size.name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    run_converter(source, config, target / "ckpt")
    names = tf1_step(source, size.heads, scratch)
    (target / "tf1_names.json").write_text(json.dumps(names, indent=1, sort_keys=True) + "\n")
    (target / "source.json").write_text(
        json.dumps(
            {
                "size": size.name,
                "config": size.config(),
                "source_fingerprint": fingerprint(bert_values(size)),
                "tf-models-official": metadata.version("tf-models-official"),
                "tensorflow": tf.__version__,
                "converter": CONVERTER,
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="default: %(default)s")
    parser.add_argument("--size", choices=[s.name for s in SIZES], help="default: every size")
    args = parser.parse_args()
    for size in SIZES:
        if args.size in (None, size.name):
            with tempfile.TemporaryDirectory() as scratch:
                make(size, Path(scratch), args.out)
            print(f"wrote {args.out / size.name}")


if __name__ == "__main__":
    main()
