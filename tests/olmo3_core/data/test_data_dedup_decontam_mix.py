"""Dedup (exact, MinHash), decontamination (remove/mask), mixing shares, and config validation."""
from __future__ import annotations

import random

import numpy as np
import pytest
from omegaconf import OmegaConf

from olmo3_core.data.config import DataConfig, DecontamConfig, DedupConfig, MixConfig
from olmo3_core.data.decontam import Decontaminator, load_eval_items
from olmo3_core.data.dedup import Deduplicator, Signer, content_hash
from olmo3_core.data.mixing import EmptyMixError, SourceDocs, plan_mix
from olmo3_core.data.synthetic import english_doc, perturb
from olmo3_core.problems.evalsets import eval_texts


def test_exact_and_near_duplicates_point_at_their_representative():
    cfg = DedupConfig()
    sign, dedup = Signer(cfg), Deduplicator(cfg)
    rng = random.Random(0)
    base = [english_doc(rng, 20) for _ in range(30)]
    docs = base + [base[3], base[4].replace(". ", ".   "), perturb(base[5], rng, 3), perturb(base[6], rng, 4)]
    results = [dedup.add(i, content_hash(t), sign(t)) for i, t in enumerate(docs)]
    assert results[:30] == [None] * 30
    assert [(r.reason, r.kept) for r in results[30:]] == [("dedup:exact", 3), ("dedup:exact", 4), ("dedup:fuzzy", 5), ("dedup:fuzzy", 6)]
    assert results[32].similarity >= cfg.threshold


def test_fuzzy_off_keeps_near_duplicates():
    cfg = DedupConfig(fuzzy=False)
    dedup, text = Deduplicator(cfg), english_doc(random.Random(1), 20)
    assert dedup.add(0, content_hash(text), None) is None
    assert dedup.add(1, content_hash(perturb(text, random.Random(2), 3)), None) is None


def _decontaminator(**kw):
    cfg = DecontamConfig(seed=1234, sets={"procedural_math": 50, "humaneval": 10}, **kw)
    items, notes = load_eval_items(cfg, {})
    return Decontaminator(cfg, items), notes


def test_benchmark_leaks_are_removed_and_templates_are_not():
    decon, _ = _decontaminator()
    leak = eval_texts("humaneval", 10, 0)[2]
    attrs, reason = decon({"text": "Some intro text.\n" + leak + "\nMore text after."})
    assert reason == "decontam:humaneval" and attrs["ngrams"] > 10
    from olmo3_core.problems.procedural.math import generate
    from tests.olmo3_core.data.test_data_decontam_questions import arithmetic

    # Same templates, different problems: not contamination. A train problem with an eval problem's numbers
    # and answer is that problem under another name, so it is left out (as in test_data_decontam_questions).
    # With one-digit operands a train question can still differ from an eval question only in its first
    # number ("Lea has 18 apples. Lea gets 7 more..." vs "Lea has 7 apples. Lea gets 7 more..."), sharing a
    # long n-gram: rare (1 of 186 here), so the bound is on the rate, as in the question-level test.
    eval_problems = {arithmetic(p) for p in generate(50, 1234, "heldout")}
    others = [p for p in generate(200, 0) if arithmetic(p) not in eval_problems]
    assert len(others) >= 150
    flagged = [p for p in others if decon({"text": f"Problem: {p.question} Solution: {p.solution}"})[1] is not None]
    assert len(flagged) / len(others) <= 0.01


def test_mask_mode_replaces_matched_spans():
    decon, _ = _decontaminator(mode="mask", mask_with="[EVAL]")
    leak = eval_texts("procedural_math", 50, 1234)[0]
    doc = {"text": f"Before the leak. {leak} After the leak."}
    attrs, reason = decon(doc)
    assert reason is None and attrs["items"] == 1
    assert doc["text"].startswith("Before the leak. [EVAL]") and doc["text"].endswith("After the leak.")


def test_missing_gsm8k_is_skipped_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setenv("OLMO3_GSM8K_DIR", str(tmp_path))
    monkeypatch.setattr("olmo3_core.problems.evalsets.gsm8k_dir", lambda: None)
    items, notes = load_eval_items(DecontamConfig(seed=1234, sets={"gsm8k_test": 10, "procedural_math": 5}), {})
    assert len(items) == 5 and "gsm8k_test skipped" in notes[0]


def _source(name, lengths):
    lengths = np.asarray(lengths, dtype=np.int64)
    n = lengths.size
    return SourceDocs(name, ["t.npy"], ["d.jsonl.gz"], np.zeros(n, np.int64), np.arange(n), np.cumsum(lengths) - lengths,
                      lengths, [f"{name}-{i}" for i in range(n)])


def _cfg(**mixes):
    base = {"pretrain": MixConfig(tokens=10), "midtrain": MixConfig(tokens=10), "longcontext": MixConfig(tokens=10)}
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), {
        "presets": {"p": {"a": 3, "b": 1}}, "mixes": {**base, **mixes}}))


def test_mix_meets_target_shares_by_up_and_down_sampling():
    sources = {"a": _source("a", [50] * 20), "b": _source("b", [10] * 5)}  # a: 1000 tokens, b: 50 tokens
    plan = plan_mix(_cfg(pretrain=MixConfig(preset="p", tokens=2000)), "pretrain", sources)
    assert plan.shares["a"]["achieved"] == pytest.approx(0.75, abs=0.02)
    assert plan.shares["b"]["epochs"] == pytest.approx(10, abs=0.5)  # upsampled: 500 tokens from 50
    override = plan_mix(_cfg(pretrain=MixConfig(preset="p", proportions={"b": 3.0}, tokens=400)), "pretrain", sources)
    assert override.shares["b"]["target"] == 0.5


def test_a_source_without_documents_keeps_its_target_and_the_others_fill_the_mix():
    sources = {"a": _source("a", [50] * 20), "b": _source("b", [])}
    plan = plan_mix(_cfg(pretrain=MixConfig(preset="p", tokens=2000)), "pretrain", sources)
    assert plan.shares["b"] == {"target": 0.25, "achieved": 0.0, "tokens": 0, "docs": 0, "unique_docs": 0, "epochs": 0.0}
    assert plan.shares["a"]["target"] == 0.75 and plan.shares["a"]["tokens"] == 2000
    assert [s for s, _ in plan.picks] == ["a"] and "['b'] have no documents" in plan.notes[0]


def test_long_context_mix_takes_the_longest_documents():
    sources = {"a": _source("a", [10, 500, 40, 900, 300])}
    plan = plan_mix(_cfg(longcontext=MixConfig(proportions={"a": 1.0}, tokens=1300, min_doc_tokens=100, longest_first=True)),
                    "longcontext", sources)
    assert sorted(sources["a"].length[plan.picks[0][1]].tolist()) == [500, 900]
    with pytest.raises(EmptyMixError, match="longcontext"):
        plan_mix(_cfg(longcontext=MixConfig(proportions={"a": 1.0}, tokens=10, min_doc_tokens=5000)), "longcontext", sources)
