"""How the eval stage prompts a model: few-shot text for a base model, the chat template otherwise.

Shared by the eval stage and the lm-eval task export (`lmeval.py`), so the harness sees the very same
prompts and references.
"""
from __future__ import annotations

from typing import Any

from olmo3_core.chat import chat_template
from olmo3_core.config.schema import EvalConfig
from olmo3_core.problems.evalsets import EvalSet
from olmo3_core.problems.procedural import instructions
from olmo3_core.problems.procedural import math as procedural_math


def fewshot_prefix(k: int, seed: int, scorer: str = "math") -> str:
    """Worked examples in the format the task appears in the pretraining corpus."""
    if scorer == "ifeval":
        shots = instructions.generate(k, seed, split="train")
        return "".join(f"Instruction: {t.prompt}\nResponse: {t.response}\n\n" for t in shots)
    shots = procedural_math.generate(k, seed, split="train")
    return "".join(f"Problem: {p.question}\nSolution: {p.solution}\n\n" for p in shots)


def chat_prompt(tokenizer, template: str, text: str) -> str:
    tokenizer.chat_template = chat_template(template)
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)


def format_prompts(rows: list[dict[str, Any]], template: str | None, tokenizer, cfg: EvalConfig, spec: EvalSet):
    """(prompts, references): few-shot text for a base model, the chat template otherwise."""
    if spec.scorer == "code":
        return [r["prompt"] for r in rows], [r["answer"] for r in rows]
    if spec.scorer == "ifeval":
        if template is None:
            prefix = fewshot_prefix(cfg.fewshot, cfg.seed, "ifeval")
            return [f"{prefix}Instruction: {r['prompt']}\nResponse:" for r in rows], [" " + r["answer"] for r in rows]
        return [chat_prompt(tokenizer, template, r["prompt"]) for r in rows], [r["answer"] + "<|im_end|>" for r in rows]
    if template is None:
        prefix = fewshot_prefix(cfg.fewshot, cfg.seed)
        return [f"{prefix}Problem: {r['prompt']}\nSolution:" for r in rows], [" " + r["solution"] for r in rows]
    prompts = [chat_prompt(tokenizer, template, r["prompt"]) for r in rows]
    refs = []
    for r in rows:
        working, _, answer = r["solution"].rpartition("The answer is")
        refs.append(f"{working.strip()}</think>The answer is{answer}<|im_end|>" if template == "think" and working
                    else r["solution"] + "<|im_end|>")
    return prompts, refs
