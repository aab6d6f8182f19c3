import pytest

from olmo3_core.config.compose import compose_config
from olmo3_core.config.typed import ConfigError, to_dict
from olmo3_core.plan import build_plan


def _plan(*overrides):
    return build_plan(compose_config(["preset=micro", *overrides]))


def test_plan_has_every_stage_of_every_branch_in_dependency_order():
    plan = _plan()
    names = list(plan.stages)
    assert names[:5] == ["data", "trace_index", "pretrain", "midtrain", "longmino"]
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


def test_the_trace_index_hangs_off_data_with_the_fingerprint_trace_output_computes():
    from olmo3_core.plan import trace_index_plan

    plan = _plan()
    index = plan.stages["trace_index"]
    assert (index.kind, index.line, index.parents) == ("trace_index", "base", ("data",))
    assert not any("trace_index" in spec.parents for spec in plan.stages.values())  # nobody's parent
    data = plan.stages["data"]
    manifest = {"stage": "data", "kind": "data", "config": to_dict(data.config), "fingerprint": data.fingerprint}
    assert trace_index_plan(manifest).stages["trace_index"].fingerprint == index.fingerprint
    assert _plan("data.seed=7").stages["trace_index"].fingerprint != index.fingerprint  # other data, other index
    assert "trace_index" not in _plan("stages=[pretrain]").stages  # not pulled in by what does not need it
    assert list(_plan("stages=[trace_index]").stages) == ["data", "trace_index"]


def test_fork_continues_from_an_existing_artifact_without_rebuilding_upstream():
    cfg = compose_config(["preset=micro"])
    full = build_plan(cfg)
    longmino = full.stages["longmino"]
    manifest = {"stage": "longmino", "kind": "longmino", "line": "base", "config": to_dict(longmino.config),
                "fingerprint": longmino.fingerprint}
    forked = build_plan(cfg, fork_from=manifest)
    assert not {"data", "trace_index", "pretrain", "midtrain"} & set(forked.stages)
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


def test_two_ingredients_fan_out_into_parallel_midtrain_runs_that_a_soup_joins():
    plan = _plan("midtrain.ingredients=[1,2]")
    names = list(plan.stages)
    assert names[:7] == ["data", "trace_index", "pretrain", "midtrain/seed1", "midtrain/seed2", "soup", "longmino"]
    assert plan.stages["midtrain/seed1"].parents == plan.stages["midtrain/seed2"].parents == ("data", "pretrain")
    assert [plan.stages[f"midtrain/seed{s}"].config.train.seed for s in (1, 2)] == [1, 2]  # the data-order seed
    assert plan.stages["soup"].kind == "soup" and plan.stages["soup"].parents == ("midtrain/seed1", "midtrain/seed2")
    assert plan.stages["longmino"].parents == ("data", "soup")
    # selecting longmino pulls in the soup and both ingredients; selecting midtrain, the ingredients only
    assert set(build_plan(compose_config(["preset=micro", "midtrain.ingredients=[1,2]", "stages=[longmino]"])).stages) == \
        {"data", "pretrain", "midtrain/seed1", "midtrain/seed2", "soup", "longmino"}
    assert set(build_plan(compose_config(["preset=micro", "midtrain.ingredients=[1,2]", "stages=[midtrain]"])).stages) == \
        {"data", "pretrain", "midtrain/seed1", "midtrain/seed2"}


def test_one_ingredient_is_todays_single_midtrain_and_shares_its_artifact_with_the_souped_graph():
    single, souped = _plan("midtrain.ingredients=[1]"), _plan("midtrain.ingredients=[1,2]")
    assert list(_plan().stages)[:5] == ["data", "trace_index", "pretrain", "midtrain", "longmino"] and "soup" not in _plan().stages
    assert single.stages["longmino"].parents == ("data", "midtrain")
    # the same run under either name: adding a second ingredient reuses the first one's cached artifact
    assert single.stages["midtrain"].fingerprint == souped.stages["midtrain/seed1"].fingerprint


def test_souped_midtrain_is_what_compare_base_stages_and_delta_pairs_mean_by_midtrain():
    plan = _plan("midtrain.ingredients=[0,1]", "eval.compare_base_stages=[midtrain]",
                 "posttrain.instruct.dpo.pairs=delta", "posttrain.instruct.dpo.delta.rejected_from=midtrain")
    assert plan.stages["base/eval"].parents == ("soup", "longmino")
    assert plan.stages["instruct/dpo_pairs"].parents == ("instruct/sft", "soup")


def test_soup_weights_change_the_soup_and_everything_after_it_not_the_ingredients():
    before, after = _plan("midtrain.ingredients=[0,1]"), _plan("midtrain.ingredients=[0,1]", "midtrain.soup.weights=[1,3]")
    changed = {n for n in before.stages if before.stages[n].fingerprint != after.stages[n].fingerprint}
    assert "soup" in changed and "longmino" in changed and not changed & {"midtrain/seed0", "midtrain/seed1", "pretrain"}


def test_an_unknown_heldout_set_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="midtrain.soup.heldout_set"):
        _plan("midtrain.ingredients=[0,1]", "midtrain.soup.heldout_set=nope")
