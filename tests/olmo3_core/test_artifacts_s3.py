"""The artifact store on S3 (moto's S3 server on loopback), through the same code as local disk."""
import pytest

from olmo3_core.artifacts import ArtifactStore


@pytest.fixture
def store(s3_endpoint, s3_bucket, tmp_path):
    _, bucket = s3_bucket
    return ArtifactStore(f"s3://{bucket}/runs", {"client_kwargs": {"endpoint_url": s3_endpoint}}, tmp_path / "cache")


def _stage(store, fp):
    staging = store.staging_dir("sft", fp)
    (staging / "model").mkdir(parents=True)
    (staging / "model" / "weights.bin").write_bytes(b"\x00" * 1000)
    return staging


def test_publish_and_materialize_through_s3(store, s3_bucket, tmp_path):
    fs, bucket = s3_bucket
    fp = "c" * 64
    staging = _stage(store, fp)
    assert store.load_manifest("sft", fp) is None
    manifest = store.publish("sft", fp, staging, {"stage": "instruct/sft", "kind": "sft", "fingerprint": fp,
                                                             "config": {}, "upstream": []})
    assert fs.exists(f"{bucket}/runs/sft/{fp}/artifact.json")
    assert fs.cat_file(f"{bucket}/runs/sft/{fp}/model/weights.bin") == b"\x00" * 1000
    assert not staging.exists(), "local staging is removed once the artifact is in the store"
    local = store.materialize(store.load_manifest("sft", fp))
    assert (local / "model" / "weights.bin").stat().st_size == 1000 and manifest["uri"].startswith("s3://")


def test_files_without_manifest_are_not_complete_on_s3(store, s3_bucket):
    fs, bucket = s3_bucket
    fs.pipe_file(f"{bucket}/runs/sft/{'d' * 64}/model/weights.bin", b"half")
    assert store.load_manifest("sft", "d" * 64) is None


def test_transient_s3_errors_are_retried(store, monkeypatch):
    fp = "e" * 64
    staging = _stage(store, fp)
    real_put, failures = store.fs.put_file, []

    def flaky_put(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise ConnectionError("connection reset by peer")
        return real_put(*args, **kwargs)

    monkeypatch.setattr(store.fs, "put_file", flaky_put)
    monkeypatch.setattr("olmo3_core.artifacts.time.sleep", lambda s: None)
    store.publish("sft", fp, staging, {"stage": "s", "kind": "sft", "fingerprint": fp, "config": {}, "upstream": []})
    assert len(failures) == 2 and store.load_manifest("sft", fp) is not None
