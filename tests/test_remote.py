"""Checkpoints on S3: a real S3-compatible server (moto's standalone server) on loopback,
checkpoints made by TensorFlow and uploaded, read with ranged requests and written back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits, tf_save
from models import save_estimator_checkpoint
from typer.testing import CliRunner

import ckptmigrate
from ckptmigrate.cli import app
from ckptmigrate.errors import ChecksumMismatchError, OutputError
from ckptmigrate.formats import remote
from ckptmigrate.formats.bundle_reader import RemoteBundleReader
from ckptmigrate.formats.remote import RemotePath

runner = CliRunner()
CREDENTIALS = {"key": "testing", "secret": "testing"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port), and fsspec pointed at it: in this
    process through fsspec's config, in CLI subprocesses through FSSPEC_S3_* variables."""
    pytest.importorskip("s3fs")
    import logging

    import fsspec.config
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
        "FSSPEC_S3_KEY": CREDENTIALS["key"],
        "FSSPEC_S3_SECRET": CREDENTIALS["secret"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved_env = {k: os.environ.get(k) for k in env}
    saved_conf = fsspec.config.conf.get("s3")
    os.environ.update(env)
    fsspec.config.conf["s3"] = {"endpoint_url": endpoint, **CREDENTIALS}
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if saved_conf is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = saved_conf


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A fresh bucket for one test: ``s3://<name>``."""
    fs = s3()
    name = f"ckpt-{uuid.uuid4().hex[:12]}"
    fs.mkdir(name)
    return f"s3://{name}"


def s3() -> Any:
    import fsspec

    return fsspec.filesystem("s3")


def upload(local_dir: Path, url: str) -> None:
    fs = s3()
    for path in sorted(local_dir.iterdir()):
        fs.put_file(str(path), f"{url.removeprefix('s3://')}/{path.name}")
    fs.invalidate_cache()


def listing(url: str) -> list[str]:
    fs = s3()
    fs.invalidate_cache()
    root = url.removeprefix("s3://")
    return sorted(p.removeprefix(root + "/") for p in fs.find(root))


def download(url: str, local_dir: Path) -> Path:
    fs = s3()
    fs.invalidate_cache()
    local_dir.mkdir(parents=True)
    root = url.removeprefix("s3://")
    for path in fs.find(root):
        fs.get_file(path, str(local_dir / path.rsplit("/", 1)[1]))
    return local_dir


@pytest.fixture
def estimator(tf: Any, tmp_path: Path, bucket: str) -> tuple[str, dict[str, np.ndarray]]:
    """A TF1 Estimator-style checkpoint (Saver, with its `checkpoint` state file holding
    this machine's absolute paths), uploaded to s3://bucket/run."""
    prefix, values = save_estimator_checkpoint(tf, tmp_path / "run")
    assert prefix.name == "model.ckpt-2"
    upload(tmp_path / "run", f"{bucket}/run")
    return f"{bucket}/run", values


BIG = 3 * (1 << 20) + 123  # bytes: more than three 1 MiB read buffers, not a multiple


@pytest.fixture
def big(tf: Any, tmp_path: Path, bucket: str) -> tuple[str, dict[str, np.ndarray], Path]:
    """A checkpoint with one tensor larger than several read buffers, and a small one."""
    rng = np.random.default_rng(0)
    tensors = {
        "big/kernel": rng.standard_normal(BIG // 4, dtype=np.float32).reshape(-1, 1),
        "small/bias": np.arange(4, dtype=np.float32),
        "step": np.array(7, np.int64),
    }
    tensors["big/kernel"] = tensors["big/kernel"][: (BIG // 4)]
    local = tmp_path / "big"
    local.mkdir()
    tf_save(tf, local / "model.ckpt", tensors)
    upload(local, f"{bucket}/big")
    return f"{bucket}/big/model.ckpt", tensors, local


# -- reading --------------------------------------------------------------------------


def test_every_local_form_of_path_works_as_a_url(
    estimator: tuple[str, dict[str, np.ndarray]],
) -> None:
    run, values = estimator
    expected = sorted(values)
    forms = {
        run: "followed the checkpoint state file",
        f"{run}/": "followed the checkpoint state file",
        f"{run}/checkpoint": "followed the checkpoint state file",
        f"{run}/model.ckpt-2": None,
        f"{run}/model.ckpt-2.index": "is an index",
        f"{run}/model.ckpt-2.data-00000-of-00001": "is a data shard",
    }
    for given, note in forms.items():
        report = ckptmigrate.inspect_checkpoint(given)
        assert report.prefix == f"{run}/model.ckpt-2", given
        keys = sorted(r.key for r in report.rows)
        assert [k for k in keys if k in values] == expected, given
        if note is not None:
            assert any(note in n or "using" in n for n in report.notes), (given, report.notes)
    # The state file records this machine's absolute path: on S3 the name beside it is used.
    notes = ckptmigrate.inspect_checkpoint(run).notes
    assert any("found beside it" in n for n in notes), notes


def test_values_match_tensorflow_and_errors_read_like_local_ones(
    estimator: tuple[str, dict[str, np.ndarray]],
) -> None:
    run, values = estimator
    with ckptmigrate.open_checkpoint(run) as ckpt:
        assert isinstance(ckpt.reader, RemoteBundleReader)
        for key, value in values.items():
            assert same_bits(ckpt.reader.read(key), value), key
        assert ckpt.reader.verify() > 0
    with pytest.raises(ckptmigrate.CheckpointNotFoundError, match="did you mean"):
        ckptmigrate.open_checkpoint(f"{run}/model.ckpt-3")
    with pytest.raises(ckptmigrate.CheckpointNotFoundError, match="no checkpoint"):
        ckptmigrate.open_checkpoint(f"{run}-missing/")


class Downloads:
    """Every read request the store's client answers (fsspec's cat_file), counted at the
    boundary between ckptmigrate and the store."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0

    def reset(self) -> None:
        self.requests = self.bytes = 0


@pytest.fixture
def downloads(
    big: tuple[str, dict[str, np.ndarray], Path], monkeypatch: pytest.MonkeyPatch
) -> Downloads:
    counted = Downloads()
    # fsspec keeps one filesystem instance per store and options: the one every
    # RemotePath of this URL uses (its sync methods are the instance's own attributes).
    store = RemotePath.from_url(big[0]).fs
    real = store.cat_file

    def cat_file(*args: Any, **kwargs: Any) -> Any:
        data = real(*args, **kwargs)
        counted.requests += 1
        counted.bytes += len(data)
        return data

    monkeypatch.setattr(store, "cat_file", cat_file)
    return counted


def test_reading_one_tensor_fetches_the_index_and_that_tensor_only(
    big: tuple[str, dict[str, np.ndarray], Path], downloads: Downloads
) -> None:
    url, tensors, local = big
    index_size = (local / "model.ckpt.index").stat().st_size
    shard_size = (local / "model.ckpt.data-00000-of-00001").stat().st_size
    assert shard_size > BIG
    downloads.reset()
    with ckptmigrate.open_checkpoint(url) as ckpt:
        small = ckpt.reader.read("small/bias")
    assert same_bits(small, tensors["small/bias"])
    # Exactly the index and the 16 bytes of the tensor came down, not the 3 MiB shard.
    assert downloads.bytes == index_size + 16


def test_a_tensor_larger_than_the_read_buffer_is_read_in_ranged_chunks_and_crc_checked(
    big: tuple[str, dict[str, np.ndarray], Path], tmp_path: Path, downloads: Downloads
) -> None:
    url, tensors, local = big
    buffer = 1 << 20
    reader = RemoteBundleReader(RemotePath.from_url(url), read_buffer=buffer)
    downloads.reset()
    value = reader.read("big/kernel")
    assert same_bits(value, tensors["big/kernel"])
    size = tensors["big/kernel"].nbytes
    assert downloads.requests == -(-size // buffer) >= 4
    assert downloads.bytes == size
    downloads.reset()
    assert reader.verify() == sum(t.nbytes for t in tensors.values())  # streamed CRC
    assert downloads.requests >= 4

    # One flipped bit in the third chunk: caught by the CRC that spans the chunks.
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in local.iterdir():
        corrupt.joinpath(f.name).write_bytes(f.read_bytes())
    shard = corrupt / "model.ckpt.data-00000-of-00001"
    offset = reader.entries["big/kernel"].offset + 2 * buffer + 5
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0x10
    shard.write_bytes(data)
    bad_url = url.replace("/big/", "/corrupt/")
    upload(corrupt, bad_url.rsplit("/", 1)[0])
    bad = RemoteBundleReader(RemotePath.from_url(bad_url), read_buffer=buffer)
    assert same_bits(bad.read("small/bias"), tensors["small/bias"])
    with pytest.raises(ChecksumMismatchError, match="CRC32C"):
        bad.read("big/kernel")
    with pytest.raises(ChecksumMismatchError, match="CRC32C"):
        bad.verify()


def test_cli_inspect_verify_and_check_with_urls_and_a_small_read_buffer(
    estimator: tuple[str, dict[str, np.ndarray]], big: tuple[str, dict[str, np.ndarray], Path]
) -> None:
    run, values = estimator
    url, tensors, _ = big
    env = {**os.environ, remote.READ_BUFFER_ENV: str(1 << 20)}
    done = subprocess.run(
        [sys.executable, "-m", "ckptmigrate", "inspect", url, "--verify", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["checkpoint"]["prefix"] == url
    assert report["verified_bytes"] == sum(t.nbytes for t in tensors.values())

    result = runner.invoke(app, ["check", f"{run}/", "--target", f"{run}/model.ckpt-2.index"])
    assert result.exit_code == 0, result.output
    assert f"matched {len(values)} of {len(values)} target variables" in result.output
    result = runner.invoke(app, ["check", f"{run}/", "--target", url])
    assert result.exit_code == 1, result.output


def test_urls_do_not_import_fsspec_for_local_paths_or_help() -> None:
    code = (
        "import sys\n"
        "from ckptmigrate.cli import app\n"
        "from ckptmigrate.formats.locate import locate\n"
        "try:\n"
        "    locate('/nonexistent/model.ckpt')\n"
        "except Exception:\n"
        "    pass\n"
        "assert 'fsspec' not in sys.modules and 's3fs' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- writing --------------------------------------------------------------------------


def test_convert_to_s3_publishes_index_last_and_tensorflow_restores_it(
    tf: Any, estimator: tuple[str, dict[str, np.ndarray]], bucket: str, tmp_path: Path
) -> None:
    run, values = estimator
    out = f"{bucket}/stripped"
    result = ckptmigrate.convert(run, "strip-optimizer", out)
    assert str(result.prefix) == f"{out}/model.ckpt-2"
    assert listing(out) == [
        "checkpoint",
        "ckptmigrate-provenance.json",
        "model.ckpt-2.data-00000-of-00001",
        "model.ckpt-2.index",
    ]
    local = download(out, tmp_path / "downloaded")
    restored = tf.train.load_checkpoint(str(local))  # through the state file
    kept = {v.name: values[v.source] for v in result.plan.outputs if v.source}
    assert kept
    assert not any("Adagrad" in k for k in kept)
    assert sorted(name for name, _ in tf.train.list_variables(str(local))) == sorted(kept)
    for key, value in kept.items():
        assert same_bits(restored.get_tensor(key), value), key
    provenance = json.loads((local / "ckptmigrate-provenance.json").read_text())
    assert provenance["source_checkpoint"] == f"{run}/model.ckpt-2"

    result = runner.invoke(app, ["convert", run, "--map", "strip-optimizer", "-o", out])
    assert result.exit_code == 2
    assert "already exists" in result.output
    # --force replaces it: nothing of the old output is left beside the new one.
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "stale.txt").write_text("old")
    upload(stale, out)
    result = runner.invoke(app, ["convert", run, "-m", "strip-optimizer", "-o", out, "--force"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}/model.ckpt-2" in result.output
    assert "stale.txt" not in listing(out)
    assert "model.ckpt-2.index" in listing(out)

    # A whole bucket as the output: --force empties it, and the bucket stays.
    root = f"s3://ckpt-root-{uuid.uuid4().hex[:8]}"
    s3().mkdir(root.removeprefix("s3://"))
    upload(stale, root)
    with pytest.raises(OutputError, match="already exists"):
        ckptmigrate.convert(run, "strip-optimizer", root)
    ckptmigrate.convert(run, "strip-optimizer", root, overwrite=True)
    assert listing(root) == listing(out)


def test_convert_from_s3_to_local_and_verify_a_remote_output(
    estimator: tuple[str, dict[str, np.ndarray]], bucket: str, tmp_path: Path
) -> None:
    run, values = estimator
    # Renaming only: the whole shard is carried over (downloaded), not tensor by tensor.
    mapping = tmp_path / "rename.yaml"
    mapping.write_text("version: 1\nrules:\n  - match: 'dnn/(.*)'\n    rename: 'net/{1}'\n")
    result = ckptmigrate.convert(run, mapping, tmp_path / "local")
    assert result.linked_shards == ("download",)
    with ckptmigrate.open_checkpoint(tmp_path / "local") as ckpt:
        assert same_bits(ckpt.reader.read("net/logits/bias"), values["dnn/logits/bias"])
    # S3 to S3 on the same store: the store copies the shard; --verify restores the
    # published output (downloaded) with TensorFlow.
    result = ckptmigrate.convert(run, mapping, f"{bucket}/renamed", verify=True)
    assert result.linked_shards == ("server-side copy",)
    assert result.verification is not None
    assert result.verification.ok, result.verification


def test_a_failed_upload_deletes_what_it_uploaded(
    estimator: tuple[str, dict[str, np.ndarray]], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = estimator
    out = f"{bucket}/failed"
    real_upload = RemotePath.upload
    uploaded: list[str] = []

    def failing_upload(self: RemotePath, source: Path) -> None:
        if self.name.endswith(".index"):  # the data shard is up by now
            assert uploaded == ["model.ckpt-2.data-00000-of-00001"]
            raise ConnectionError("connection reset by peer")
        real_upload(self, source)
        uploaded.append(self.name)

    monkeypatch.setattr(RemotePath, "upload", failing_upload)
    with pytest.raises(OutputError, match="upload failed"):
        ckptmigrate.convert(run, "strip-optimizer", out)
    assert listing(out) == []

    def interrupted_upload(self: RemotePath, source: Path) -> None:
        if self.name == "checkpoint":  # shards and index are up
            raise KeyboardInterrupt
        real_upload(self, source)

    monkeypatch.setattr(RemotePath, "upload", interrupted_upload)
    with pytest.raises(KeyboardInterrupt):
        ckptmigrate.convert(run, "strip-optimizer", out)
    assert listing(out) == []


def test_rewrite_between_s3_and_local_keeps_the_shards_byte_identical(
    tf: Any, big: tuple[str, dict[str, np.ndarray], Path], bucket: str, tmp_path: Path
) -> None:
    url, tensors, local = big
    copied = ckptmigrate.rewrite_checkpoint(url, f"{bucket}/copy", check_crc=True)
    assert str(copied.prefix) == f"{bucket}/copy/model.ckpt"
    back = ckptmigrate.rewrite_checkpoint(str(copied.prefix), tmp_path / "back", check_crc=True)
    shard = "model.ckpt.data-00000-of-00001"
    assert (back.prefix.parent / shard).read_bytes() == (local / shard).read_bytes()
    restored = tf.train.load_checkpoint(str(back.prefix))
    for key, value in tensors.items():
        assert same_bits(restored.get_tensor(key), value), key


def test_outputs_that_hold_the_source_are_refused_before_anything_is_deleted(
    tf: Any, tmp_path: Path, estimator: tuple[str, dict[str, np.ndarray]], bucket: str
) -> None:
    from ckptmigrate import rewrite_checkpoint

    run, _ = estimator
    before = listing(run)
    for output in (run, bucket):  # the source's own directory, and the bucket holding it
        with pytest.raises(OutputError, match="source"):
            rewrite_checkpoint(run, output, overwrite=True)
    assert listing(run) == before
    local, _ = save_estimator_checkpoint(tf, tmp_path / "local")
    with pytest.raises(OutputError, match="source"):
        rewrite_checkpoint(local, tmp_path, overwrite=True)
    assert Path(f"{local}.index").exists()


def test_an_unreachable_output_store_is_a_clean_error(
    tf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, _ = save_estimator_checkpoint(tf, tmp_path / "local")
    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    result = runner.invoke(
        app, ["convert", str(local), "-m", "strip-optimizer", "-o", "s3://nowhere/out"]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_awkward_remote_layouts_resolve_like_local_ones(
    tf: Any, tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, _ = save_estimator_checkpoint(tf, tmp_path / "run")
    # a directory name with glob characters, and no state file
    (tmp_path / "run" / "checkpoint").rename(tmp_path / "state")
    upload(tmp_path / "run", f"{bucket}/run[1]")
    report = ckptmigrate.inspect_checkpoint(f"{bucket}/run[1]/")
    assert report.format == "v2"
    # a state file recording another store's URL: the checkpoint beside it is used
    (tmp_path / "run" / "checkpoint").write_text(
        f'model_checkpoint_path: "gs://elsewhere/run/{prefix.name}"\n'
    )
    upload(tmp_path / "run", f"{bucket}/moved")
    located = ckptmigrate.inspect_checkpoint(f"{bucket}/moved")
    assert located.prefix.endswith(f"moved/{prefix.name}")
    # only checkpoints are targets at URLs; a bad read buffer is a clean error
    with pytest.raises(ckptmigrate.CkptMigrateError, match="only checkpoints"):
        ckptmigrate.check(str(prefix), f"{bucket}/moved/{prefix.name}.meta")
    monkeypatch.setenv("CKPTMIGRATE_READ_BUFFER", "abc")
    with pytest.raises(ckptmigrate.CkptMigrateError, match="positive number of bytes"):
        ckptmigrate.inspect_checkpoint(f"{bucket}/moved", check_crc=True)


def test_pytorch_files_on_a_store_read_like_local_ones(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torch.save state_dict on a store: its zip directory and data.pkl read through a
    buffered file, its local headers fetched together, each tensor by a ranged request;
    what it lists, reads, checks and converts to is what the local copy gives."""
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(3)
    base = torch.randn(6, 8, generator=generator)
    state = {
        "layer.weight": base,
        "layer.weight_t": base.t(),  # a strided view of the same storage
        "layer.bias": torch.arange(8, dtype=torch.float16),
        "steps": torch.tensor(5, dtype=torch.int64),
    }
    local = tmp_path / "pt"
    local.mkdir()
    torch.save(state, local / "model.pt")
    upload(local, f"{bucket}/pt")
    url = f"{bucket}/pt/model.pt"
    monkeypatch.setenv(remote.READ_BUFFER_ENV, "64")  # several requests per storage
    here = ckptmigrate.inspect_checkpoint(local / "model.pt", check_crc=True)
    there = ckptmigrate.inspect_checkpoint(url, check_crc=True)
    assert there.format == "torch"
    assert [r[:6] for r in there.rows] == [r[:6] for r in here.rows]
    assert there.verified_bytes == here.verified_bytes
    with ckptmigrate.open_checkpoint(url) as b:
        for key, value in state.items():
            assert same_bits(b.reader.read(key), value.contiguous().numpy()), key
    report = ckptmigrate.check(url, local / "model.pt", values=True)
    assert report.ok, report
    (tmp_path / "m.yaml").write_text("version: 1\nrules: []\n")
    ckptmigrate.convert(local / "model.pt", tmp_path / "m.yaml", tmp_path / "from-local")
    ckptmigrate.convert(url, tmp_path / "m.yaml", tmp_path / "from-store")
    for path in (tmp_path / "from-local").iterdir():
        if path.name != "ckptmigrate-provenance.json":
            assert (tmp_path / "from-store" / path.name).read_bytes() == path.read_bytes()

    # a damaged storage fails --check-crc by the zip's CRC-32, naming the file
    raw = bytearray((local / "model.pt").read_bytes())
    at = raw.find(base.numpy().tobytes()[:16])
    raw[at + 3] ^= 0x10
    s3().pipe_file(f"{bucket.removeprefix('s3://')}/bad/model.pt", bytes(raw))
    with pytest.raises(ckptmigrate.CorruptCheckpointError, match="does not match the CRC-32"):
        ckptmigrate.inspect_checkpoint(f"{bucket}/bad/model.pt", check_crc=True)
    # a refusing store is the store's error, naming the object
    reader = ckptmigrate.open_checkpoint(url).reader
    monkeypatch.setattr(RemotePath.from_url(url).fs, "cat_file", _refuse)
    with pytest.raises(ckptmigrate.CkptMigrateError, match="cannot read from the store"):
        reader.read("layer.bias")


@pytest.fixture
def safetensors_models(tmp_path: Path, bucket: str) -> tuple[Path, str]:
    """A model as one safetensors file and sharded (three files and an index), written by
    the format's reference implementation, locally and on the store: (local dir, URL)."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(5)
    tensors = {
        f"layers.{i}.{part}": rng.standard_normal(shape).astype(dtype)
        for i in range(6)
        for part, shape, dtype in (("weight", (24, 16), "f4"), ("bias", (24,), "f2"))
    }
    tensors["step"] = np.array([7], np.int64)
    local = tmp_path / "st"
    local.mkdir()
    safetensors_numpy.save_file(tensors, str(local / "one.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    for shard in range(3):
        part = {k: tensors[k] for k in names[shard::3]}
        name = f"model-{shard + 1:05d}-of-00003.safetensors"
        safetensors_numpy.save_file(part, str(local / name))
        weight_map.update(dict.fromkeys(part, name))
    (local / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    upload(local, f"{bucket}/st")
    return local, f"{bucket}/st"


@pytest.mark.parametrize("name", ["one.safetensors", "model.safetensors.index.json"])
def test_safetensors_models_on_a_store_read_like_local_ones(
    safetensors_models: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    local_dir, url_dir = safetensors_models
    local, url = local_dir / name, f"{url_dir}/{name}"
    here = ckptmigrate.inspect_checkpoint(local, check_crc=True)
    monkeypatch.setenv(remote.READ_BUFFER_ENV, "1000")  # several requests per file
    there = ckptmigrate.inspect_checkpoint(url, check_crc=True)
    assert there.format == "safetensors"
    assert [r[:6] for r in there.rows] == [r[:6] for r in here.rows]
    assert there.verified_bytes == here.verified_bytes
    with ckptmigrate.open_checkpoint(local) as a, ckptmigrate.open_checkpoint(url) as b:
        for key in a.reader.variable_keys():
            assert same_bits(b.reader.read(key), a.reader.read(key)), key
    report = ckptmigrate.check(url, local, values=True)
    assert report.ok, report

    # convert from the store writes what the local source gives, byte for byte
    (tmp_path / "m.yaml").write_text(
        "version: 1\nrules:\n  - {match: 'layers\\.(\\d+)\\.weight', rename: 'dense_{1}/kernel'}\n"
    )
    ckptmigrate.convert(local, tmp_path / "m.yaml", tmp_path / "from-local")
    ckptmigrate.convert(url, tmp_path / "m.yaml", tmp_path / "from-store")
    for path in (tmp_path / "from-local").iterdir():
        if path.name != "ckptmigrate-provenance.json":
            assert (tmp_path / "from-store" / path.name).read_bytes() == path.read_bytes()


def test_damaged_safetensors_files_on_a_store_are_named(
    safetensors_models: tuple[Path, str], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_dir, url_dir = safetensors_models
    # a shard the index names is not on the store
    s3().rm_file(f"{url_dir.removeprefix('s3://')}/model-00002-of-00003.safetensors")
    s3().invalidate_cache()
    with pytest.raises(ckptmigrate.CkptMigrateError, match="no such file") as missing:
        ckptmigrate.inspect_checkpoint(f"{url_dir}/model.safetensors.index.json")
    assert "model-00002-of-00003.safetensors" in str(missing.value)
    # a truncated copy: refused when its header is read, as locally
    data = (local_dir / "one.safetensors").read_bytes()
    s3().pipe_file(f"{bucket.removeprefix('s3://')}/cut/one.safetensors", data[:-100])
    with pytest.raises(ckptmigrate.CorruptCheckpointError, match="the tensors need"):
        ckptmigrate.inspect_checkpoint(f"{bucket}/cut/one.safetensors")
    # a store answering short while the data is checked: the tensor cut is named
    reader = ckptmigrate.open_checkpoint(f"{url_dir}/one.safetensors").reader
    store = RemotePath.from_url(url_dir).fs
    real = store.cat_file
    monkeypatch.setattr(store, "cat_file", lambda *a, **k: real(*a, **k)[:-10])
    with pytest.raises(ckptmigrate.CorruptCheckpointError, match="ends inside this tensor") as cut:
        reader.verify()
    assert cut.value.variable in reader.variable_keys()
    # and a failing store is the store's error, naming the object
    monkeypatch.setattr(store, "cat_file", _refuse)
    with pytest.raises(ckptmigrate.CkptMigrateError, match="cannot read from the store"):
        reader.read(reader.variable_keys()[0])


@pytest.mark.parametrize(
    ("name", "data", "said"),
    [
        ("model.pt", b"PK\x03\x04 not a zip", "cannot read it as a torch.save zip archive"),
        ("m.safetensors.index.json", b"{not json", "cannot read the index as JSON"),
        ("m.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}", "not valid JSON"),
    ],
)
def test_damaged_files_on_a_store_are_called_damaged_not_store_failures(
    bucket: str, name: str, data: bytes, said: str
) -> None:
    """What a parser says of the bytes is not the store's failure: the message names the
    damage, not the network."""
    s3().pipe_file(f"{bucket.removeprefix('s3://')}/damaged/{name}", data)
    with pytest.raises(ckptmigrate.CorruptCheckpointError, match=said) as damaged:
        ckptmigrate.inspect_checkpoint(f"{bucket}/damaged/{name}")
    assert "cannot read from the store" not in str(damaged.value)


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise PermissionError("AccessDenied")
