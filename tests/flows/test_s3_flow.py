"""The flow with its artifacts and MLflow artifacts on S3 (moto's S3 server on loopback)."""
import json

import pytest

from olmo3_cli.main import main
from olmo3_flows.model_flow import model_flow

pytestmark = pytest.mark.slow


def test_flow_artifacts_and_lineage_on_s3(s3_endpoint, s3_bucket, monkeypatch, capsys):
    fs, bucket = s3_bucket
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_endpoint)
    storage = [f"storage.root=s3://{bucket}/artifacts",
               f"+storage.storage_options.client_kwargs.endpoint_url={s3_endpoint}"]
    overrides = ["preset=micro", "stages=[pretrain]", "pretrain.max_steps=4", "pretrain.warmup_steps=2", "pretrain.anneal_stop_step=null", "tracking.experiment=s3-flow",
                 f"tracking.artifact_location=s3://{bucket}/mlflow", *storage]
    uris = model_flow(overrides=overrides)
    assert uris["pretrain"].startswith(f"s3://{bucket}/artifacts/pretrain/")
    manifest = json.loads(fs.cat_file(uris["pretrain"].removeprefix("s3://") + "/artifact.json"))
    assert "model/model.safetensors" in manifest["files"]
    assert fs.exists(uris["data"].removeprefix("s3://") + "/tokenizer/tokenizer.json")
    assert fs.find(f"{bucket}/mlflow"), "MLflow run artifacts (plots, manifests) land in the S3 artifact location"

    assert main(["lineage", uris["pretrain"], "--json", *storage]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["stage"] for r in rows] == ["pretrain", "data"]
    assert model_flow(overrides=overrides) == uris, "a rerun finds the S3 artifacts complete"
