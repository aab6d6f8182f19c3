"""Reproducible bytes: one config run in two fresh artifact stores publishes the same fingerprints and
the same file hashes (manifest `files`) for every stage on the way to SFT."""
import pytest

from olmo3_core.config.compose import compose_config
from olmo3_core.runner import run_plan

pytestmark = pytest.mark.slow
OVERRIDES = ["preset=micro", "stages=[sft]", "posttrain.branches=[instruct]"]


def test_the_same_config_in_two_fresh_homes_publishes_identical_bytes(tmp_path):
    first, second = (run_plan(compose_config([*OVERRIDES, f"storage.root={tmp_path / home / 'artifacts'}"]))
                     for home in ("a", "b"))
    assert list(first) == list(second) == ["data", "pretrain", "midtrain", "longmino", "instruct/sft"]
    assert all(m["varies_between_runs"] == {} for m in first.values())  # none of these declares a difference
    for stage, manifest in first.items():
        other = second[stage]
        assert manifest["uri"] != other["uri"] and manifest["fingerprint"] == other["fingerprint"], stage
        files, other_files = manifest["files"], other["files"]
        assert files, f"{stage}: no files to compare"
        differ = sorted(f for f in files.keys() | other_files.keys() if files.get(f) != other_files.get(f))
        assert not differ, f"{stage}: {len(differ)} of {len(files)} files differ between the two homes: {differ[:10]}"
