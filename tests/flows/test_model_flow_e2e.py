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
    expected = {"data", "trace_index", "pretrain", "midtrain", "longmino", "base/eval", "base/export",
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


def test_a_model_output_traces_back_through_the_flows_own_index(first_run, capsys):
    """The flow built the data's trace_index stage: trace-output reuses it (it builds only the SFT rows' index)."""
    import numpy as np

    uris, _ = first_run
    index = _manifest(uris["trace_index"])
    assert [u["fingerprint"] for u in index["upstream"]] == [_manifest(uris["data"])["fingerprint"]]
    assert index["metrics"]["tokens_indexed"] > 0
    from tokenizers import Tokenizer

    tokens = np.load(f"{uris['data']}/mixes/pretrain/shard_00000.npy")[2000:2040].tolist()
    text = Tokenizer.from_file(f"{uris['data']}/tokenizer/tokenizer.json").decode(tokens)
    assert main(["trace-output", text, "--model", f"{uris['instruct/export']}/model", "--json"]) == 0
    out = capsys.readouterr()
    assert "built the trace index of data" not in out.err
    assert json.loads(out.out)[0]["length"] >= 20


def test_mlflow_lineage_is_clickable_from_the_registered_model_to_the_data(first_run):
    uris, _ = first_run
    client = MlflowClient(default_tracking_uri())
    export, data = _manifest(uris["instruct/export"]), _manifest(uris["data"])
    experiment = client.get_experiment(export["mlflow"]["experiment_id"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view
    versions = client.search_model_versions(f"name='olmo3-instruct' and tags.data_fingerprint='{data['fingerprint']}'")
    (version,) = [v for v in versions if v.tags["fingerprint"] == export["fingerprint"]]  # the SFT-knob test adds one
    assert version.tags["git_commit"] and version.tags["template_hash"]
    data_link = f"#/experiments/{experiment.experiment_id}/runs/{data['mlflow']['run_id']}"
    assert data_link in version.description and "| instruct/sft |" in version.description
    assert data["raw_inputs"][0]["sha256"][:16] in version.description
    assert not client.search_model_versions(f"tags.data_fingerprint='{'0' * 64}'")
    assert version.source.startswith("models:/")  # the version is the export run's LoggedModel
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    assert model.source_run_id == export["mlflow"]["run_id"] and model.status == "READY"
    assert any(m.key.endswith("procedural_math/accuracy") for m in model.metrics or [])
    # every stage run links the runs it was built from: sft -> longmino -> ... -> data
    note = client.get_run(_manifest(uris["instruct/sft"])["mlflow"]["run_id"]).data.tags["mlflow.note.content"]
    assert f"runs/{_manifest(uris['longmino'])['mlflow']['run_id']}?workflowType=machine_learning)" in note
    pretrain_note = client.get_run(_manifest(uris["pretrain"])["mlflow"]["run_id"]).data.tags["mlflow.note.content"]
    assert data_link in pretrain_note


def test_prefect_shows_waiting_stages_as_waiting(first_run):
    """One stage at a time (orchestration.max_parallel_stages=1): no two task runs are Running at once,
    so each task run's duration is its own work, not time spent queued."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    uris, _ = first_run
    flow_run_id = _manifest(uris["data"])["prefect_flow_run_id"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        artifacts = client.read_artifacts()
    intervals = sorted((r.start_time, r.end_time, r.name) for r in runs if r.start_time)
    assert len(intervals) == len(uris)
    for (_, end, name), (start, _, following) in zip(intervals, intervals[1:]):
        assert start >= end, f"{following} was Running while {name} still ran"
    assert {a.key for a in artifacts} >= {"lineage-instruct", "lineage-base", "model-flow-summary"}
