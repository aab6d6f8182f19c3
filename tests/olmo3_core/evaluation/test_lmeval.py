"""lm-eval task definitions over the project's eval items, and the harness's number against ours.

The agreement test needs `lm-eval` (the `lmeval` extra); it runs offline on a tiny random model.
"""
from __future__ import annotations

import json

import pytest
import yaml

from olmo3_core.config.schema import EvalConfig
from olmo3_core.evaluation.generate import Generator
from olmo3_core.evaluation.lmeval import write_tasks
from olmo3_core.evaluation import stage
from olmo3_core.evaluation.prompts import format_prompts
from olmo3_core.problems.evalsets import get_eval_set, load_eval_set

CFG = EvalConfig(fewshot=1, max_new_tokens=8)


def test_tasks_read_the_eval_stage_prompts(tmp_path):
    files = write_tasks(tmp_path / "tasks", "procedural_math", CFG, size=4)
    assert set(files.tasks) == {"olmo3_procedural_math_loglik", "olmo3_procedural_math_gen"}
    rows = load_eval_set("procedural_math", size=4, seed=CFG.seed)
    prompts, refs = format_prompts(rows, None, None, CFG, get_eval_set("procedural_math"))
    items = [json.loads(line) for line in files.data.read_text().splitlines()]
    assert [(i["context"], i["target"], i["answer"]) for i in items] == list(zip(prompts, refs, [r["answer"] for r in rows]))
    loglik = yaml.safe_load(files.tasks["olmo3_procedural_math_loglik"].read_text())
    assert loglik["output_type"] == "loglikelihood" and loglik["dataset_kwargs"]["data_files"]["test"] == str(files.data)
    assert set(write_tasks(tmp_path / "t2", "ifeval", CFG, size=2).tasks) == {"olmo3_ifeval_loglik"}
    with pytest.raises(ValueError, match="needle"):
        write_tasks(tmp_path / "t3", "needle", CFG, size=2)


def test_lm_eval_loglikelihood_agrees_with_ours(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from tests.olmo3_core.export.test_export import _model_artifact

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_dir = _model_artifact(tmp_path / "m").path / "model"
    files = write_tasks(tmp_path / "tasks", "procedural_math", CFG, size=4)
    # max_length: lm-eval cuts contexts to the model's max positions (128 here) unless told; the eval stage
    # scores the whole few-shot prompt
    out = simple_evaluate(model="hf", model_args={"pretrained": str(model_dir), "dtype": "float32", "max_length": 4096},
                          device="cpu", tasks=["olmo3_procedural_math_loglik", "olmo3_procedural_math_gen"],
                          bootstrap_iters=0, log_samples=True,
                          task_manager=TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False))
    theirs = [s["resps"][0][0][0] for s in sorted(out["samples"]["olmo3_procedural_math_loglik"], key=lambda s: s["doc_id"])]
    items = [json.loads(line) for line in files.data.read_text().splitlines()]
    ours = Generator(model_dir, "transformers").reference_nll([i["context"] for i in items], [i["target"] for i in items])
    assert [-ll for ll in theirs] == pytest.approx(ours, rel=1e-4)  # item by item, summed over the reference
    assert out["results"]["olmo3_procedural_math_loglik"]["acc,none"] >= 0.0
    # greedy exact match on the final number: the harness and the eval stage's math accuracy
    ours_acc = stage.evaluate_model(model_dir, None, EvalConfig(sets={"procedural_math": 4}, fewshot=1, max_new_tokens=8),
                                    {"procedural_math": load_eval_set("procedural_math", 4, CFG.seed)})
    assert out["results"]["olmo3_procedural_math_gen"]["exact_match,answer"] == \
        ours_acc["procedural_math"].metrics["accuracy"].value


def test_eval_stage_reports_the_harness_beside_its_own_numbers(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    from tests.olmo3_core.export.test_export import _model_artifact

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_dir = _model_artifact(tmp_path / "m").path / "model"
    cfg = EvalConfig(sets={"procedural_math": 4, "ifeval": 2}, fewshot=1, max_new_tokens=8,
                     lm_eval_sets=["procedural_math", "ifeval"])
    sets, _ = stage.load_sets(cfg)
    results = stage.evaluate_model(model_dir, None, cfg, sets)
    for name in ("procedural_math", "ifeval"):
        ours, theirs = results[name].metrics, results[f"lm_eval/{name}"].metrics
        assert theirs["bits_per_byte"].value == pytest.approx(ours["bits_per_byte"].value, rel=1e-4)
        assert theirs["bits_per_byte"].n == ours["bits_per_byte"].n
    assert results["lm_eval/procedural_math"].metrics["exact_match"].value == results["procedural_math"].metrics["accuracy"].value
    assert results["lm_eval/ifeval"].backend.startswith("lm-eval ")
    text = stage.report("base/eval", {"longmino": results}, {}, [], {})
    assert "| longmino | lm_eval/procedural_math | bits_per_byte |" in text


def test_lm_eval_sets_are_checked_at_compose_time():
    from olmo3_core.config.compose import compose_config
    from olmo3_core.config.typed import ConfigError

    with pytest.raises(ConfigError, match="eval.lm_eval_sets: 'humaneval' must be an evaluated eval set"):
        compose_config(["preset=micro", "eval.lm_eval_sets=[humaneval]"])
