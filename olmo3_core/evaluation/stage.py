"""The eval stage: accuracy (by verifier) and reference perplexity on held-out sets, per model.

The base line evaluates the long-context base with few-shot prompts (it has no chat template yet);
a post-training line evaluates each of its checkpoints with its chat template and reports the change
against the base line's results, which it reads from the base eval artifact.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from olmo3_core.chat import chat_template
from olmo3_core.config.schema import EvalConfig, EvalStageConfig
from olmo3_core.evaluation.generate import Generator
from olmo3_core.kinds import BASE_TRAINING, MODEL_KINDS
from olmo3_core.plots import bar_plot
from olmo3_core.problems.evalsets import EvalSetUnavailable, load_eval_set
from olmo3_core.problems.procedural import math as procedural_math
from olmo3_core.problems.verifiers import get_verifier
from olmo3_core.stages import StageContext, StageResult

log = logging.getLogger(__name__)
SET_VERIFIER = {"procedural_math": "math", "gsm8k_test": "math", "humaneval": "code"}
BASE_MODEL = BASE_TRAINING[-1]  # what post-training starts from: the reference for every line's deltas


def fewshot_prefix(k: int, seed: int) -> str:
    """Worked examples in the format math appears in the pretraining corpus."""
    shots = procedural_math.generate(k, seed, split="train")
    return "".join(f"Problem: {p.question}\nSolution: {p.solution}\n\n" for p in shots)


def format_prompts(rows: list[dict[str, Any]], template: str | None, tokenizer, cfg: EvalConfig, eval_set: str):
    """(prompts, references): few-shot text for a base model, the chat template otherwise."""
    if eval_set == "humaneval":
        return [r["prompt"] for r in rows], [r["answer"] for r in rows]
    if template is None:
        prefix = fewshot_prefix(cfg.fewshot, cfg.seed)
        return [f"{prefix}Problem: {r['prompt']}\nSolution:" for r in rows], [" " + r["solution"] for r in rows]
    tokenizer.chat_template = chat_template(template)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}], add_generation_prompt=True,
                                             tokenize=False) for r in rows]
    refs = []
    for r in rows:
        working, _, answer = r["solution"].rpartition("The answer is")
        refs.append(f"{working.strip()}</think>The answer is{answer}<|im_end|>" if template == "think" and working
                    else r["solution"] + "<|im_end|>")
    return prompts, refs


def ground_truth(row: dict[str, Any], eval_set: str):
    if eval_set == "humaneval":
        return {"tests": [row["test"] + f"\ncheck({row['entry_point']})"]}
    return row["answer"]


def evaluate_model(model_dir, template: str | None, cfg: EvalConfig, sets: dict[str, list]) -> dict[str, Any]:
    gen = Generator(model_dir, cfg.backend)
    results: dict[str, Any] = {}
    for name, rows in sets.items():
        prompts, refs = format_prompts(rows, template, gen.tokenizer, cfg, name)
        completions = gen.generate(prompts, cfg.max_new_tokens, cfg.batch_size)
        if template is None:  # a base model goes on to write the next example: judge its first answer
            completions = [c.split("\n\n")[0] for c in completions]
        verify = get_verifier(SET_VERIFIER[name])
        texts = [p + c if name == "humaneval" else c for p, c in zip(prompts, completions)]
        scores = [verify(t, ground_truth(r, name)) for t, r in zip(texts, rows)]
        results[name] = {
            "accuracy": sum(scores) / len(scores),
            "perplexity": gen.perplexity(prompts, refs),
            "n": len(rows),
            "backend": gen.backend,
            "samples": [{"prompt": r["prompt"], "completion": c, "answer": r["answer"], "score": s}
                        for r, c, s in list(zip(rows, completions, scores))[:20]],
        }
    return results


def load_sets(cfg: EvalConfig) -> tuple[dict[str, list], list[str]]:
    sets, skipped = {}, []
    for name, size in cfg.sets.items():
        if size <= 0:
            continue
        try:
            sets[name] = load_eval_set(name, size=size, seed=cfg.seed)
        except EvalSetUnavailable as exc:
            log.warning("skipping eval set %s: %s", name, exc)
            skipped.append(f"{name}: {exc}")
    if not sets:
        raise ValueError("eval.sets selects no available eval set")
    return sets, skipped


def run(ctx: StageContext) -> StageResult:
    config: EvalStageConfig = ctx.config
    cfg, template = config.eval, config.template
    sets, skipped = load_sets(cfg)
    models = [k for k in MODEL_KINDS if k in ctx.inputs]
    results = {}
    for i, kind in enumerate(models):
        ctx.progress(i, len(models), f"evaluating {kind}")
        results[kind] = evaluate_model(ctx.input(kind).path / "model", template, cfg, sets)
    ctx.progress(len(models), len(models), "done")
    base = json.loads((ctx.input("eval").path / "results.json").read_text())["results"] if "eval" in ctx.inputs else {}
    (ctx.output_dir / "results.json").write_text(json.dumps({"results": results, "skipped": skipped}, indent=2))
    metrics = {f"{kind}/{name}/{m}": r[m] for kind, per in results.items() for name, r in per.items()
               for m in ("accuracy", "perplexity")}
    first = next(iter(sets))
    accuracy = {("base" if kind == BASE_MODEL else kind): per[first]["accuracy"]
                for kind, per in {**base, **results}.items() if first in per}
    ctx.tracker.log_artifact(bar_plot(accuracy, ctx.output_dir / "accuracy.png", f"{first} accuracy", "accuracy"), "plots")
    return StageResult(metrics=metrics, report_markdown=report(ctx.name, results, base, skipped))


def report(name: str, results: dict, base: dict, skipped: list[str]) -> str:
    lines = [f"### {name}", "", "| model | eval set | accuracy | Δ vs base | perplexity |", "|---|---|---|---|---|"]
    for kind, per in results.items():
        for set_name, r in per.items():
            ref = base.get(BASE_MODEL, {}).get(set_name, {}).get("accuracy")
            delta = f"{r['accuracy'] - ref:+.3f}" if ref is not None else "-"
            lines.append(f"| {kind} | {set_name} | {r['accuracy']:.3f} | {delta} | {r['perplexity']:.3g} |")
    lines += [f"\nSkipped: {s}" for s in skipped]
    return "\n".join(lines) + "\n"
