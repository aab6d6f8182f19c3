"""The soup stage: average the midtrain ingredient runs' weights; longmino continues from the average.

OLMo 3 midtrains from one pretrained model more than once, with different data-order seeds, and
averages ("soups") the resulting weights before long-context extension. Every tensor is averaged in fp32
with `soup.weights` (uniform by default) and stored in its original dtype. The artifact mirrors a
midtrain artifact, so the next stage reads it the same way: `model/` (HF weights, config, tokenizer),
`optimizer/state.pt` and `chain_curves.json`.

The optimizer hand-off: OLMo 3's long-context script loads the optimizer state of the checkpoint it starts
from (`load_optim_state=True`, allenai/OLMo-core src/scripts/official/OLMo3/OLMo-3-1025-7B-long-context.py),
and nothing there treats a souped start differently; so the soup hands on the same weighted average of
its ingredients' AdamW moments (their LRs and step counts agree: the runs differ only in data order).

The report scores each ingredient and the soup on the same held-out text (`soup.heldout_set` items from
its held-out split, from which no training data is drawn).
"""
from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import torch

from olmo3_core.config.schema import SoupStageConfig
from olmo3_core.evaluation.generate import continuation_nll
from olmo3_core.evaluation.stats import Estimate, bits_per_byte
from olmo3_core.kinds import BASE_TRAINING
from olmo3_core.problems.evalsets import eval_texts
from olmo3_core.stages import StageContext, StageResult
from olmo3_core.train.curves import ChainCurves
from olmo3_core.train.handoff import MOMENTS, OptimizerHandoff

log = logging.getLogger(__name__)
MIDTRAIN = BASE_TRAINING[1]


def normalized(weights: list[float], n: int) -> list[float]:
    """`weights` scaled to sum to 1; empty: uniform over `n` ingredients."""
    if not weights:
        return [1.0 / n] * n
    total = sum(weights)
    return [w / total for w in weights]


