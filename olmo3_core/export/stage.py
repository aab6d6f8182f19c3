"""The export stage: a self-describing Hugging Face model directory, checked by loading it back.

The directory holds safetensors weights, config, tokenizer with the line's chat template, a
generation config that stops at end of turn, `lineage.json` and a model card naming its lineage.
"""
from __future__ import annotations

import json
import shutil

from olmo3_core.chat import template_digest
from olmo3_core.config.schema import ExportStageConfig
from olmo3_core.evaluation.results import read_results
from olmo3_core.export.hf import add_legacy_rope_fields, set_chat_defaults, smoke_test
from olmo3_core.lineage import summarize, walk
from olmo3_core.stages import StageContext, StageResult
from olmo3_core.tracking import lineage_table

MODEL_CARD = """---
library_name: transformers
tags: [olmo3, olmo3-flow]
---
# {name}

An OLMo 3 style `{line}` model produced by olmo3-flow. Load it with
`AutoModelForCausalLM.from_pretrained` and format chats with its tokenizer's chat template
(`{template}` style, sha256 {digest}).

## Evaluation
{evals}

## Lineage
Artifact `{uri}` (fingerprint `{fingerprint}`), built from:

| stage | fingerprint | MLflow run |
|---|---|---|
{rows}

Raw data inputs of the data stage: {raw} files (digests in `lineage.json`).
"""


def run(ctx: StageContext) -> StageResult:
    config: ExportStageConfig = ctx.config
    model_input = next(a for a in ctx.inputs.values() if a.kind != "eval")
    template = config.template or "instruct"
    out = ctx.output_dir / "model"
    shutil.copytree(model_input.path / "model", out, dirs_exist_ok=True)
    add_legacy_rope_fields(out / "config.json")
    set_chat_defaults(out, template)
    chain = summarize(walk(model_input.manifest, ctx.execution.storage_options))
    lineage = {"artifact_uri": ctx.uri, "stage": ctx.name, "chain": chain}
    (out / "lineage.json").write_text(json.dumps(lineage, indent=2))
    evals = read_results(ctx.input("eval").path / "results.json") if ctx.inputs_of("eval") else {}
    (out / "README.md").write_text(_model_card(ctx, template, chain, evals))
    sample = smoke_test(out)
    data = next((r for r in chain if r["kind"] == "data"), {})
    scores = {k: v for name, r in evals.get(model_input.kind, {}).items() for m, est in r.metrics.items()
              for k, v in est.metrics(f"eval/{name}/{m}").items()}
    ctx.tracker.register_model(
        config.registered_model, out, description=_registry_description(ctx, chain), metrics=scores,
        tags={"fingerprint": ctx.fingerprint, "data_fingerprint": data.get("fingerprint", ""), "line": config.line,
              "template_hash": template_digest(template), "git_commit": model_input.manifest.get("git_commit", ""),
              "artifact_uri": ctx.uri})
    why = "records this run's MLflow run ids, artifact URIs and upstream wall-clock timings"
    return StageResult(metrics={"parameters": float(sample["parameters"])},
                       varies={"model/README.md": why, "model/lineage.json": why},
                       report_markdown=f"### {ctx.name}\n\nExported to `{out}`.\n\nSample: `{sample['text']!r}`\n")


def _registry_description(ctx: StageContext, chain: list[dict]) -> str:
    return (f"**{ctx.config.registered_model}**, exported by `{ctx.name}` (fingerprint `{ctx.fingerprint[:12]}`) "
            f"to `{ctx.uri}`.\n\nLineage, from this model back to the data and its raw inputs:\n\n"
            + lineage_table(ctx.tracker.tracking_uri, chain))


def _model_card(ctx: StageContext, template: str, chain: list[dict], evals: dict) -> str:
    eval_lines = [f"- {model} / {name}: " + "; ".join(f"{m} {est.format()}" for m, est in r.metrics.items())
                  for model, per in evals.items() for name, r in per.items()] or ["- no eval results"]
    rows = "\n".join(f"| {r['stage']} | `{r['fingerprint'][:12]}` | {r['mlflow_run_id'] or '-'} |" for r in chain)
    raw = sum(len(r["raw_inputs"]) for r in chain)
    return MODEL_CARD.format(name=ctx.config.registered_model, line=ctx.config.line, template=template,
                             digest=template_digest(template), evals="\n".join(eval_lines), uri=ctx.uri,
                             fingerprint=ctx.fingerprint, rows=rows, raw=raw)
