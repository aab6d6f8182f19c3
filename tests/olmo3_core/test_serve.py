"""`olmo3-flow serve` on CPU: the transformers-backed OpenAI-compatible server on a micro export, driven by
the `openai` client, in a subprocess started and stopped by the test; and the backend choice / vLLM
command as pure functions."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from olmo3_core.chat import IM_END
from olmo3_core.config.schema import ExportStageConfig
from olmo3_core.export.stage import run as export
from olmo3_core.launch import free_port
from olmo3_core.serve import ServedModel, ServeError, choose_backend, resolve_target, vllm_command
from olmo3_core.stages import StageContext

from tests.olmo3_core.export.test_export import _model_artifact

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def micro_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    upstream = _model_artifact(root / "sft")
    out = root / "export"
    out.mkdir()
    export(StageContext("instruct/export", "export", ExportStageConfig(line="instruct", template="instruct",
                                                                       registered_model="olmo3-instruct"),
                        {"sft": upstream}, out, uri="file:///export", fingerprint="d" * 64))
    return out / "model"


@pytest.fixture(scope="module")
def server(micro_export, tmp_path_factory):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path]), "CUDA_VISIBLE_DEVICES": ""}
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "olmo3_cli.main", "serve", str(micro_export), "--port", str(port),
                                 "--backend", "transformers"], stdout=sink, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"server did not come up (exit {proc.poll()}):\n{log.read_text()}")
        time.sleep(0.3)
    yield proc, base, log
    if proc.poll() is None:  # a failed test: do not leave our server behind
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_chat_completion_through_the_openai_client_stops_at_end_of_turn(server, micro_export):
    from openai import OpenAI
    from transformers import AutoTokenizer

    proc, base, log = server
    client = OpenAI(base_url=f"{base}/v1", api_key="unused")
    name = micro_export.parent.name  # an export dir is served under its artifact folder's name
    assert [m.id for m in client.models.list().data] == [name]
    im_end = AutoTokenizer.from_pretrained(micro_export).convert_tokens_to_ids(IM_END)

    # a random model rarely ends its turn by itself: capped by max_tokens, it reports 'length'
    capped = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                            max_tokens=5, temperature=0, logit_bias={str(im_end): -100})
    assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 5
    assert capped.choices[0].message.role == "assistant"

    # made to end its turn at once (OpenAI's logit_bias): the end-of-turn token stops it, and is not text
    ended = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                           max_tokens=5, temperature=0, logit_bias={str(im_end): 100})
    assert ended.choices[0].finish_reason == "stop"
    assert ended.usage.completion_tokens == 1 and ended.choices[0].message.content == ""
    assert ended.usage.prompt_tokens == capped.usage.prompt_tokens > 0  # the same chat template applied

    # what the server does not implement is refused, not ignored; an unknown model is a 404
    with pytest.raises(Exception) as bad:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], n=2)
    assert getattr(bad.value, "status_code", None) == 422
    with pytest.raises(Exception) as missing:
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert getattr(missing.value, "status_code", None) == 404


def test_server_stops_cleanly_on_sigterm(server):
    proc, base, log = server
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (so the exit says why)
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()
    text = log.read_text()
    assert "Application shutdown complete" in text and "Finished server process" in text, text
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/health", timeout=2)


def test_backend_choice_prefers_vllm_only_where_it_can_run():
    assert choose_backend("auto", vllm_importable=True, cuda_available=True) == "vllm"
    assert choose_backend("auto", vllm_importable=True, cuda_available=False) == "transformers"
    assert choose_backend("auto", vllm_importable=False, cuda_available=True) == "transformers"
    assert choose_backend("transformers", vllm_importable=True, cuda_available=True) == "transformers"
    with pytest.raises(ServeError, match="vllm is not installed"):
        choose_backend("vllm", vllm_importable=False, cuda_available=True)
    with pytest.raises(ServeError, match="no CUDA device"):
        choose_backend("vllm", vllm_importable=True, cuda_available=False)


def test_vllm_command_serves_the_export_with_its_generation_config(tmp_path):
    cmd = vllm_command(ServedModel(tmp_path, "olmo3-instruct@3"), "0.0.0.0", 8123)
    assert cmd[1:] == ["-m", "vllm.entrypoints.openai.api_server", "--model", str(tmp_path), "--served-model-name",
                       "olmo3-instruct@3", "--host", "0.0.0.0", "--port", "8123", "--generation-config", "auto"]


def test_targets_resolve_to_model_dirs_or_fail_clearly(micro_export, tmp_path):
    assert resolve_target(str(micro_export)) == ServedModel(micro_export.resolve(), micro_export.parent.name)
    assert resolve_target(str(micro_export.parent)).path == micro_export.resolve()  # the artifact dir works too
    with pytest.raises(ServeError, match="no config.json"):
        resolve_target(str(tmp_path))
    with pytest.raises(ServeError, match="no registered model named 'olmo3-nothing'"):
        resolve_target("olmo3-nothing@2", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_registered_model_version_resolves_to_its_export(micro_export, tmp_path):
    """As the export stage registers it: served from the export artifact named by the version's
    `artifact_uri` tag, or from the registry's copy of the files when that artifact is not local."""
    from mlflow.tracking import MlflowClient

    from olmo3_core.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("serve", artifact_location=str(tmp_path / "mlartifacts"))
    tracker = MlflowTracker(uri, client.create_run(experiment).info.run_id)
    artifact = micro_export.parent
    assert tracker.register_model("olmo3-instruct", micro_export, tags={"artifact_uri": f"file://{artifact}"}) in (1, "1")
    assert tracker.register_model("olmo3-instruct", micro_export, tags={"artifact_uri": "s3://bucket/export/x"}) in (2, "2")

    assert resolve_target("olmo3-instruct@1", tracking_uri=uri) == ServedModel(artifact / "model", "olmo3-instruct@1")
    latest = resolve_target("olmo3-instruct", tracking_uri=uri, cache_dir=tmp_path / "cache")
    assert latest.name == "olmo3-instruct@2" and latest.path == tmp_path / "cache" / "olmo3-instruct" / "2"
    assert (latest.path / "config.json").read_bytes() == (micro_export / "config.json").read_bytes()
    with pytest.raises(ServeError, match=r"has no version 7; it has \[1, 2\]"):
        resolve_target("olmo3-instruct@7", tracking_uri=uri)
