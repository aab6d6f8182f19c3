import re

import pytest

from olmo3_cli.main import main
from olmo3_core.home import project_home


@pytest.mark.parametrize("model, billions", [("olmo3_7b", 7.30), ("olmo3_32b", 32.23)])
def test_dry_run_reports_released_architecture_sizes_without_allocating(model, billions, capsys):
    assert main(["run", "--dry-run", f"model={model}"]) == 0
    out = capsys.readouterr().out
    assert f"{billions:.2f}B parameters" in out
    assert re.search(r"^instruct/sft\s+sft\s+[0-9a-f]{12}\s+to run \(never built\)$", out, re.M)
    assert "does NOT fit" in out  # reported, not refused: a dry run allocates nothing


def test_a_model_too_large_for_this_machine_is_refused_with_the_estimate(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "model=olmo3_7b"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "7.30B parameters" in err and "GiB" in err and "launch.check_memory=false" in err


@pytest.mark.parametrize("override, message", [
    ("pretrain.lr=-1", "pretrain.lr must be > 0"),
    ("data.dedup.fuzzy=maybe", "data.dedup.fuzzy"),
    ("+data.sources.web={kind: files, paths: [/nonexistent/*.jsonl]}", "data.sources.web.paths: no files match"),
])
def test_bad_input_fails_before_compute_naming_the_key(override, message, capsys):
    artifacts = project_home() / "artifacts"
    before = set(artifacts.rglob("*")) if artifacts.exists() else set()
    with pytest.raises(SystemExit) as exc:
        main(["run", "preset=micro", override])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    after = set(artifacts.rglob("*")) if artifacts.exists() else set()
    assert after == before, "a bad config must not start any stage"


def test_lineage_of_unknown_target_is_a_clear_error(capsys):
    assert main(["lineage", "0123456789abcdef0123456789abcdef"]) == 1
    assert "neither a path" in capsys.readouterr().err


def test_a_damaged_manifest_is_named_not_a_traceback(tmp_path, capsys):
    artifact = tmp_path / "pretrain" / ("a" * 64)
    artifact.mkdir(parents=True)
    (artifact / "artifact.json").write_text("{truncated")
    assert main(["lineage", str(artifact)]) == 1
    assert str(artifact / "artifact.json") in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "--dry-run", "preset=micro", f"storage.root={tmp_path}", f"fork_from={artifact}"])
    assert exc.value.code == 2 and str(artifact / "artifact.json") in capsys.readouterr().err


def test_dry_run_says_why_a_stage_is_not_cached(tmp_path, capsys):
    from olmo3_core.config.compose import compose_config
    from olmo3_core.runner import run_plan

    import json
    import random

    from olmo3_core.data.synthetic import english_doc

    rng = random.Random(0)
    web = tmp_path / "web"
    web.mkdir()
    (web / "a.jsonl").write_text("".join(json.dumps({"id": str(i), "text": english_doc(rng, 12)}) + "\n" for i in range(40)))
    overrides = ["preset=micro", "stages=[data]", f"storage.root={tmp_path / 'artifacts'}",
                 f"+data.sources.web={{kind: files, paths: ['{web}/*.jsonl']}}", "+data.mixes.pretrain.proportions.web=1"]
    run_plan(compose_config(overrides), overrides)
    assert main(["run", "--dry-run", *overrides]) == 0
    assert re.search(r"^data\s+data\s+[0-9a-f]{12}\s+cached$", capsys.readouterr().out, re.M)
    (web / "b.jsonl").write_text(json.dumps({"id": "new", "text": english_doc(rng, 12)}) + "\n")
    assert main(["run", "--dry-run", *overrides]) == 0
    assert re.search(r"^data\s+.*to run \(input files changed: .*b\.jsonl\)$", capsys.readouterr().out, re.M)


