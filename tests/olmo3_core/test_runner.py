"""The runner is the kernel every stage goes through: cache hits, the artifact lock, failures.

Stages here are small functions registered as a stage kind for the test, so what is checked is the
runner itself (as Marin tests its executor), not any stage's science.
"""
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from olmo3_core import plan as plan_module
from olmo3_core.config.compose import compose_config
from olmo3_core.data.config import DataConfig
from olmo3_core.lineage import find_manifest, summarize, walk
from olmo3_core.plan import Plan, StageKind
from olmo3_core.runner import close_session, execute_stage, open_session
from olmo3_core.stages import StageResult


@pytest.fixture
def session_for(tmp_path, monkeypatch):
    """A session over a two-stage plan (data -> pretrain) whose stage functions the test supplies."""
    def make(data_fn, pretrain_fn=None):
        monkeypatch.setitem(plan_module.KINDS, "data", StageKind("data", data_fn, DataConfig))
        monkeypatch.setitem(plan_module.KINDS, "pretrain", StageKind("pretrain", pretrain_fn or data_fn,
                                                                      plan_module.KINDS["pretrain"].config_type))
        cfg = compose_config(["preset=micro", f"storage.root={tmp_path / 'artifacts'}"])
        full = plan_module.build_plan(cfg)
        plan = Plan()
        plan.add("data", "data", "base", full.stages["data"].config, ())
        plan.add("pretrain", "pretrain", "base", full.stages["pretrain"].config, ("data",))
        return open_session(cfg, plan=plan)
    return make


def _writes(name: str, calls: list, delay: float = 0.0):
    def stage(ctx):
        calls.append(ctx.name)
        time.sleep(delay)
        (ctx.output_dir / f"{name}.txt").write_text(name)
        return StageResult(metrics={"value": 1.0}, raw_inputs=[{"uri": "file:///raw.jsonl", "sha256": "0" * 64,
                                                                "source": "web"}] if name == "data" else [])
    return stage


