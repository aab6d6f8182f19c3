"""Lineage by walking manifests: always available, even without MLflow.

Each manifest names its upstream artifacts by URI and fingerprint; the data stage's manifest names
the raw input files with their content digests. `walk` follows that chain from any artifact.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec

from olmo3_core.artifacts import MANIFEST, InvalidManifest, parse_manifest


class LineageError(LookupError):
    pass


def read_manifest(uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    where = f"{uri.rstrip('/')}/{MANIFEST}"
    try:
        with fsspec.open(where, "r", **(storage_options or {})) as fh:
            return parse_manifest(fh.read(), where)
    except FileNotFoundError as exc:
        raise LineageError(f"no complete artifact at {uri} (no {MANIFEST})") from exc
    except InvalidManifest as exc:
        raise LineageError(str(exc)) from exc


def find_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the artifact a local path belongs to (an exported model dir, a file in it, ...).

    Inside a store the enclosing artifact.json decides, wherever the store has been moved; only a model
    copied out of the store falls back to the artifact URI its `lineage.json` recorded."""
    here = Path(path).resolve()
    for candidate in [here, *here.parents]:
        if (candidate / MANIFEST).is_file():
            return read_manifest(str(candidate))
    for candidate in [here, *here.parents]:
        if (candidate / "lineage.json").is_file():
            return read_manifest(json.loads((candidate / "lineage.json").read_text())["artifact_uri"])
    raise LineageError(f"{path} is not inside an artifact (no {MANIFEST} or lineage.json found above it)")


def walk(manifest: dict[str, Any], storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """This artifact and every upstream artifact, each once, every stage before what it was built
    from (so the export comes first and the data stage last)."""
    post_order: list[dict[str, Any]] = []
    seen: set[str] = set()

    def visit(current: dict[str, Any]) -> None:
        if current["fingerprint"] in seen:
            return
        seen.add(current["fingerprint"])
        for up in current.get("upstream", []):
            visit(read_manifest(up["uri"], storage_options))
        post_order.append(current)

    visit(manifest)
    return post_order[::-1]


def summarize(chain: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lineage facts a person asks for, one row per stage."""
    return [
        {
            "stage": m["stage"],
            "kind": m["kind"],
            "fingerprint": m["fingerprint"],
            "uri": m["uri"],
            "mlflow_run_id": m.get("mlflow", {}).get("run_id"),
            "mlflow_experiment_id": m.get("mlflow", {}).get("experiment_id"),
            "metrics": m.get("metrics", {}),
            "prefect_flow_run_id": m.get("prefect_flow_run_id"),
            "upstream": [u["stage"] for u in m.get("upstream", [])],
            "raw_inputs": m.get("raw_inputs", []),
            # a kept checkpoint of a base-training artifact (its only upstream): step, tokens seen, path
            "checkpoint": m.get("checkpoint"),
        }
        for m in chain
    ]


def format_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        stage = row["stage"] + (f"@step{row['checkpoint']['step']}" if row.get("checkpoint") else "")
        lines.append(f"{stage:<18} {row['fingerprint'][:12]}  mlflow run {row['mlflow_run_id'] or '-'}")
        if row.get("checkpoint"):
            lines.append(f"{'':<18} kept checkpoint {row['checkpoint']['path']} ({row['checkpoint']['tokens_seen']:,} tokens seen)")
        lines.append(f"{'':<18} {row['uri']}")
        if row["upstream"]:
            lines.append(f"{'':<18} <- {', '.join(row['upstream'])}")
        for raw in row["raw_inputs"][:10]:
            lines.append(f"{'':<18} raw input {raw.get('uri')} sha256:{str(raw.get('sha256'))[:12]}")
        if len(row["raw_inputs"]) > 10:
            lines.append(f"{'':<18} ... and {len(row['raw_inputs']) - 10} more raw inputs (see --json)")
    return "\n".join(lines)
