"""Kept checkpoints as artifacts: the `<artifact uri>/checkpoints/step<N>` syntax, its derived artifact,
forks from it, and the checkpoint curve's walk, offsets and reuse (no training: artifacts are written
by hand, the evaluation is a stand-in)."""
import json

import pytest

from olmo3_core.artifacts import ArtifactStore, now_iso
from olmo3_core.checkpoints import derived_fingerprint, resolve, split_uri
from olmo3_core.config.compose import compose_config
from olmo3_core.config.typed import ConfigError, to_dict
from olmo3_core.evaluation import curves
from olmo3_core.evaluation.results import SetResult
from olmo3_core.evaluation.stats import Estimate
from olmo3_core.lineage import format_text, summarize, walk
from olmo3_core.plan import build_plan
from olmo3_core.runner import plan_for
from olmo3_core.stages import InputArtifact


def _publish(store, spec, files: dict, upstream=(), fingerprint=None):
    staging = store.clean_staging(spec.kind, fingerprint or spec.fingerprint)
    for rel, text in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_text(text)
    return store.publish(spec.kind, fingerprint or spec.fingerprint, staging, {
        "stage": spec.name, "kind": spec.kind, "line": "base", "fingerprint": fingerprint or spec.fingerprint,
        "config": to_dict(spec.config), "upstream": [{k: u[k] for k in ("stage", "kind", "fingerprint", "uri")} for u in upstream],
        "metrics": {}, "mlflow": {"run_id": "r-" + spec.name}, "created_at": now_iso()})


def _outputs(steps, tokens_per_step, kept):
    return json.dumps({"summary": {"steps": steps, "tokens_seen": steps * tokens_per_step}, "loss_history": [],
                       "kept": [{"step": s, "tokens_seen": s * tokens_per_step, "path": f"checkpoints/step{s}"} for s in kept]})


@pytest.fixture
def store_with_base(tmp_path):
    """data -> pretrain (40 steps, kept 20) -> midtrain (20 steps, none kept), micro preset config."""
    cfg = compose_config(["preset=micro", f"storage.root={tmp_path / 'artifacts'}"])
    store = ArtifactStore(str(tmp_path / "artifacts"))
    plan = build_plan(cfg)
    data = _publish(store, plan.stages["data"], {"tokenizer/t.json": "{}"})
    pretrain = _publish(store, plan.stages["pretrain"], {
        "model/config.json": '{"final": true}', "model/weights": "final", "optimizer/state.pt": "adam",
        "checkpoints/step20/config.json": '{"step": 20}', "checkpoints/step20/weights": "twenty",
        "job_outputs.json": _outputs(40, 512, [20])}, [data])
    midtrain = _publish(store, plan.stages["midtrain"], {
        "model/config.json": "{}", "model/weights": "mid", "optimizer/state.pt": "adam",
        "job_outputs.json": _outputs(20, 512, [])}, [data, pretrain])
    return cfg, store, {"data": data, "pretrain": pretrain, "midtrain": midtrain}


def test_checkpoint_uris_parse():
    assert split_uri("/a/pretrain/abc") == ("/a/pretrain/abc", None)
    assert split_uri("/a/pretrain/abc/checkpoints/step200") == ("/a/pretrain/abc", 200)
    assert split_uri("s3://b/root/pretrain/abc/checkpoints/step20/") == ("s3://b/root/pretrain/abc", 20)
    with pytest.raises(ConfigError, match=r"checkpoints/step<N>, got checkpoints/'latest'"):
        split_uri("/a/pretrain/abc/checkpoints/latest")


def test_a_kept_checkpoint_resolves_to_a_derived_artifact_once(store_with_base):
    _, store, m = store_with_base
    derived = resolve(store, f"{m['pretrain']['uri']}/checkpoints/step20")
    assert derived["kind"] == derived["stage"] == "pretrain"
    assert derived["fingerprint"] == derived_fingerprint(m["pretrain"]["fingerprint"], 20) != m["pretrain"]["fingerprint"]
    assert derived["checkpoint"]["step"] == 20 and derived["checkpoint"]["tokens_seen"] == 20 * 512
    assert [u["fingerprint"] for u in derived["upstream"]] == [m["pretrain"]["fingerprint"]]
    assert derived["files"]["model/weights"] == m["pretrain"]["files"]["checkpoints/step20/weights"]
    assert "optimizer/state.pt" not in derived["files"] and derived["config"] == m["pretrain"]["config"]
    assert store.check(derived) is None
    again = resolve(store, f"{m['pretrain']['uri']}/checkpoints/step20/")
    assert again["created_at"] == derived["created_at"]  # found complete, not rebuilt
    assert resolve(store, m["pretrain"]["uri"])["fingerprint"] == m["pretrain"]["fingerprint"]
    rows = summarize(walk(derived))
    assert [r["stage"] for r in rows] == ["pretrain", "pretrain", "data"]
    assert rows[0]["checkpoint"]["step"] == 20 and rows[1]["checkpoint"] is None
    assert "pretrain@step20" in format_text(rows)


def test_a_step_that_was_not_kept_is_refused_listing_the_kept_ones(store_with_base):
    _, store, m = store_with_base
    with pytest.raises(ConfigError, match=r"pretrain kept no checkpoint at step 30; kept: step20 \(pretrain.keep_every=20"):
        resolve(store, f"{m['pretrain']['uri']}/checkpoints/step30")
    with pytest.raises(ConfigError, match=r"kept: none"):
        resolve(store, f"{m['midtrain']['uri']}/checkpoints/step10")
    with pytest.raises(ConfigError, match="only base-training artifacts"):
        resolve(store, f"{m['data']['uri']}/checkpoints/step10")


