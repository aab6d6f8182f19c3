"""Task definitions for EleutherAI's lm-evaluation-harness (`lm-eval`) that read the project's own eval items.

`write_tasks` renders, per eval set, the exact prompts and reference continuations the eval stage
uses (few-shot text for a base model, the chat template otherwise) to a local JSONL file and writes
two lm-eval task YAMLs over it, so the harness needs no hub download:

- `olmo3_<set>_loglik` (output_type loglikelihood): log-likelihood of the reference given the
  prompt, per item in the harness's logged samples (the same sum the eval stage's bits-per-byte
  divides by bytes); its `acc` says whether the reference is the greedy continuation.
- `olmo3_<set>_gen` (generate_until, greedy, stopping where the eval stage cuts a base model's answer):
  exact match of the last "The answer is N" number against the answer (math sets only).

Run a harness task on any export:

    python -m olmo3_core.evaluation.lmeval --out lm_tasks --sets procedural_math=50 [--template instruct]
    HF_DATASETS_OFFLINE=1 lm_eval --model hf --model_args pretrained=<export>/model,dtype=float32 \\
        --include_path lm_tasks --tasks olmo3_procedural_math_loglik,olmo3_procedural_math_gen
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from olmo3_core.config.schema import EvalConfig
from olmo3_core.evaluation.prompts import format_prompts
from olmo3_core.evaluation.results import SetResult
from olmo3_core.evaluation.stats import bits_per_byte, proportion
from olmo3_core.problems.evalsets import get_eval_set, load_eval_set

GEN_SCORERS = {"math"}  # exact match on the final number is what the math verifier reduces to
ANSWER_REGEX = r"The answer is \$?(-?[0-9][0-9,]*(?:\.[0-9]+)?)"


@dataclass(frozen=True)
class TaskFiles:
    data: Path
    tasks: dict[str, Path]  # task name -> YAML


def _yaml(fields: dict) -> str:
    # JSON is valid YAML: no YAML library quirks with the prompts' colons and newlines
    return "\n".join(f"{k}: {json.dumps(v)}" for k, v in fields.items()) + "\n"


def write_tasks(out: Path, eval_set: str, cfg: EvalConfig, size: int, template: str | None = None,
                tokenizer=None) -> TaskFiles:
    """The items of `eval_set` as the eval stage prompts them, and lm-eval tasks over them, under `out`."""
    spec = get_eval_set(eval_set)
    if spec.scorer == "needle":
        raise ValueError("the needle set is built per model tokenizer at eval time: it has no fixed items to export")
    if template is not None and tokenizer is None:
        raise ValueError("a chat template needs the model's tokenizer to render the prompts")
    rows = load_eval_set(eval_set, size=size, seed=cfg.seed)
    prompts, refs = format_prompts(rows, template, tokenizer, cfg, spec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = (out / f"olmo3_{eval_set}.jsonl").resolve()
    with open(data, "w", encoding="utf-8") as fh:
        for row, prompt, ref in zip(rows, prompts, refs):
            fh.write(json.dumps({"context": prompt, "target": ref, "answer": str(row["answer"])}) + "\n")
    common = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test",
              "doc_to_text": "{{context}}"}
    tasks = {f"olmo3_{eval_set}_loglik": {**common, "output_type": "loglikelihood", "doc_to_target": "{{target}}",
                                          # not lm-eval's `perplexity`: exp(mean summed NLL) of a long reference overflows a float; the
                                          # per-item log-likelihoods are in its samples, and `run_harness` reports bits-per-byte
                                          "metric_list": [{"metric": "acc"}]}}
    if spec.scorer in GEN_SCORERS:
        tasks[f"olmo3_{eval_set}_gen"] = {
            **common, "output_type": "generate_until", "doc_to_target": "{{answer}}",
            "generation_kwargs": {"until": ["\n\n", "<|im_end|>"], "do_sample": False, "max_gen_toks": cfg.max_new_tokens},
            "filter_list": [{"name": "answer", "filter": [{"function": "regex", "regex_pattern": ANSWER_REGEX},
                                                          {"function": "take_first"}]}],
            "metric_list": [{"metric": "exact_match", "ignore_punctuation": False, "regexes_to_ignore": [","]}]}
    paths = {}
    for name, fields in tasks.items():
        paths[name] = out / f"{name}.yaml"
        paths[name].write_text(_yaml({"task": name, **fields}))
    return TaskFiles(data, paths)


def run_harness(model_dir: Path, eval_set: str, cfg: EvalConfig, workdir: Path, template: str | None = None,
                tokenizer=None) -> SetResult:
    """Score one eval set through lm-eval's own HF model wrapper, with the project's intervals.

    From the harness's per-item outputs: `bits_per_byte` (summed reference log-likelihood over the
    reference's UTF-8 bytes, bootstrap interval), `reference_is_greedy` and, for math sets,
    `exact_match` (both Wilson). The eval stage's own figures on the same items should agree.
    """
    import importlib.metadata

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    files = write_tasks(workdir, eval_set, cfg, cfg.sets[eval_set], template, tokenizer)
    out = simple_evaluate(
        model="hf", device="cuda" if torch.cuda.is_available() else "cpu", tasks=list(files.tasks),
        # lm-eval cuts contexts to the model's max positions unless told; the eval stage scores them whole
        model_args={"pretrained": str(model_dir), "dtype": "float32", "max_length": 1 << 16},
        bootstrap_iters=0, log_samples=True, task_manager=TaskManager(include_path=str(workdir), include_defaults=False))
    # lm-eval moves a context's trailing whitespace (a chat prompt's final newline) into the continuation
    # it scores, so its bytes count here too: bits per byte of exactly what the harness scored. Hence
    # on chat prompts its figure is not the stage's (which scores the reference alone); on few-shot
    # prompts, which end in "Solution:", the two are the same number.
    items = [json.loads(line) for line in files.data.read_text().splitlines()]
    targets = [i["context"][len(i["context"].rstrip()):] + i["target"] for i in items]

    def per_doc(task: str) -> list[dict]:
        return sorted(out["samples"][task], key=lambda d: d["doc_id"])

    loglik = per_doc(f"olmo3_{eval_set}_loglik")
    metrics = {
        "bits_per_byte": bits_per_byte([-d["resps"][0][0][0] for d in loglik], targets, seed=cfg.bootstrap_seed),
        "reference_is_greedy": proportion([bool(d["resps"][0][0][1]) for d in loglik]),
    }
    if f"olmo3_{eval_set}_gen" in files.tasks:
        metrics["exact_match"] = proportion([float(d["exact_match"]) for d in per_doc(f"olmo3_{eval_set}_gen")])
    return SetResult(metrics, f"lm-eval {importlib.metadata.version('lm_eval')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write lm-eval task definitions over the project's eval items")
    parser.add_argument("--out", required=True)
    parser.add_argument("--sets", nargs="+", default=["procedural_math=50"], help="name=size ...")
    parser.add_argument("--template", help="chat template of a post-trained export (default: a base model's few-shot)")
    parser.add_argument("--model", help="the export's model dir (its tokenizer renders the chat template)")
    parser.add_argument("--fewshot", type=int, default=EvalConfig.fewshot)
    args = parser.parse_args(argv)
    tokenizer = None
    if args.template:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model)
    cfg = EvalConfig(fewshot=args.fewshot)
    for item in args.sets:
        name, _, size = item.partition("=")
        for task, path in write_tasks(Path(args.out), name, cfg, int(size or 50), args.template, tokenizer).tasks.items():
            print(f"{task}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