@pytest.mark.parametrize("dry_run", [["--dry-run"], []])
@pytest.mark.parametrize("override", [
    "+storage.storage_options.secret=canary-s3cr3t",
    "+storage.storage_options.client_kwargs.endpoint_url=http://olmo:canary-s3cr3t@127.0.0.1:9000",
    "+storage.storage_options.sasToken=canary-s3cr3t",
])
def test_run_refuses_credentials_in_overrides_before_anything_starts(override, dry_run, capsys):
    artifacts = project_home() / "artifacts"
    before = set(artifacts.rglob("*")) if artifacts.exists() else set()
    with pytest.raises(SystemExit) as exc:
        main(["run", *dry_run, "preset=micro", "stages=[data]", override])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "refusing to run" in captured.err and "AWS_SECRET_ACCESS_KEY" in captured.err
    assert "canary-s3cr3t" not in captured.err + captured.out, "the refusal must not echo the secret"
    assert "model:" not in captured.out, "nothing may be planned or run"
    after = set(artifacts.rglob("*")) if artifacts.exists() else set()
    assert after == before


def test_dry_run_of_the_7b_preset_prints_the_released_hyperparameters(capsys):
    assert main(["run", "--dry-run", "model=olmo3_7b", "train=olmo3_7b", "launch.nprocs=8", "posttrain.branches=[]"]) == 0
    out = capsys.readouterr().out
    assert "7.30B parameters" in out
    lines = {line.split(":")[0]: line for line in out.splitlines() if re.match(r"^(pretrain|midtrain|longmino): ", line)}
    # OLMo-3-1025-7B-pretrain-1.py: 8192 x 512 tokens per step, LR 3e-4, 2000 warmup steps, 5T-token horizon
    assert "seq_len 8192, global batch 4,194,304 tokens" in lines["pretrain"]
    assert "peak lr 0.0003, warmup 2,000" in lines["pretrain"] and "weight decay 0.1" in lines["pretrain"]
    assert "597,046 steps = 2,504.2B tokens" in lines["pretrain"] and "bf16" in lines["pretrain"]  # hard_stop
    assert "cosine laid out over 1,192,093 steps" in lines["pretrain"]  # the 5T-token horizon
    assert "2 ingredients (data-order seeds 1337, 1338) souped" in lines["midtrain"]
    # -midtrain.py: 2**21 tokens per step for 100B tokens; -long-context.py: 64 x 65536, YaRN x8
    assert "global batch 2,097,152 tokens" in lines["midtrain"] and "= 100.0B tokens" in lines["midtrain"]
    assert "seq_len 65536, global batch 4,194,304 tokens" in lines["longmino"] and "YaRN x8" in lines["longmino"]


def test_the_32b_preset_composes_with_its_released_learning_rates(capsys):
    assert main(["run", "--dry-run", "model=olmo3_32b", "train=olmo3_32b"]) == 0
    out = capsys.readouterr().out
    assert "32.23B parameters" in out and "peak lr 0.0006, warmup 2,000" in out and "ZeRO-3" in out


def test_a_vocabulary_smaller_than_the_tokenizer_fails_before_compute_naming_both(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--dry-run", "model=olmo3_7b", "data.tokenizer.vocab_size=120000"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "model.vocab_size (100,278)" in err and "(120,000, data.tokenizer.vocab_size)" in err


def test_the_gpu_smoke_preset_is_a_small_model_that_fits_one_gpu(capsys):
    assert main(["run", "--dry-run", "preset=gpu_smoke"]) == 0
    out = capsys.readouterr().out
    billions = float(re.search(r"model: ([0-9.]+)B parameters", out)[1])
    assert 0.1 <= billions <= 1.0, out


def test_dry_run_global_batch_counts_the_processes_of_every_node(capsys):
    assert main(["run", "--dry-run", "model=olmo3_7b", "train=olmo3_7b", "launch.nprocs=4", "launch.nnodes=2",
                 "launch.master_addr=10.0.0.1", "launch.master_port=29400", "posttrain.branches=[]"]) == 0
    out = capsys.readouterr().out
    assert "pretrain: seq_len 8192, global batch 4,194,304 tokens (2 x 32 accum x 8 procs x 8192)" in out
