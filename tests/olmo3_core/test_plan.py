from olmo3_core.config.compose import compose_config
from olmo3_core.config.typed import to_dict
from olmo3_core.plan import build_plan


def _plan(*overrides):
    return build_plan(compose_config(["preset=micro", *overrides]))


def test_plan_has_every_stage_of_every_branch_in_dependency_order():
    plan = _plan()
    names = list(plan.stages)
    assert names[:4] == ["data", "pretrain", "midtrain", "longmino"]
    for branch in ("instruct", "think"):
        assert {f"{branch}/{s}" for s in ("sft", "dpo", "rlvr", "eval", "export")} <= set(names)
    assert "rl_zero/rlvr" in names and "rl_zero/sft" not in names
    assert plan.stages["rl_zero/rlvr"].parents == ("longmino",)
    for i, name in enumerate(names):
        assert all(names.index(p) < i for p in plan.stages[name].parents)


def test_changing_one_sft_knob_changes_only_that_branch_downstream():
    before, after = _plan(), _plan("posttrain.instruct.sft.lr=0.002")
    changed = {n for n in before.stages if before.stages[n].fingerprint != after.stages[n].fingerprint}
    assert changed == {"instruct/sft", "instruct/dpo", "instruct/rlvr", "instruct/eval", "instruct/export"}


def test_fingerprints_are_stable_and_ignore_where_work_runs():
    reference = {n: s.fingerprint for n, s in _plan().stages.items()}
    for override in ("storage.root=/elsewhere", "data.workers=1", "+data.storage_options.key=AKIA0",
                     "launch.timeout_s=5"):
        assert {n: s.fingerprint for n, s in _plan(override).stages.items()} == reference, override
    assert _plan("data.seed=7").stages["data"].fingerprint != reference["data"]


def test_stage_selection_keeps_what_is_upstream():
    plan = _plan("stages=[sft]", "posttrain.branches=[instruct]")
    assert list(plan.stages) == ["data", "pretrain", "midtrain", "longmino", "instruct/sft"]
    assert list(_plan("stages=[data,pretrain]").stages) == ["data", "pretrain"]


def test_fork_continues_from_an_existing_artifact_without_rebuilding_upstream():
    cfg = compose_config(["preset=micro"])
    full = build_plan(cfg)
    longmino = full.stages["longmino"]
    manifest = {"stage": "longmino", "kind": "longmino", "line": "base", "config": to_dict(longmino.config),
                "fingerprint": longmino.fingerprint}
    forked = build_plan(cfg, fork_from=manifest)
    assert not {"data", "pretrain", "midtrain"} & set(forked.stages)
    assert forked.stages["longmino"].config == longmino.config  # the manifest's config, typed again
    assert forked.stages["longmino"].parents == ()
    for name, spec in forked.stages.items():  # same artifact -> same downstream fingerprints (cache hits)
        assert spec.fingerprint == full.stages[name].fingerprint, name
    other = build_plan(cfg, fork_from={**manifest, "fingerprint": "0" * 64})
    assert other.stages["instruct/sft"].fingerprint != full.stages["instruct/sft"].fingerprint


def test_checkpoint_eval_plan_pins_the_checkpoint():
    from olmo3_core.plan import checkpoint_eval_plan

    cfg = compose_config(["preset=micro"])
    sft = build_plan(cfg).stages["instruct/sft"]
    plan = checkpoint_eval_plan(cfg, {"stage": sft.name, "kind": "sft", "line": "instruct", "config": to_dict(sft.config),
                                      "fingerprint": sft.fingerprint})
    assert list(plan.stages) == ["instruct/sft", "instruct/sft/eval"]
    assert plan.stages["instruct/sft/eval"].config.template == "instruct"
