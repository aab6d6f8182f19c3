"""The whole model flow on the micro preset, through real Prefect, MLflow, DeepSpeed and TRL."""
import json
import time

import pytest
import torch
from mlflow.tracking import MlflowClient
from transformers import AutoModelForCausalLM, AutoTokenizer

from olmo3_cli.main import main
from olmo3_flows.model_flow import model_flow
from olmo3_core.artifacts import ArtifactStore
from olmo3_core.home import default_storage_root, default_tracking_uri

OVERRIDES = ["preset=micro"]


@pytest.fixture(scope="module")
def first_run():
    started = time.time()
    uris = model_flow(overrides=OVERRIDES)
    return uris, time.time() - started


def _manifest(uri):
    return json.loads(open(f"{uri}/artifact.json").read())


def test_every_stage_of_every_branch_completes(first_run):
    uris, _ = first_run
    expected = {"data", "pretrain", "midtrain", "longmino", "base/eval", "base/export",
                *(f"{b}/{s}" for b in ("instruct", "think") for s in ("sft", "dpo", "rlvr", "eval", "export")),
                "rl_zero/rlvr", "rl_zero/eval", "rl_zero/export"}
    assert set(uris) == expected
    store = ArtifactStore(default_storage_root())
    for name, uri in uris.items():
        manifest = _manifest(uri)
        assert manifest["stage"] == name and manifest["files"], name
        assert store.load_manifest(manifest["kind"], manifest["fingerprint"]) is not None
        store.verify(store.materialize(manifest, verify=False), manifest["files"])


def test_exported_models_load_with_their_chat_template_and_generate(first_run):
    uris, _ = first_run
    for line, marker in (("base", None), ("instruct", None), ("think", "<think>"), ("rl_zero", None)):
        model_dir = f"{uris[f'{line}/export']}/model"
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}],
                                               add_generation_prompt=True, tokenize=False)
        assert prompt.startswith("<|im_start|>user\n")
        if marker:
            assert prompt.endswith(marker)
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
        assert out.shape[1] > ids["input_ids"].shape[1]
        assert torch.isfinite(model(**ids).logits).all()


def test_lineage_json_reaches_the_raw_data(first_run, capsys):
    uris, _ = first_run
    assert main(["lineage", f"{uris['instruct/export']}/model", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    stages = [r["stage"] for r in rows]
    assert stages[0] == "instruct/export" and stages[-1] == "data"
    for needed in ("instruct/rlvr", "instruct/dpo", "instruct/sft", "longmino", "midtrain", "pretrain"):
        assert needed in stages
    data = rows[-1]
    assert data["raw_inputs"] and all(len(r["sha256"]) == 64 for r in data["raw_inputs"])
    assert all(r["mlflow_run_id"] for r in rows)


def test_mlflow_records_parent_child_runs_inputs_and_registered_models(first_run):
    uris, _ = first_run
    client = MlflowClient(default_tracking_uri())
    sft = _manifest(uris["instruct/sft"])
    run = client.get_run(sft["mlflow"]["run_id"])
    assert run.data.tags["fingerprint"] == sft["fingerprint"]
    assert "mlflow.parentRunId" in run.data.tags
    assert run.data.params["template"] == "instruct"
    inputs = run.inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [_manifest(uris["longmino"])["fingerprint"][:32]]
    data_run = client.get_run(_manifest(uris["data"])["mlflow"]["run_id"])
    assert len(data_run.inputs.dataset_inputs) > 0
    assert "eval/accuracy" not in run.data.metrics
    versions = client.search_model_versions("name='olmo3-instruct'")
    assert versions and versions[0].run_id == _manifest(uris["instruct/export"])["mlflow"]["run_id"]
    evals = client.get_run(_manifest(uris["instruct/eval"])["mlflow"]["run_id"]).data.metrics
    assert any(k.endswith("procedural_math/accuracy") for k in evals)


def test_second_run_is_fully_cached_and_much_faster(first_run):
    uris, first_wall = first_run
    started = time.time()
    again = model_flow(overrides=OVERRIDES)
    second_wall = time.time() - started
    assert again == uris
    assert second_wall < first_wall / 3, (first_wall, second_wall)


def test_changing_an_sft_knob_reruns_that_branch_from_sft_only(first_run):
    uris, _ = first_run
    changed = model_flow(overrides=OVERRIDES + ["posttrain.instruct.sft.lr=0.002"])
    differs = {name for name in uris if changed[name] != uris[name]}
    assert differs == {"instruct/sft", "instruct/dpo", "instruct/rlvr", "instruct/eval", "instruct/export"}


def test_a_training_token_traces_back_to_its_document(first_run, capsys):
    uris, _ = first_run
    shard = f"{uris['data']}/mixes/pretrain/shard_00000.npy"
    assert main(["trace-tokens", shard, "1000"]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert traced["source"] in {"prose", "code", "math"} and traced["document_id"]
    assert traced["span"][0] <= 1000 < traced["span"][1] and traced["snippet"]
