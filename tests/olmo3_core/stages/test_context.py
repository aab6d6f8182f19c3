import pytest

from olmo3_core.stages import InputArtifact, StageContext


def _artifact(stage, kind):
    return InputArtifact(stage, kind, "f" * 64, stage, None, None, {})


def test_inputs_are_keyed_by_stage_and_looked_up_by_kind():
    inputs = {name: _artifact(name, kind) for name, kind in
              (("data", "data"), ("midtrain/seed0", "midtrain"), ("midtrain/seed1", "midtrain"))}
    ctx = StageContext("soup", "soup", None, inputs, None)
    assert ctx.input("data").stage == "data"
    assert [a.stage for a in ctx.inputs_of("midtrain")] == ["midtrain/seed0", "midtrain/seed1"]  # parent order
    assert ctx.inputs_of("pretrain") == []
    with pytest.raises(KeyError, match="exactly one upstream 'midtrain' artifact, got 2"):
        ctx.input("midtrain")
    with pytest.raises(KeyError, match="exactly one upstream 'pretrain' artifact, got 0.*midtrain/seed1 \\(midtrain\\)"):
        ctx.input("pretrain")
