"""Job files: written and read by the same class, with types checked on the way back in."""
import json

import pytest

from olmo3_core.config.schema import ModelConfig, PosttrainStageConfig, SFTConfig, TrainConfig
from olmo3_core.config.typed import ConfigError
from olmo3_core.stages.jobs import JobOutputs, LossPoint, PosttrainJob, TrackingRef, TrainJob


def test_jobs_round_trip_through_json(tmp_path):
    train = TrainJob(kind="pretrain", train=TrainConfig(lr=3e-3), model=ModelConfig(), tokenizer_dir="t", mix_dir="m",
                     output_dir="o", checkpoint_dir="c", tracking=TrackingRef("sqlite:///x.db", "run"))
    train.write(tmp_path / "train.json")
    assert TrainJob.read(tmp_path / "train.json") == train
    post = PosttrainJob(kind="sft", config=PosttrainStageConfig(template="think", sft=SFTConfig(max_steps=3)),
                        init_model_dir="i", output_dir="o", work_dir="w")
    post.write(tmp_path / "post.json")
    back = PosttrainJob.read(tmp_path / "post.json")
    assert back == post and back.config.step == SFTConfig(max_steps=3)


def test_a_job_file_with_a_wrong_type_names_file_and_key(tmp_path):
    path = tmp_path / "job.json"
    TrainJob(kind="pretrain", train=TrainConfig(), model=ModelConfig(), tokenizer_dir="t", mix_dir="m", output_dir="o",
             checkpoint_dir="c").write(path)
    data = json.loads(path.read_text())
    data["train"]["max_steps"] = "many"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"job\.json.*train\.max_steps"):
        TrainJob.read(path)


def test_job_outputs_are_one_format(tmp_path):
    outputs = JobOutputs({"final_loss": 1.5}, [LossPoint(1, 2.0), LossPoint(2, 1.5)])
    outputs.write(tmp_path)
    assert JobOutputs.read(tmp_path) == outputs