def test_fork_from_a_checkpoint_pins_it_and_refuses_optimizer_continuation_before_compute(store_with_base, tmp_path):
    cfg, store, m = store_with_base
    uri = f"{m['pretrain']['uri']}/checkpoints/step20"
    refused = compose_config(["preset=micro", f"storage.root={tmp_path / 'artifacts'}", f"fork_from={uri}", "stages=[midtrain]"])
    with pytest.raises(ConfigError, match=r"midtrain.continue_from_upstream=true continues pretrain's AdamW state "
                                          r"\(optimizer/state.pt\)"):
        plan_for(refused, store)
    fresh = compose_config(["preset=micro", f"storage.root={tmp_path / 'artifacts'}", f"fork_from={uri}",
                            "stages=[midtrain]", "midtrain.continue_from_upstream=false"])
    plan = plan_for(fresh, store)
    assert plan.stages["pretrain"].fingerprint == derived_fingerprint(m["pretrain"]["fingerprint"], 20)
    assert plan.stages["midtrain"].parents == ("data", "pretrain")
    # the finished artifact holds the optimizer state: continuing it is fine
    final = compose_config(["preset=micro", f"storage.root={tmp_path / 'artifacts'}", f"fork_from={m['pretrain']['uri']}",
                            "stages=[midtrain]"])
    assert plan_for(final, store).stages["pretrain"].fingerprint == m["pretrain"]["fingerprint"]


def test_eval_checkpoint_refuses_a_step_that_was_not_kept(store_with_base, tmp_path, capsys):
    from olmo3_cli.main import main

    _, _, m = store_with_base
    assert main(["eval-checkpoint", f"{m['pretrain']['uri']}/checkpoints/step30", "preset=micro",
                 f"storage.root={tmp_path / 'artifacts'}"]) == 2
    assert "kept: step20" in capsys.readouterr().err


def _est(v):
    return Estimate(v, v - 0.1, v + 0.1, 16, "wilson")


class _Recorder:
    def __init__(self):
        self.logged = []

    def log_metrics(self, metrics, step=None):
        self.logged.append((step, metrics))


def test_the_curve_walks_back_through_the_stages_with_global_steps_and_reuses_final_numbers(store_with_base, tmp_path):
    cfg, store, m = store_with_base
    mid = m["midtrain"]
    art = InputArtifact("midtrain", "midtrain", mid["fingerprint"], mid["uri"], store.materialize(mid), None, mid)
    stages = curves.base_stages([art], {})
    assert [(s.manifest["stage"], s.step_offset, s.token_offset) for s in stages] == [("pretrain", 0, 0), ("midtrain", 40, 40 * 512)]
    evaluated_dirs = []

    def evaluate(model_dir, light, rows):
        assert light.sampling.samples == 0 and list(rows) == ["procedural_math"]
        evaluated_dirs.append(model_dir.relative_to(model_dir.parents[2]).as_posix())
        return {"procedural_math": SetResult({"accuracy": _est(0.2), "bits_per_byte": _est(3.0)}, "t")}

    own = {mid["fingerprint"]: {"procedural_math": SetResult({"accuracy": _est(0.5), "pass_at_1": _est(0.5),
                                                              "bits_per_byte": _est(2.0)}, "t")}}
    sets = {"procedural_math": [{"prompt": "q", "answer": "1"}] * 16}
    points = curves.checkpoint_curve(stages, cfg.eval, sets, own, evaluate)
    assert [(p.stage, p.checkpoint, p.global_step, p.reused) for p in points] == [
        ("pretrain", "step20", 20, False), ("pretrain", "final", 40, False), ("midtrain", "final", 60, True)]
    assert len(evaluated_dirs) == 2  # midtrain's final model is not scored twice
    assert points[-1].metrics["accuracy"].value == 0.5 and points[-1].tokens_seen == 60 * 512
    tracker = _Recorder()
    plots = curves.log_curve(points, "procedural_math", tracker, tmp_path)
    assert [s for s, _ in tracker.logged] == [20, 40, 60]
    assert tracker.logged[0][1]["checkpoint_curve/procedural_math/bits_per_byte_n"] == 16
    assert all(p.is_file() for p in plots) and json.loads((tmp_path / "checkpoint_curve.json").read_text())["points"]
    table = curves.curve_report(points, "procedural_math")
    assert "| midtrain | final (eval's own) | 60 | 30,720 | 0.500 [0.400, 0.600] (16) |" in table
    # other items than the eval's: every point is scored on them, the final model too
    from dataclasses import replace
    other = replace(cfg.eval, checkpoint_curve=replace(cfg.eval.checkpoint_curve, items=4))
    assert not any(p.reused for p in curves.checkpoint_curve(stages, other, sets, own, evaluate))


def test_curve_config_is_checked_at_compose_time():
    with pytest.raises(ConfigError, match="eval.checkpoint_curve.metric_set: 'needle' is not a pass/fail eval set"):
        compose_config(["preset=micro", "eval.checkpoint_curve.metric_set=needle"])
    with pytest.raises(ConfigError, match="eval.checkpoint_curve.items is null"):
        compose_config(["preset=micro", "eval.checkpoint_curve.metric_set=humaneval"])
    with pytest.raises(ConfigError, match="eval.checkpoint_curve.items must be > 0"):
        compose_config(["preset=micro", "eval.checkpoint_curve.items=0"])
