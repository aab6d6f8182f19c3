import json

import pytest

from olmo3_core.artifacts import MANIFEST, ArtifactCorrupt, ArtifactStore


def _publish(store, fp="f" * 64):
    staging = store.staging_dir("pretrain", fp)
    (staging / "model").mkdir()
    (staging / "model" / "weights.bin").write_bytes(b"abc")
    (staging / "work").mkdir()
    (staging / "work" / "ckpt").write_text("in progress")
    return store.publish("pretrain", fp, staging, {"stage": "pretrain", "kind": "pretrain", "fingerprint": fp})


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


def test_half_written_manifest_is_not_complete(tmp_path):
    store = ArtifactStore(str(tmp_path))
    staging = store.staging_dir("sft", "b" * 64)
    (staging / MANIFEST).write_text('{"fingerprint": "bbb')
    assert store.load_manifest("sft", "b" * 64) is None


def test_materialize_verifies_hashes(tmp_path):
    store = ArtifactStore(str(tmp_path))
    manifest = _publish(store)
    path = store.materialize(manifest)
    assert (path / "model" / "weights.bin").read_bytes() == b"abc"
    (path / "model" / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(ArtifactCorrupt, match="weights.bin"):
        store.materialize(manifest)


def test_manifest_is_json_with_uri(tmp_path):
    store = ArtifactStore(str(tmp_path))
    manifest = _publish(store)
    on_disk = json.loads((tmp_path / "pretrain" / ("f" * 64) / MANIFEST).read_text())
    assert on_disk["uri"] == f"{tmp_path}/pretrain/{'f' * 64}" == manifest["uri"]
