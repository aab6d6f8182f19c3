"""Souped midtraining on the micro preset through the runner: two ingredient runs, their soup, and longmino
continuing from it, with the lineage fanning in and the LR plotted across the whole chain."""
import json

import pytest

from olmo3_core.config.compose import compose_config
from olmo3_core.lineage import summarize, walk
from olmo3_core.runner import run_plan

pytestmark = pytest.mark.slow


def test_two_ingredients_are_souped_and_longmino_continues_from_the_soup(tmp_path):
    cfg = compose_config(["preset=micro", "stages=[longmino]", "midtrain.ingredients=[0,1]", "midtrain.max_steps=6",
                          "midtrain.checkpoint_every=3", "longmino.max_steps=4", "midtrain.soup.heldout_items=8",
                          f"storage.root={tmp_path / 'artifacts'}"])
    manifests = run_plan(cfg)
    assert list(manifests) == ["data", "pretrain", "midtrain/seed0", "midtrain/seed1", "soup", "longmino"]
    soup, long = manifests["soup"], manifests["longmino"]
    files = json.dumps(soup["files"])
    assert "model/model.safetensors" in files and "optimizer/state.pt" in files and "model/tokenizer.json" in files

    rows = {r["stage"]: r for r in summarize(walk(long))}
    assert rows["longmino"]["upstream"] == ["data", "soup"]
    assert rows["soup"]["upstream"] == ["midtrain/seed0", "midtrain/seed1"]
    assert [u["fingerprint"] for u in soup["upstream"]] == [manifests[f"midtrain/seed{s}"]["fingerprint"] for s in (0, 1)]

    report = soup["report_markdown"]
    assert "| midtrain/seed0 | 0 |" in report and "| midtrain/seed1 | 1 |" in report and "| soup | - |" in report
    assert {"heldout_loss/seed0", "heldout_loss/seed1", "heldout_loss/soup"} <= set(soup["metrics"])

    # longmino's curves run pretrain -> both ingredients -> longmino on one step axis, the LR handed on
    root = tmp_path / "artifacts"
    chain = json.loads((root / "longmino" / long["fingerprint"] / "chain_curves.json").read_text())["curves"]
    assert [c["stage"] for c in chain] == ["pretrain", "midtrain/seed0", "midtrain/seed1", "longmino"]
    pre_end = cfg.pretrain.anneal_stop_step
    assert [c["offset"] for c in chain] == [0, pre_end, pre_end, pre_end + 6]
    assert "lr_curve.png" in json.dumps(long["files"]) and "chain_loss_curve.png" in json.dumps(long["files"])
