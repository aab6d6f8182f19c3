"""The dpo_pairs stage: delta-learning preference pairs for DPO, as OLMo 3 builds its DPO data.

Delta learning (open-instruct `scripts/delta_learning/olmo3_*`): on the same prompts, the chosen
response comes from a stronger model and the rejected one from a weaker model; the quality delta is
the signal. Here the stronger model is the one the DPO step continues from (the line's SFT model) and
the weaker one a base-training checkpoint (`rejected_from`). Where the verifier fails the stronger
model's answer, the worked reference solution is chosen instead (`reference_when_chosen_fails`), so
a chosen response is never a wrong one; pairs whose two sides are the same text are dropped.

Rows are Dolci preference rows (`prompt` / `chosen` / `rejected`) plus `chosen_model` and
`rejected_model`: the stage and fingerprint of each model. Generation is greedy, so the pairs are a
function of the two models and this config (the stage's fingerprint covers all three).
"""
from __future__ import annotations

import json
import logging
from typing import Any

from olmo3_core.chat import THINK_END
from olmo3_core.config.schema import PairsStageConfig
from olmo3_core.evaluation.generate import Generator
from olmo3_core.evaluation.prompts import chat_prompt
from olmo3_core.problems.procedural import math as procedural_math
from olmo3_core.problems.verifiers import get_verifier
from olmo3_core.stages import InputArtifact, StageContext, StageResult
from olmo3_core.stages.report import metrics_table

log = logging.getLogger(__name__)
FILE = "pairs.jsonl"


def completion_message(style: str, completion: str) -> dict[str, str]:
    """A generated assistant turn (the text after the generation prompt, up to its end-of-turn) as the
    message the chat template renders back into those tokens: Think's reasoning is what precedes
    `</think>`, all of it when the model never closed the section."""
    if style != "think":
        return {"role": "assistant", "content": completion}
    reasoning, closed, content = completion.partition(THINK_END)
    return {"role": "assistant", "reasoning": reasoning, "content": content if closed else ""}


def model_inputs(ctx: StageContext) -> tuple[InputArtifact, InputArtifact]:
    """(stronger, weaker): the plan gives the stage the model DPO continues from, then the configured weaker
    base model (`pairs.rejected_from`, or the soup of souped midtrain runs), as its parents in that order."""
    stronger, weaker = ctx.inputs.values()
    return stronger, weaker


def make_pairs(config: PairsStageConfig, chosen: list[str], rejected: list[str],
               problems: list[procedural_math.MathProblem], names: tuple[str, str]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Preference rows from the two models' responses (pure: the stage's science, tested without models)."""
    verify = get_verifier(config.verifier)
    rows, counts = [], {"prompts": len(problems), "chosen_from_model": 0, "chosen_from_reference": 0,
                        "dropped_no_delta": 0, "rejected_correct": 0}
    for problem, good, bad in zip(problems, chosen, rejected):
        if not verify(good, str(problem.answer)) and config.pairs.reference_when_chosen_fails:
            chosen_turn, source = procedural_math.assistant_turn(problem, config.template), "reference"
        else:
            chosen_turn, source = completion_message(config.template, good), "model"
        rejected_turn = completion_message(config.template, bad)
        if chosen_turn == rejected_turn:
            counts["dropped_no_delta"] += 1
            continue
        counts[f"chosen_from_{source}"] += 1
        counts["rejected_correct"] += bool(verify(bad, str(problem.answer)))
        rows.append({"prompt": [{"role": "user", "content": problem.question}],
                     "chosen": [chosen_turn], "rejected": [rejected_turn],
                     "chosen_model": names[0] if source == "model" else f"{names[0]} (failed; reference solution)",
                     "rejected_model": names[1]})
    counts["pairs"] = len(rows)
    return rows, {k: float(v) for k, v in counts.items()}


def run(ctx: StageContext) -> StageResult:
    config: PairsStageConfig = ctx.config
    stronger, weaker = model_inputs(ctx)
    problems = procedural_math.generate(config.pairs.prompts, config.pairs.seed, "train")
    responses = []
    for i, artifact in enumerate((stronger, weaker)):
        ctx.progress(i, 2, f"generating with {artifact.stage}")
        # the eval's generator, on transformers in fp32 everywhere: greedy pairs that do not depend on the machine
        generator = Generator(artifact.path / "model", backend="transformers")
        prompts = [chat_prompt(generator.tokenizer, config.template, p.question) for p in problems]
        responses.append(generator.generate(prompts, config.pairs.max_new_tokens, config.pairs.batch_size))
        del generator
    names = tuple(f"{a.stage}@{a.fingerprint[:12]}" for a in (stronger, weaker))
    rows, metrics = make_pairs(config, responses[0], responses[1], problems, names)
    if not rows:
        raise ValueError(f"dpo_pairs: no pair has a delta ({metrics}); the two models answered alike")
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    with open(ctx.output_dir / FILE, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    (ctx.output_dir / "models.json").write_text(json.dumps(
        {"chosen": {"stage": stronger.stage, "fingerprint": stronger.fingerprint, "uri": stronger.uri},
         "rejected": {"stage": weaker.stage, "fingerprint": weaker.fingerprint, "uri": weaker.uri}}, indent=2))
    log.info("dpo_pairs: %d pairs (chosen %s, rejected %s): %s", len(rows), names[0], names[1], metrics)
    report = metrics_table(ctx.name, metrics) + f"\nchosen model: `{names[0]}`; rejected model: `{names[1]}`\n"
    return StageResult(metrics=metrics, report_markdown=report)
