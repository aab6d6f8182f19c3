"""The two UIs people use, driven by a real headless Chromium (Debian's `chromium`, never a downloaded
browser build): on the local stack, after a micro flow, walk from the registered model version to the
data stage's run in MLflow by following links only, and find every stage with its state on the Prefect
flow run page. Screenshots land in `build/ui-check/` (`make ui-check`)."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from olmo3_cli import stack

REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("OLMO3_UI_SHOTS", REPO / "build" / "ui-check"))
FLOW = ["preset=micro", "posttrain.branches=[instruct]"]
pytestmark = pytest.mark.slow


@pytest.fixture
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium); the browser check needs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser check drives Chromium with playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def stack_env(stack_home):
    """The stack up, and the environment a user gets from `source <home>/stack/env.sh`."""
    stack.up()
    lines = (stack_home / "stack" / "env.sh").read_text().splitlines()
    return {**os.environ, **dict(shlex.split(line)[1].split("=", 1) for line in lines)}


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, body: dict) -> object:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def test_lineage_walks_in_the_mlflow_and_prefect_uis(browser, stack_env):
    run = subprocess.run([sys.executable, "-m", "olmo3_cli.main", "run", *FLOW], cwd=REPO, env=stack_env,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    mlflow, prefect_api = stack_env["MLFLOW_TRACKING_URI"], stack_env["PREFECT_API_URL"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    # MLflow: the registered model version, then links only: the data row of its lineage table
    page.goto(f"{mlflow}/#/models/olmo3-instruct/versions/1?workflowType=machine_learning")
    page.get_by_text("Lineage, from this model back to the data").wait_for(timeout=60_000)
    page.screenshot(path=str(SHOTS / "mlflow-model-version.png"), full_page=True)
    data_row = page.locator("tr").filter(has=page.get_by_role("cell", name="data", exact=True))
    with page.context.expect_page() as opened:  # markdown links open a new tab
        data_row.get_by_role("link").first.click()
    run_page = opened.value
    run_page.get_by_text("data (data, fingerprint").wait_for(timeout=60_000)
    run_page.screenshot(path=str(SHOTS / "mlflow-data-run.png"), full_page=True)
    run_id = run_page.url.split("/runs/")[1].split("?")[0].split("/")[0]
    tags = {t["key"]: t["value"] for t in _get(f"{mlflow}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]["data"]["tags"]}
    assert tags["kind"] == "data" and tags["stage"] == "data"

    # Prefect: the flow run page, its graph and every stage with its state in the task-run list
    (flow_run,) = _post(f"{prefect_api}/flow_runs/filter", {})
    task_runs = _post(f"{prefect_api}/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}}})
    page.goto(f"{prefect_api.removesuffix('/api')}/runs/flow-run/{flow_run['id']}")
    page.get_by_text(flow_run["name"]).first.wait_for(timeout=60_000)
    page.wait_for_timeout(3000)  # the graph is drawn on a canvas after the data arrives
    page.screenshot(path=str(SHOTS / "prefect-flow-run.png"))
    page.get_by_text("Task Runs", exact=True).first.click()
    page.get_by_text(f"({len(task_runs)} Completed)").wait_for(timeout=60_000)
    for task_run in task_runs:
        assert task_run["state_type"] == "COMPLETED", task_run["name"]
        page.get_by_text(task_run["name"], exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(SHOTS / "prefect-task-runs.png"), full_page=True)
