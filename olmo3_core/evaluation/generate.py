"""Greedy and sampled generation, and reference log-likelihood (for bits-per-byte), for a saved model.

vLLM is used when asked for (or on `auto`) and both it and a GPU are present; otherwise batched
transformers generation, which is what runs on CPU.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
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
        self._llm = None
        self.stop_ids = [i for i in self.tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]) if i is not None]

    def generate(self, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
        """One greedy completion per prompt."""
        return [c[0] for c in self._run(prompts, max_new_tokens, batch_size, None)]

    def sample(self, prompts: list[str], max_new_tokens: int, batch_size: int, sampling: Sampling) -> list[list[str]]:
        """`sampling.n` sampled completions per prompt (for pass@k)."""
        return self._run(prompts, max_new_tokens, batch_size, sampling)

    def _run(self, prompts: list[str], max_new_tokens: int, batch_size: int, sampling: Sampling | None) -> list[list[str]]:
        if self.backend == "vllm":
            return self._run_vllm(prompts, max_new_tokens, sampling)
        per_prompt = sampling.n if sampling else 1
        draw = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
                "num_return_sequences": sampling.n} if sampling else {"do_sample": False}
        generator_state = torch.random.get_rng_state()
        if sampling:
            torch.manual_seed(sampling.seed)  # the same samples on a rerun (the stage is cached by fingerprint)
        outputs: list[str] = []
        try:
            # a batch holds whole prompts' sample groups: batch_size counts sequences, not prompts
            step = max(1, batch_size // per_prompt)
            for start in range(0, len(prompts), step):
                chunk = prompts[start : start + step]
                enc = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
                with torch.no_grad():
                    ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=self.stop_ids,
                                              pad_token_id=self.tokenizer.pad_token_id, **draw)
                new = ids[:, enc["input_ids"].shape[1]:]
                outputs += self.tokenizer.batch_decode(new, skip_special_tokens=False)
        finally:
            torch.random.set_rng_state(generator_state)
        cut = [_cut(o) for o in outputs]
        return [cut[i * per_prompt : (i + 1) * per_prompt] for i in range(len(prompts))]

    def _run_vllm(self, prompts: list[str], max_new_tokens: int, sampling: Sampling | None) -> list[list[str]]:
        from vllm import LLM, SamplingParams

        if self._llm is None:
            self._llm = LLM(model=str(self.model_dir), dtype="bfloat16", enforce_eager=True)
        if sampling:
            params = SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                    seed=sampling.seed, max_tokens=max_new_tokens, stop_token_ids=self.stop_ids)
        else:
            params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=self.stop_ids)
        return [[_cut(o.text) for o in out.outputs] for out in self._llm.generate(prompts, params)]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def reference_nll(self, prompts: list[str], references: list[str]) -> list[float]:
        """Summed NLL (nats) of each reference continuation given its prompt."""
        out = []
        for prompt, ref in zip(prompts, references):
            p_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            r_ids = self.tokenizer(ref, add_special_tokens=False)["input_ids"]
            out.append(continuation_nll(self.model, p_ids, r_ids))
        return out


@dataclass(frozen=True)
class Sampling:
    n: int
    temperature: float
    top_p: float
    seed: int


def continuation_nll(model, prompt_ids: list[int], continuation_ids: list[int]) -> float:
    """Sum over the continuation's tokens of -ln p(token | everything before it), in nats.

    Summed, not averaged: bits-per-byte divides the total by the text's bytes, so how many tokens a
    tokenizer cut the text into does not enter the figure.
    """
    if not continuation_ids:
        return 0.0
    if not prompt_ids:
        raise ValueError("continuation_nll needs a non-empty prompt: the first token has no context to be scored in")
    ids = torch.tensor([prompt_ids + continuation_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    target = torch.tensor(continuation_ids)
    return float(-logp[torch.arange(len(continuation_ids)), target].sum())


def _cut(text: str) -> str:
    """Drop everything from the first end-of-turn marker and any padding."""
    for marker in ("<|im_end|>", "<|endoftext|>"):
        text = text.split(marker)[0]
    return text.replace("<|pad|>", "").strip()
