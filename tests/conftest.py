"""Every test session gets its own project home (Prefect, MLflow, artifacts); nothing touches ~."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="olmo3-test-")) / "home"
os.environ["OLMO3_HOME"] = str(_HOME)
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_HOME / 'mlflow.db'}"
os.environ.pop("PREFECT_API_URL", None)

from olmo3_core.home import configure_environment  # noqa: E402

configure_environment()
