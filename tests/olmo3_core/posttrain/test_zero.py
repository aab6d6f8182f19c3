"""Post-training jobs run under DeepSpeed ZeRO through the base-training launcher: 2 processes with
ZeRO-2 follow the loss curve of 1 process with the same global batch."""
from __future__ import annotations

import numpy as np
import pytest

from olmo3_core.config.compose import compose_config
from olmo3_core.config.schema import LaunchConfig, PosttrainStageConfig, SFTConfig
from olmo3_core.config.typed import ConfigError
from olmo3_core.launch import run_job
from olmo3_core.plan import build_plan
from olmo3_core.posttrain import trainers
from olmo3_core.stages.jobs import JobOutputs, PosttrainJob


def _sft(model_dir, out, world: int) -> list[float]:
    step = SFTConfig(mixture={"math": 32}, max_steps=4, batch_size=4, lr=1e-3, max_length=96, zero_stage=2)
    job = PosttrainJob(kind="sft", config=PosttrainStageConfig(template="instruct", world_size=world, sft=step),
                       init_model_dir=str(model_dir), output_dir=str(out), work_dir=str(out / "work"))
    run_job(trainers, job, out / "work", LaunchConfig(nprocs=world, launcher="torchrun"), print)
    return [p.loss for p in JobOutputs.read(out).loss_history]


@pytest.mark.slow
def test_two_process_zero2_sft_matches_one_process(tiny_model_dir, tmp_path):
    one = _sft(tiny_model_dir, tmp_path / "one", 1)
    two = _sft(tiny_model_dir, tmp_path / "two", 2)
    assert len(one) == len(two) == 4
    np.testing.assert_allclose(two, one, rtol=2e-3)  # the pretraining tolerance (tests/olmo3_core/train/test_loop.py)


def test_post_training_batches_must_split_over_the_processes():
    with pytest.raises(ConfigError, match=r"posttrain.instruct.sft.batch_size \(8\) must be a multiple of the processes \(3"):
        build_plan(compose_config(["preset=micro", "launch.nprocs=3", "posttrain.branches=[instruct]"]))
    with pytest.raises(ConfigError, match=r"posttrain.instruct.rlvr.batch_size \(4\) must hold whole groups of "
                                          r"posttrain.instruct.rlvr.num_generations \(2\) on each of the 4 processes"):
        build_plan(compose_config(["preset=micro", "launch.nprocs=4", "posttrain.instruct.sft.batch_size=4",
                                   "posttrain.instruct.dpo.batch_size=4", "posttrain.branches=[instruct]"]))
    plan = build_plan(compose_config(["preset=micro", "launch.nprocs=2"]))
    assert plan.stages["instruct/sft"].config.world_size == 2


def test_a_job_launched_with_other_processes_than_planned_refuses_to_train(monkeypatch, tmp_path):
    job = PosttrainJob(kind="sft", config=PosttrainStageConfig(world_size=1, sft=SFTConfig(batch_size=8)),
                       init_model_dir="unused", output_dir=str(tmp_path), work_dir=str(tmp_path / "work"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="launched with 2 processes, but the step's config was planned for 1"):
        trainers.common_args(job)
    monkeypatch.setenv("WORLD_SIZE", "1")
    args = trainers.common_args(job)
    assert args["per_device_train_batch_size"] == 8 and args["deepspeed"]["zero_optimization"] == {"stage": 2}
