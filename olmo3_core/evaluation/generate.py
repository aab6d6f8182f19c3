"""Greedy generation and reference perplexity for a saved model directory.

vLLM is used when asked for (or on `auto`) and both it and a GPU are present; otherwise batched
transformers generation, which is what runs on CPU.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def choose_backend(requested: str) -> str:
    if requested == "transformers" or not torch.cuda.is_available():
        if requested == "vllm":
            log.warning("eval.backend=vllm needs a GPU; falling back to transformers generation")
        return "transformers"
    try:
        import vllm  # noqa: F401
    except ImportError:
        if requested == "vllm":
            log.warning("eval.backend=vllm but vllm is not installed (pip install '.[gpu]'); using transformers")
        return "transformers"
    return "vllm"


class Generator:
    def __init__(self, model_dir: Path, backend: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.backend = choose_backend(backend)
        self.stop_ids = [i for i in self.tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]) if i is not None]

    def generate(self, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
        if self.backend == "vllm":
            return self._generate_vllm(prompts, max_new_tokens)
        outputs: list[str] = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                          eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id)
            new = ids[:, enc["input_ids"].shape[1]:]
            outputs += self.tokenizer.batch_decode(new, skip_special_tokens=False)
        return [_cut(o) for o in outputs]

    def _generate_vllm(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        from vllm import LLM, SamplingParams

        llm = LLM(model=str(self.model_dir), dtype="bfloat16", enforce_eager=True)
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=self.stop_ids)
        return [_cut(out.outputs[0].text) for out in llm.generate(prompts, params)]

    def perplexity(self, prompts: list[str], references: list[str]) -> float:
        """exp(mean NLL) of the reference continuations given their prompts."""
        total_nll, total_tokens = 0.0, 0
        for prompt, ref in zip(prompts, references):
            p_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            r_ids = self.tokenizer(ref, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p_ids + r_ids])
            labels = ids.clone()
            labels[0, : len(p_ids)] = -100
            with torch.no_grad():
                loss = self.model(input_ids=ids, labels=labels).loss
            total_nll += float(loss) * len(r_ids)
            total_tokens += len(r_ids)
        return math.exp(total_nll / max(total_tokens, 1))


def _cut(text: str) -> str:
    """Drop everything from the first end-of-turn marker and any padding."""
    for marker in ("<|im_end|>", "<|endoftext|>"):
        text = text.split(marker)[0]
    return text.replace("<|pad|>", "").strip()
