import json

import pytest

import shutil

from olmo3_core.artifacts import MANIFEST, ArtifactCorrupt, ArtifactStore, InvalidManifest
from olmo3_core.lineage import LineageError, read_manifest, walk


def _publish(store, fp="f" * 64, kind="pretrain", upstream=()):
    staging = store.staging_dir(kind, fp)
    (staging / "model").mkdir()
    (staging / "model" / "weights.bin").write_bytes(b"abc")
    (staging / "work").mkdir()
    (staging / "work" / "ckpt").write_text("in progress")
    links = [{k: m[k] for k in ("stage", "kind", "fingerprint", "uri")} for m in upstream]
    return store.publish(kind, fp, staging, {"stage": kind, "kind": kind, "fingerprint": fp, "config": {},
                                             "upstream": links})


def test_manifest_written_last_and_lists_hashed_files(tmp_path):
    store = ArtifactStore(str(tmp_path))
    fp = "a" * 64
    staging = store.staging_dir("pretrain", fp)
    (staging / "partial.bin").write_bytes(b"x")
    assert store.load_manifest("pretrain", fp) is None, "files without a manifest must not look complete"
    manifest = _publish(store, fp)
    assert store.load_manifest("pretrain", fp)["files"] == manifest["files"]
    assert set(manifest["files"]) == {"model/weights.bin", "partial.bin"}
    assert not (staging / "work").exists(), "work in progress is dropped once the artifact is complete"


def test_half_written_manifest_is_never_complete(tmp_path):
    store = ArtifactStore(str(tmp_path))
    staging = store.staging_dir("sft", "b" * 64)
    (staging / MANIFEST).write_text('{"fingerprint": "bbb')
    with pytest.raises(InvalidManifest, match="not valid JSON"):  # the runner quarantines and rebuilds it
        store.load_manifest("sft", "b" * 64)


def test_materialize_verifies_hashes(tmp_path):
    store = ArtifactStore(str(tmp_path))
    manifest = _publish(store)
    path = store.materialize(manifest)
    assert (path / "model" / "weights.bin").read_bytes() == b"abc"
    (path / "model" / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(ArtifactCorrupt, match="weights.bin"):
        store.materialize(manifest)


def test_references_are_stored_relative_and_read_back_absolute(tmp_path):
    store = ArtifactStore(str(tmp_path / "a"))
    data = _publish(store, "d" * 64, kind="data")
    model = _publish(store, "e" * 64, upstream=[data])
    on_disk = json.loads((tmp_path / "a" / "pretrain" / ("e" * 64) / MANIFEST).read_text())
    assert on_disk["uri"] == f"pretrain/{'e' * 64}" and on_disk["upstream"][0]["uri"] == f"data/{'d' * 64}"
    assert model["uri"] == store.load_manifest("pretrain", "e" * 64)["uri"] == f"{tmp_path}/a/pretrain/{'e' * 64}"


def test_a_moved_store_keeps_its_lineage(tmp_path):
    store = ArtifactStore(str(tmp_path / "old"))
    _publish(store, "e" * 64, upstream=[_publish(store, "d" * 64, kind="data")])
    shutil.move(tmp_path / "old", tmp_path / "new")
    chain = walk(read_manifest(f"{tmp_path}/new/pretrain/{'e' * 64}"))
    assert [m["uri"] for m in chain] == [f"{tmp_path}/new/pretrain/{'e' * 64}", f"{tmp_path}/new/data/{'d' * 64}"]


def test_a_damaged_manifest_is_reported_with_its_path(tmp_path):
    store = ArtifactStore(str(tmp_path))
    _publish(store)
    path = tmp_path / "pretrain" / ("f" * 64) / MANIFEST
    path.write_text('{"stage": "pretrain"}')
    with pytest.raises(InvalidManifest, match=f"{path}.*missing"):
        store.load_manifest("pretrain", "f" * 64)
    path.write_text("{not json")
    with pytest.raises(LineageError, match=str(path)):
        read_manifest(str(path.parent))


def test_check_finds_flipped_missing_and_resized_files_and_quarantine_keeps_them(tmp_path):
    store = ArtifactStore(str(tmp_path))
    manifest = _publish(store)
    assert store.check(manifest) is None
    weights = tmp_path / "pretrain" / ("f" * 64) / "model" / "weights.bin"
    weights.write_bytes(b"abd")  # same size, one byte flipped
    assert "sha256" in store.check(manifest)
    weights.write_bytes(b"abcd")
    assert "bytes" in store.check(manifest)
    weights.unlink()
    assert "missing" in store.check(manifest)
    moved = store.quarantine("pretrain", "f" * 64)
    assert store.load_manifest("pretrain", "f" * 64) is None and (tmp_path / ".quarantine").exists()
    assert json.loads(open(f"{moved}/{MANIFEST}").read())["fingerprint"] == "f" * 64


def test_clean_staging_keeps_only_resumable_work(tmp_path):
    store = ArtifactStore(str(tmp_path))
    staging = store.staging_dir("pretrain", "a" * 64)
    (staging / "stray.bin").write_bytes(b"left over")
    (staging / "sub").mkdir()
    (staging / "work").mkdir()
    (staging / "work" / "ckpt").write_text("resume me")
    assert [p.name for p in store.clean_staging("pretrain", "a" * 64).iterdir()] == ["work"]
