"""The eval stage: published figures (value, 95% interval, item count) per model and eval set.

Per set, by its scorer (see `olmo3_core.problems.evalsets.EVAL_SETS`):
- math / code: greedy accuracy (= pass@1, Wilson interval) and, with `eval.sampling.samples`, the
  unbiased pass@k over sampled completions (bootstrap interval over items);
- ifeval: prompt-level accuracy (every instruction followed; Wilson) and instruction-level accuracy
  (bootstrap over prompts, because the instructions of one prompt are not independent);
- needle: accuracy per prompt length in `eval.needle_lengths` (Wilson);
- every set with a reference text: bits-per-byte of the reference given the prompt, i.e. summed NLL
  in bits over the reference's UTF-8 bytes, which (unlike per-token perplexity) compares models with
  different tokenizers.

The base line evaluates the long-context base with few-shot prompts (it has no chat template yet);
a post-training line evaluates each of its checkpoints with its chat template and reports the change
against the base line's results, which it reads from the base eval artifact.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from olmo3_core.config.schema import EvalConfig, EvalStageConfig
from olmo3_core.evaluation import curves
from olmo3_core.evaluation.checks import check_eval_config
from olmo3_core.evaluation.generate import Generator, Sampling
from olmo3_core.evaluation.prompts import chat_prompt, format_prompts
from olmo3_core.evaluation.results import Sample, SetResult, read_results, write_results
from olmo3_core.evaluation.stats import (Estimate, bits_per_byte, bootstrap_ratio, paired_difference, pass_at_k_estimate,
                                         proportion)
from olmo3_core.kinds import BASE_TRAINING, MODEL_KINDS
from olmo3_core.plots import bar_plot
from olmo3_core.problems import needle
from olmo3_core.problems.evalsets import EvalSet, EvalSetUnavailable, get_eval_set, load_eval_set
from olmo3_core.problems.verifiers import get_verifier
from olmo3_core.problems.verifiers.ifeval import check_constraint
from olmo3_core.problems.verifiers.math import strip_reasoning
from olmo3_core.stages import StageContext, StageResult

log = logging.getLogger(__name__)
BASE_MODEL = BASE_TRAINING[-1]  # what post-training starts from: the reference for every line's deltas
SHOWN_SAMPLES = 20


def _first_answer(completion: str, spec: EvalSet) -> str:
    """A base model goes on to write the next few-shot example: judge only its first answer."""
    return completion.split("\n\nInstruction:" if spec.scorer == "ifeval" else "\n\n")[0]


def ground_truth(row: dict[str, Any], spec: EvalSet):
    if spec.scorer == "code":
        return {"tests": [row["test"] + f"\ncheck({row['entry_point']})"]}
    return row["answer"]


def _shown(rows, completions, scores) -> list[Sample]:
    return [Sample(r["prompt"], c, str(r["answer"]), float(s)) for r, c, s in list(zip(rows, completions, scores))[:SHOWN_SAMPLES]]


def _score_pass_fail(gen: Generator, spec: EvalSet, rows, prompts, template, cfg: EvalConfig) -> tuple[dict[str, Estimate], list[Sample]]:
    verify = get_verifier(spec.scorer)

    def scores_of(completions: list[str]) -> list[bool]:
        if template is None:
            completions = [_first_answer(c, spec) for c in completions]
        texts = [p + c if spec.scorer == "code" else c for p, c in zip(prompts, completions)]
        return [verify(t, ground_truth(r, spec)) == 1.0 for t, r in zip(texts, rows)]

    completions = gen.generate(prompts, cfg.max_new_tokens, cfg.batch_size)
    greedy = scores_of(completions)
    metrics = {"accuracy": proportion(greedy)}
    s = cfg.sampling
    if s.samples:
        drawn = gen.sample(prompts, cfg.max_new_tokens, cfg.batch_size, Sampling(s.samples, s.temperature, s.top_p, cfg.seed))
        per_sample = [scores_of([d[j] for d in drawn]) for j in range(s.samples)]
        correct = [sum(per_sample[j][i] for j in range(s.samples)) for i in range(len(rows))]
        for k in s.k:
            metrics[f"pass_at_{k}"] = pass_at_k_estimate(correct, s.samples, k, seed=cfg.bootstrap_seed)
    return metrics, _shown(rows, completions, greedy)


def _score_ifeval(gen: Generator, spec: EvalSet, rows, prompts, template, cfg: EvalConfig) -> tuple[dict[str, Estimate], list[Sample]]:
    completions = gen.generate(prompts, cfg.max_new_tokens, cfg.batch_size)
    if template is None:
        completions = [_first_answer(c, spec) for c in completions]
    followed = [[check_constraint(strip_reasoning(c), spec_) for spec_ in r["constraints"]] for c, r in zip(completions, rows)]
    metrics = {
        "prompt_accuracy": proportion([all(f) for f in followed]),
        "instruction_accuracy": bootstrap_ratio([sum(f) for f in followed], [len(f) for f in followed], seed=cfg.bootstrap_seed),
    }
    return metrics, _shown(rows, completions, [sum(f) / len(f) for f in followed])


def _score_needle(gen: Generator, rows, template, cfg: EvalConfig) -> tuple[dict[str, Estimate], list[Sample]]:
    metrics, shown = {}, []
    for length in cfg.needle_lengths:
        items = [needle.NeedleItem(r["answer"], r["depth"]) for r in rows]
        texts = [needle.build_prompt(item, length, gen.count_tokens) for item in items]
        prompts = texts if template is None else [chat_prompt(gen.tokenizer, template, t) for t in texts]
        completions = gen.generate(prompts, needle.MAX_NEW_TOKENS, cfg.batch_size)
        hits = [needle.score(c, item.key) for c, item in zip(completions, items)]
        metrics[f"accuracy_len{length}"] = proportion(hits)
        shown += [Sample(f"[{length} tokens, depth {i.depth:.2f}] ...{needle.QUESTION}", c, i.key, float(h))
                  for i, c, h in list(zip(items, completions, hits))[:3]]
    return metrics, shown


# math and code items are right or wrong (greedy accuracy is pass@1, sampled pass@k applies); an
# ifeval item is a set of instructions, scored at both levels
SCORERS = {"math": _score_pass_fail, "code": _score_pass_fail, "ifeval": _score_ifeval}


def evaluate_model(model_dir, template: str | None, cfg: EvalConfig, sets: dict[str, list]) -> dict[str, SetResult]:
    gen = Generator(model_dir, cfg.backend)
    results: dict[str, SetResult] = {}
    for name, rows in sets.items():
        spec = get_eval_set(name)
        if spec.scorer == "needle":
            metrics, shown = _score_needle(gen, rows, template, cfg)
            results[name] = SetResult(metrics, gen.backend, shown)
            continue
        prompts, refs = format_prompts(rows, template, gen.tokenizer, cfg, spec)
        metrics, shown = SCORERS[spec.scorer](gen, spec, rows, prompts, template, cfg)
        metrics["bits_per_byte"] = bits_per_byte(gen.reference_nll(prompts, refs), refs, cfg.bootstrap_seed)
        results[name] = SetResult(metrics, gen.backend, shown)
    if cfg.lm_eval_sets:
        from olmo3_core.evaluation.lmeval import run_harness  # the optional `lmeval` extra

        with tempfile.TemporaryDirectory() as tasks:
            for name in cfg.lm_eval_sets:
                results[f"lm_eval/{name}"] = run_harness(model_dir, name, cfg, Path(tasks) / name, template, gen.tokenizer)
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


def metrics_of(results: dict[str, dict[str, SetResult]]) -> dict[str, float]:
    """MLflow metrics: `<model>/<set>/<metric>` with `_ci_low`, `_ci_high` and `_n` beside it."""
    out: dict[str, float] = {}
    for kind, per in results.items():
        for name, r in per.items():
            for metric, est in r.metrics.items():
                out.update(est.metrics(f"{kind}/{name}/{metric}"))
    return out


def run(ctx: StageContext) -> StageResult:
    config: EvalStageConfig = ctx.config
    cfg, template = config.eval, config.template
    check_eval_config(cfg)
    sets, skipped = load_sets(cfg)
    models = [k for k in MODEL_KINDS if ctx.inputs_of(k)]
    results, by_fingerprint = {}, {}
    for i, kind in enumerate(models):
        ctx.progress(i, len(models), f"evaluating {kind}")
        results[kind] = by_fingerprint[ctx.input(kind).fingerprint] = evaluate_model(ctx.input(kind).path / "model",
                                                                                     template, cfg, sets)
    curve_md = _checkpoint_curve(ctx, cfg, sets, by_fingerprint) if cfg.checkpoint_curve.enabled and template is None else ""
    ctx.progress(len(models), len(models), "done")
    base = read_results(ctx.input("eval").path / "results.json") if ctx.inputs_of("eval") else {}
    write_results(ctx.output_dir / "results.json", results, skipped)
    first = next(iter(sets))
    primary = next(iter(next(iter(results.values()))[first].metrics)) if results else "accuracy"
    plotted = {("base" if kind == BASE_MODEL else kind): per[first].metrics[primary].value
               for kind, per in {**base, **results}.items() if first in per and primary in per[first].metrics}
    ctx.tracker.log_artifact(bar_plot(plotted, ctx.output_dir / "accuracy.png", f"{first} {primary}", primary), "plots")
    effects = step_effects(results, base, cfg.bootstrap_seed)
    metrics = metrics_of(results)
    for (kind, set_name, metric), (_, diff) in effects.items():
        metrics.update(diff.metrics(f"{kind}/{set_name}/{metric}_vs_previous"))
    return StageResult(metrics=metrics, report_markdown=report(ctx.name, results, base, skipped, effects) + curve_md)


def _checkpoint_curve(ctx: StageContext, cfg: EvalConfig, sets: dict[str, list],
                      evaluated: dict[str, dict[str, SetResult]]) -> str:
    """The curve over training of the base-training models among the inputs (see `curves`): logged to
    MLflow by global step, written to the artifact; returns its report table ("" when there is none)."""
    stages = curves.base_stages([a for a in ctx.inputs.values() if a.kind in BASE_TRAINING],
                                ctx.execution.storage_options)
    if not stages:
        return ""
    points = curves.checkpoint_curve(stages, cfg, sets, evaluated,
                                     lambda model_dir, light, rows: evaluate_model(model_dir, None, light, rows),
                                     lambda desc: log.info("%s: %s", ctx.name, desc))
    for plot in curves.log_curve(points, cfg.checkpoint_curve.metric_set, ctx.tracker, ctx.output_dir):
        ctx.tracker.log_artifact(plot, "plots")
    return "\n" + curves.curve_report(points, cfg.checkpoint_curve.metric_set)


def previous_models(results: dict[str, dict[str, SetResult]], base: dict[str, dict[str, SetResult]]
                    ) -> dict[str, tuple[str, dict[str, SetResult]]]:
    """What each evaluated model continued from, as (label, its results): the model before it in the
    line, and for a line's first step the base model (from the base eval). Every eval of one flow scores
    the same items (one eval config, one seed), so the two can be compared item by item."""
    out, before = {}, (f"{BASE_MODEL} (base)", base[BASE_MODEL]) if BASE_MODEL in base else None
    for kind, per in results.items():
        if before is not None:
            out[kind] = before
        before = (kind, per)
    return out


def step_effects(results: dict[str, dict[str, SetResult]], base: dict[str, dict[str, SetResult]], seed: int
                 ) -> dict[tuple[str, str, str], tuple[str, Estimate]]:
    """(model, set, metric) -> (the model it continued from, paired difference model - that one), for every
    metric with per-item scores on both sides."""
    out = {}
    for kind, (label, prev) in previous_models(results, base).items():
        for set_name, r in results[kind].items():
            for metric, est in r.metrics.items():
                ref = prev.get(set_name)
                diff = paired_difference(est, ref.metrics[metric], seed) if ref and metric in ref.metrics else None
                if diff is not None:
                    out[(kind, set_name, metric)] = (label, diff)
    return out


def _signed(est: Estimate) -> str:
    return f"{est.value:+.3f} [{est.ci_low:+.3f}, {est.ci_high:+.3f}] ({est.n})"


def report(name: str, results: dict[str, dict[str, SetResult]], base: dict[str, dict[str, SetResult]],
           skipped: list[str], effects: dict[tuple[str, str, str], tuple[str, Estimate]]) -> str:
    lines = [f"### {name}", "", "Value [95% interval] (items): Wilson for accuracies, bootstrap over items for "
             "pass@k, instruction accuracy and bits-per-byte (lower is better). Δ vs previous: the change from the "
             "model it continued from on the same items, with a paired-bootstrap 95% interval.", ""]
    headline = [(k, e) for k, e in effects.items() if k[2] == next(iter(results[k[0]][k[1]].metrics))]
    if headline:  # each step's effect on each set's primary metric, said in words
        lines += ["**Effect of each step** (primary metric of each set; an effect only where the interval of the "
                  "difference excludes 0):", ""]
        for (kind, set_name, metric), (label, diff) in headline:
            verdict = ("an effect" if diff.ci_low > 0 or diff.ci_high < 0 else "no effect distinguishable from noise")
            lines.append(f"- {kind} vs {label}, {set_name} {metric}: {_signed(diff)}: {verdict}")
        lines.append("")
    lines += ["| model | eval set | metric | value [95% CI] (n) | Δ vs base | Δ vs previous [95% CI] |",
              "|---|---|---|---|---|---|"]
    for kind, per in results.items():
        for set_name, r in per.items():
            for metric, est in r.metrics.items():
                ref = base.get(BASE_MODEL, {}).get(set_name)
                delta = f"{est.value - ref.metrics[metric].value:+.3f}" if ref and metric in ref.metrics else "-"
                step = effects.get((kind, set_name, metric))
                lines.append(f"| {kind} | {set_name} | {metric} | {est.format()} | {delta} | "
                             f"{f'{_signed(step[1])} vs {step[0]}' if step else '-'} |")
    lines += [f"\nSkipped: {s}" for s in skipped]
    return "\n".join(lines) + "\n"
