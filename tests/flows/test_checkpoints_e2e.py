"""Checkpoints over training on the micro preset, through real Prefect, MLflow, DeepSpeed and TRL: the base
eval's checkpoint curve in MLflow, `eval-checkpoint` on a kept checkpoint, and post-training forked from one."""
import json

import pytest
from mlflow.tracking import MlflowClient

from olmo3_cli.main import main
from olmo3_core.checkpoints import derived_fingerprint
from olmo3_core.home import default_tracking_uri

pytestmark = pytest.mark.slow  # trains the micro base (and one SFT): a few minutes on 2 CPU cores

# the base line only, with longmino keeping a checkpoint too (pretrain keeps step20 in the micro preset)
BASE = ["preset=micro", "posttrain.branches=[]", "stages=[eval]", "longmino.keep_every=5"]


def _manifest(uri):
    return json.loads(open(f"{uri}/artifact.json").read())


@pytest.fixture(scope="module")
def base_run():
    from olmo3_flows.model_flow import model_flow

    return model_flow(overrides=BASE)


def test_mlflow_holds_the_checkpoint_curves_by_global_step(base_run):
    evaluation = _manifest(base_run["base/eval"])
    client = MlflowClient(default_tracking_uri())
    for metric in ("bits_per_byte", "accuracy"):
        history = client.get_metric_history(evaluation["mlflow"]["run_id"], f"checkpoint_curve/procedural_math/{metric}")
        # pretrain step20 and final (40), midtrain final (60), longmino step5 (65) and final (70)
        assert sorted(m.step for m in history) == [20, 40, 60, 65, 70], metric
    n = client.get_metric_history(evaluation["mlflow"]["run_id"], "checkpoint_curve/procedural_math/accuracy_n")
    assert {m.value for m in n} == {16.0}
    curve = json.loads(open(f"{base_run['base/eval']}/checkpoint_curve.json").read())
    assert [p["reused"] for p in curve["points"]] == [False, False, False, False, True]  # longmino's final: the eval's own
    assert "checkpoint_curve_bits_per_byte.png" in evaluation["files"]
    assert "#### Checkpoint curve (procedural_math)" in evaluation["report_markdown"]
    artifacts = {a.path for a in client.list_artifacts(evaluation["mlflow"]["run_id"], "plots")}
    assert "plots/checkpoint_curve_accuracy.png" in artifacts


def test_eval_checkpoint_evaluates_a_kept_checkpoint(base_run, capsys):
    pretrain = _manifest(base_run["pretrain"])
    assert main(["eval-checkpoint", f"{base_run['pretrain']}/checkpoints/step20", *BASE[:2]]) == 0
    out = capsys.readouterr().out
    assert "evaluated pretrain checkpoint step20" in out
    results_path = out.strip().splitlines()[-1].rsplit(": ", 1)[1]
    evaluation = _manifest(results_path.rsplit("/", 1)[0])
    assert [u["fingerprint"] for u in evaluation["upstream"]] == [derived_fingerprint(pretrain["fingerprint"], 20)]
    results = json.loads(open(results_path).read())["results"]
    assert results["pretrain"]["procedural_math"]["metrics"]["bits_per_byte"]["n"] == 16
    assert main(["eval-checkpoint", f"{base_run['pretrain']}/checkpoints/step30", *BASE[:2]]) == 2
    assert "kept: step20" in capsys.readouterr().err


def test_post_training_forks_from_a_kept_checkpoint_and_lineage_names_it(base_run, capsys):
    from olmo3_flows.model_flow import model_flow

    longmino = _manifest(base_run["longmino"])
    uris = model_flow(overrides=["preset=micro", "posttrain.branches=[instruct]", "stages=[sft]",
                                 f"fork_from={base_run['longmino']}/checkpoints/step5"])
    assert set(uris) == {"longmino", "instruct/sft"}
    sft = _manifest(uris["instruct/sft"])
    assert [u["fingerprint"] for u in sft["upstream"]] == [derived_fingerprint(longmino["fingerprint"], 5)]
    assert main(["lineage", uris["instruct/sft"], "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["stage"] for r in rows][:3] == ["instruct/sft", "longmino", "longmino"]
    assert rows[1]["checkpoint"]["step"] == 5 and rows[1]["checkpoint"]["path"] == "checkpoints/step5"
    assert rows[-1]["stage"] == "data"
    assert main(["lineage", uris["instruct/sft"]]) == 0
    assert "longmino@step5" in capsys.readouterr().out
