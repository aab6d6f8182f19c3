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