def _runs(session):
    client = MlflowClient(session.tracking.tracking_uri)
    runs = client.search_runs([session.tracking.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{session.tracking.parent_run_id}'")
    return sorted(runs, key=lambda r: r.info.start_time)


def test_second_execution_is_a_cache_hit_recorded_in_mlflow(session_for):
    calls = []
    session = session_for(_writes("data", calls))
    first = execute_stage(session, "data")
    second = execute_stage(session, "data")
    assert calls == ["data"] and second == first
    built, hit = _runs(session)
    assert built.info.status == hit.info.status == "FINISHED"
    assert hit.data.tags["cache_hit"] == "true" and hit.data.tags["source_run_id"] == built.info.run_id
    assert first["mlflow"]["run_id"] == built.info.run_id


def test_concurrent_runs_of_one_stage_build_it_once(session_for):
    calls = []
    session = session_for(_writes("data", calls, delay=1.0))
    results = []
    threads = [threading.Thread(target=lambda: results.append(execute_stage(session, "data"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["data"], "the second run must wait on the artifact lock and then find the cache"
    assert results[0] == results[1]


def test_a_failing_stage_closes_its_run_as_failed_and_publishes_nothing(session_for):
    def broken(ctx):
        (ctx.output_dir / "half.txt").write_text("partial")
        raise RuntimeError("stage blew up")

    session = session_for(broken)
    with pytest.raises(RuntimeError, match="blew up"):
        execute_stage(session, "data")
    (run,) = _runs(session)
    assert run.info.status == "FAILED"
    spec = session.plan.stages["data"]
    assert session.store.load_manifest("data", spec.fingerprint) is None
    close_session(session, ok=False)
    parent = MlflowClient(session.tracking.tracking_uri).get_run(session.tracking.parent_run_id)
    assert parent.info.status == "FAILED"


def test_a_stage_sees_its_typed_config_and_verified_upstream(session_for):
    seen = {}

    def pretrain(ctx):
        upstream = ctx.input("data")
        seen.update(config=ctx.config, upstream_config=upstream.config, text=(upstream.path / "data.txt").read_text(),
                    storage_options=ctx.execution.storage_options)
        (ctx.output_dir / "model.txt").write_text("weights")
        return StageResult()

    session = session_for(_writes("data", []), pretrain)
    execute_stage(session, "data")
    execute_stage(session, "pretrain")
    assert seen["config"] == session.plan.stages["pretrain"].config
    assert isinstance(seen["upstream_config"], DataConfig) and seen["text"] == "data"


def test_lineage_walks_from_any_file_back_to_the_raw_inputs(session_for):
    session = session_for(_writes("data", []), _writes("pretrain", []))
    execute_stage(session, "data")
    manifest = execute_stage(session, "pretrain")
    inside = session.store.materialize(manifest) / "pretrain.txt"
    rows = summarize(walk(find_manifest(inside)))
    assert [r["stage"] for r in rows] == ["pretrain", "data"]
    assert rows[0]["upstream"] == ["data"] and rows[0]["mlflow_run_id"] == manifest["mlflow"]["run_id"]
    assert rows[1]["raw_inputs"][0]["sha256"] == "0" * 64


def test_a_corrupted_cached_artifact_is_quarantined_and_rebuilt(session_for, caplog):
    calls = []
    session = session_for(_writes("data", calls))
    first = execute_stage(session, "data")
    artifact = session.store.materialize(first, verify=False)
    (artifact / "data.txt").write_text("dbta")  # a flipped byte, same size
    with caplog.at_level("WARNING", logger="olmo3_core.runner"):
        rebuilt = execute_stage(session, "data")
    assert calls == ["data", "data"] and (artifact / "data.txt").read_text() == "data"
    assert "damaged" in caplog.text and "data.txt does not match its sha256" in caplog.text
    assert rebuilt["mlflow"]["run_id"] != first["mlflow"]["run_id"]
    quarantined = list((artifact.parents[1] / ".quarantine" / "data").iterdir())
    assert len(quarantined) == 1 and (quarantined[0] / "data.txt").read_text() == "dbta"


def test_a_rebuild_does_not_adopt_stray_files(session_for):
    session = session_for(_writes("data", []))
    spec = session.plan.stages["data"]
    staging = session.store.staging_dir("data", spec.fingerprint)
    (staging / "stray.bin").write_bytes(b"from a crashed attempt")
    manifest = execute_stage(session, "data")
    assert set(manifest["files"]) == {"data.txt"}


def test_a_copied_project_home_keeps_its_lineage_and_writes_only_to_itself(tmp_path, monkeypatch):
    """Manifests refer to each other relative to the store; the home's own MLflow store is re-pointed
    at the copy's artifact folder, so old runs' artifacts read from the copy and new ones land there."""
    import shutil

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setitem(plan_module.KINDS, "data", StageKind("data", _writes("data", []), DataConfig))
    cfg = compose_config(["preset=micro", "stages=[data]"])
    old, new = tmp_path / "old", tmp_path / "new"
    monkeypatch.setenv("OLMO3_HOME", str(old))
    session = open_session(cfg)
    first = execute_stage(session, "data")
    close_session(session, ok=True)
    shutil.copytree(old, new)
    shutil.rmtree(old)
    monkeypatch.setenv("OLMO3_HOME", str(new))
    session = open_session(cfg)
    again = execute_stage(session, "data")  # a cache hit in the copy, verified there
    close_session(session, ok=True)
    assert again["fingerprint"] == first["fingerprint"] and again["uri"].startswith(str(new))
    assert [r["stage"] for r in summarize(walk(find_manifest(again["uri"] + "/data.txt")))] == ["data"]
    client = MlflowClient(f"sqlite:///{new / 'mlflow.db'}")
    assert client.get_experiment(session.tracking.experiment_id).artifact_location.startswith((new / "mlartifacts").as_uri())
    report = client.download_artifacts(first["mlflow"]["run_id"], "artifact.json", str(tmp_path))
    assert "data" in open(report).read()
    assert not old.exists(), "nothing may be written back to the old home"


def test_a_damaged_manifest_is_quarantined_and_rebuilt_not_a_crash(session_for):
    calls = []
    session = session_for(_writes("data", calls))
    first = execute_stage(session, "data")
    spec = session.plan.stages["data"]
    (session.store.materialize(first, verify=False) / "artifact.json").write_text('{"stage": "data", "kind"')
    assert not session.store.has("data", spec.fingerprint)
    execute_stage(session, "data")
    assert calls == ["data", "data"] and session.store.has("data", spec.fingerprint)
