"""The micro base-training chain through the runner: each artifact publishes its optimizer state and kept
checkpoints, and the LR continues from stage to stage."""
import json

import pytest

from olmo3_core.config.compose import compose_config
from olmo3_core.runner import run_plan

pytestmark = pytest.mark.slow


def test_micro_chain_hands_on_lr_and_optimizer_state_through_published_artifacts(tmp_path):
    cfg = compose_config(["preset=micro", "stages=[longmino]", f"storage.root={tmp_path / 'artifacts'}"])
    manifests = run_plan(cfg)
    root = tmp_path / "artifacts"
    outputs = {name: json.loads((root / name / m["fingerprint"] / "job_outputs.json").read_text())
               for name, m in manifests.items() if name in ("pretrain", "midtrain", "longmino")}
    pre, mid, long = outputs["pretrain"], outputs["midtrain"], outputs["longmino"]
    assert len(pre["loss_history"]) == cfg.pretrain.anneal_stop_step
    assert mid["loss_history"][0]["lr"] == pytest.approx(pre["summary"]["final_lr"], rel=0.01)
    assert mid["summary"]["final_lr"] == 0.0 and long["summary"]["final_lr"] == 0.0
    assert [k["step"] for k in pre["kept"]] == [20] and pre["kept"][0]["path"] == "checkpoints/step20"
    assert {o["precision"] for o in outputs.values()} <= {"bf16", "fp32"}
    for name in ("pretrain", "midtrain", "longmino"):
        files = json.dumps(manifests[name])
        assert "optimizer/state.pt" in files and "lr_curve.png" in files, name
    assert "checkpoints/step20/model.safetensors" in json.dumps(manifests["pretrain"])
