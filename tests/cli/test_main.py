import re

import pytest

from olmo3_cli.main import main
from olmo3_core.home import project_home


@pytest.mark.parametrize("model, billions", [("olmo3_7b", 7.30), ("olmo3_32b", 32.23)])
def test_dry_run_reports_released_architecture_sizes_without_allocating(model, billions, capsys):
    assert main(["run", "--dry-run", f"model={model}"]) == 0
    out = capsys.readouterr().out
    assert f"{billions:.2f}B parameters" in out
    assert re.search(r"^instruct/sft\s+sft\s+[0-9a-f]{12}\s+to run$", out, re.M)


def test_bad_override_fails_before_compute_naming_the_key(capsys):
    artifacts = project_home() / "artifacts"
    before = set(artifacts.rglob("*")) if artifacts.exists() else set()
    with pytest.raises(SystemExit) as exc:
        main(["run", "preset=micro", "pretrain.lr=-1"])
    assert exc.value.code == 2
    assert "pretrain.lr must be > 0" in capsys.readouterr().err
    after = set(artifacts.rglob("*")) if artifacts.exists() else set()
    assert after == before, "a bad config must not start any stage"


def test_lineage_of_unknown_target_is_a_clear_error(capsys):
    assert main(["lineage", "0123456789abcdef0123456789abcdef"]) == 1
    assert "neither a path" in capsys.readouterr().err


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