def average(tensors: dict[str, list[torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Name -> the weighted mean of its tensors, summed in fp32 (bf16 sums lose the small differences
    between ingredients), returned in the first ingredient's dtype."""
    out = {}
    for name, values in tensors.items():
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) != 1:
            raise ValueError(f"cannot average {name}: the ingredients hold shapes {sorted(shapes)}")
        acc = torch.zeros(values[0].shape, dtype=torch.float32)
        for w, v in zip(weights, values):
            acc += w * v.to(torch.float32)
        out[name] = acc.to(values[0].dtype)
    return out


def _by_name(dicts: list[dict[str, torch.Tensor]], what: str) -> dict[str, list[torch.Tensor]]:
    names = set(dicts[0])
    for i, d in enumerate(dicts[1:], 1):
        if set(d) != names:
            raise ValueError(f"{what} of ingredient {i} has other tensors than ingredient 0: "
                             f"{sorted(set(d) ^ names)[:5]}")
    return {name: [d[name] for d in dicts] for name in sorted(names)}


def soup_model(model_dirs: list[Path], weights: list[float], out_dir: Path) -> None:
    """Average the HF safetensors weights of `model_dirs` into `out_dir`; the other files (config,
    tokenizer, generation config) are copied from the first, after checking the configs agree."""
    from safetensors.torch import load_file, save_file

    configs = {(d / "config.json").read_text() for d in model_dirs}
    if len(configs) != 1:
        raise ValueError(f"the ingredients' model configs differ ({[str(d) for d in model_dirs]}): not one architecture")
    out_dir.mkdir(parents=True)
    for path in sorted(model_dirs[0].iterdir()):
        if path.suffix == ".safetensors":  # each shard file by name: one architecture shards the same way
            tensors = _by_name([load_file(d / path.name) for d in model_dirs], str(path.name))
            save_file(average(tensors, weights), out_dir / path.name, metadata={"format": "pt"})
        elif path.is_file():
            shutil.copy2(path, out_dir / path.name)


def soup_optimizer(artifact_dirs: list[Path], weights: list[float]) -> OptimizerHandoff:
    states = [OptimizerHandoff.load(d) for d in artifact_dirs]
    first = states[0]
    for d, s in zip(artifact_dirs[1:], states[1:]):
        scalars, expected = (s.peak_lr, s.final_lr, s.handoff_lr, s.step), (first.peak_lr, first.final_lr,
                                                                          first.handoff_lr, first.step)
        if scalars != expected:
            raise ValueError(f"{d}: its hand-off (peak LR, final LR, hand-off LR, step) {scalars} differs from the "
                             f"first ingredient's {expected}; souped runs must share their schedule")
    moments = {key: average(_by_name([getattr(s, key) for s in states], key), weights) for key in MOMENTS}
    return OptimizerHandoff(first.peak_lr, first.final_lr, first.handoff_lr, first.step, **moments)


def heldout_scores(model_dir: Path, texts: list[str], max_tokens: int, seed: int) -> tuple[float, Estimate]:
    """(mean loss in nats per token, bits per byte with its interval) of the model on `texts`, each cut to
    `max_tokens` (the context the model was trained at) and scored after an EOS, as documents follow one
    another in the training windows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    nll, scored, tokens = [], [], 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_tokens - 1]
        nll.append(continuation_nll(model, [tokenizer.eos_token_id], ids))
        scored.append(tokenizer.decode(ids))
        tokens += len(ids)
    return sum(nll) / tokens, bits_per_byte(nll, scored, seed)


def run(ctx: StageContext) -> StageResult:
    config: SoupStageConfig = ctx.config
    ingredients = ctx.inputs_of(MIDTRAIN)
    if len(ingredients) != len(config.ingredients) or len(ingredients) < 2:
        raise ValueError(f"stage {ctx.name!r} souping seeds {config.ingredients} got {len(ingredients)} midtrain inputs")
    weights = normalized(config.soup.weights, len(ingredients))
    ctx.progress(0, 3, "averaging weights")
    soup_model([a.path / "model" for a in ingredients], weights, ctx.output_dir / "model")
    soup_optimizer([a.path for a in ingredients], weights).save(ctx.output_dir)
    ChainCurves.join([ChainCurves.read(a.path) for a in ingredients]).write(ctx.output_dir)

    ctx.progress(1, 3, "scoring held-out text")
    texts = eval_texts(config.soup.heldout_set, size=config.soup.heldout_items, seed=config.soup.heldout_seed)
    rows = [(a.stage, a.fingerprint, seed, w, a.path / "model") for a, seed, w in zip(ingredients, config.ingredients, weights)]
    rows.append((ctx.name, ctx.fingerprint, None, None, ctx.output_dir / "model"))
    metrics, lines = {}, []
    for name, fingerprint, seed, weight, model_dir in rows:
        loss, bpb = heldout_scores(model_dir, texts, config.seq_len, config.soup.heldout_seed)
        label = "soup" if seed is None else f"seed{seed}"
        metrics[f"heldout_loss/{label}"] = loss
        metrics.update(bpb.metrics(f"heldout_bpb/{label}"))
        lines.append(f"| {name} | {'-' if seed is None else seed} | {'-' if weight is None else f'{weight:.3g}'} | "
                     f"`{fingerprint[:12]}` | {loss:.4f} | {bpb.format(4)} |")
    best = min(metrics[f"heldout_loss/seed{s}"] for s in config.ingredients)
    metrics["heldout_loss/soup_minus_best_ingredient"] = metrics["heldout_loss/soup"] - best
    ctx.progress(3, 3, "done")
    for key in ("heldout_loss/soup", "heldout_loss/soup_minus_best_ingredient"):
        if not math.isfinite(metrics[key]):
            raise ValueError(f"{key} is {metrics[key]}: the soup is not a usable model")
    report = (f"### {ctx.name}: the weighted average of {len(ingredients)} midtrain runs\n\n"
              f"Held-out loss on {len(texts)} `{config.soup.heldout_set}` items (seed {config.soup.heldout_seed}), "
              f"each cut to {config.seq_len} tokens; bits per byte with its 95% bootstrap interval.\n\n"
              "| model | data-order seed | weight | fingerprint | loss (nats/token) | bits per byte |\n"
              "|---|---|---|---|---|---|\n" + "\n".join(lines) +
              f"\n\nsoup minus best ingredient: {metrics['heldout_loss/soup_minus_best_ingredient']:+.4f} nats/token")
    return StageResult(metrics=metrics, report_markdown=report)
