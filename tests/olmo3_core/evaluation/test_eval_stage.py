"""The eval stage's scoring, intervals, bits-per-byte and report, on stub generators and a tiny random model."""
from __future__ import annotations

import json
import math

import pytest
import torch

from olmo3_core.config.compose import compose_config
from olmo3_core.config.schema import EvalConfig, EvalSamplingConfig, EvalStageConfig, ModelConfig, TrainStageConfig
from olmo3_core.config.typed import ConfigError, to_dict
from olmo3_core.evaluation import stage
from olmo3_core.evaluation.generate import continuation_nll
from olmo3_core.evaluation.stats import bits_per_byte, proportion
from olmo3_core.problems import needle
from olmo3_core.problems.evalsets import EVAL_SETS, eval_questions, load_eval_set
from olmo3_core.problems.verifiers.ifeval import verify_instruction
from olmo3_core.stages import InputArtifact, StageContext


class _Logits(torch.nn.Module):
    """Stub causal LM: uniform logits over `vocab`, or certainty about the next id in `script`."""

    def __init__(self, vocab: int, script: list[int] | None = None):
        super().__init__()
        self.vocab, self.script = vocab, script

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        if self.script is not None:
            for t in range(input_ids.shape[1] - 1):
                logits[0, t, self.script[t + 1]] = 1e4
        return type("Out", (), {"logits": logits})()


def test_continuation_nll_and_bits_per_byte_by_hand():
    prompt, cont = [1, 2], [3, 4, 5]
    # uniform over 16 ids: each continuation token costs ln 16 nats = 4 bits
    assert continuation_nll(_Logits(16), prompt, cont) == pytest.approx(3 * math.log(16))
    assert continuation_nll(_Logits(16, prompt + cont), prompt, cont) == pytest.approx(0.0, abs=1e-6)
    # 3 tokens x 4 bits over the 6 bytes of "héllo" (é is two bytes in UTF-8): 2 bits per byte
    est = bits_per_byte([3 * math.log(16)], ["héllo"], seed=0)
    assert est.value == pytest.approx(2.0) and est.n == 1
    # the same text cut into twice as many tokens at half the bits each keeps its bits-per-byte:
    # the figure is about the text, not the tokenizer
    finer = bits_per_byte([6 * math.log(4)], ["héllo"], seed=0)
    assert finer.value == pytest.approx(est.value)


def test_registry_is_what_decontamination_reads():
    assert {"procedural_math", "gsm8k_test", "humaneval", "ifeval", "needle"} <= set(EVAL_SETS)
    rows = load_eval_set("ifeval", size=5, seed=1)
    assert eval_questions("ifeval", size=5, seed=1) == [r["prompt"] for r in rows]
    assert all(verify_instruction(r["answer"], r["constraints"]) == 1.0 for r in rows)
    with pytest.raises(ValueError, match="unknown eval set 'nope'.*ifeval"):
        load_eval_set("nope")


def test_needle_prompt_fits_its_length_and_holds_the_key():
    words = lambda text: len(text.split())  # noqa: E731 - a tokenizer stub: one token per word
    for item in needle.items(5, seed=3):
        for length in (80, 300):
            prompt = needle.build_prompt(item, length, words)
            assert length - 4 < words(prompt) <= length
            assert item.statement in prompt and prompt.endswith(needle.QUESTION)
    with pytest.raises(ValueError, match="eval.needle_lengths: 10 tokens"):
        needle.build_prompt(needle.items(1, 0)[0], 10, words)
    assert needle.score(" 12345. Yes", "12345") and not needle.score(" 1234", "12345") and not needle.score("no", "1")


class _FakeTokenizer:
    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1] * len(text.split())}

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return f"<user>{messages[0]['content']}</user>"


class _OracleGenerator:
    """Answers right when the answer is in reach: the reference for ifeval/math, the key of a needle
    whose prompt has at most `reach` tokens; its samples are right for every other sample."""

    backend = "fake"
    reach = 150

    def __init__(self, model_dir, backend):
        self.tokenizer = _FakeTokenizer()
        self.answers: dict[str, str] = {}

    def count_tokens(self, text):
        return len(text.split())

    def _answer(self, prompt):
        for key, ans in self.answers.items():
            if key in prompt:
                return ans
        found = next((i for i in needle.items(50, 1234) if i.statement in prompt), None)
        return f" {found.key}." if found and self.count_tokens(prompt) <= self.reach else " 0"

    def generate(self, prompts, max_new_tokens, batch_size):
        return [self._answer(p) for p in prompts]

    def sample(self, prompts, max_new_tokens, batch_size, sampling):
        return [[self._answer(p) if j % 2 == 0 else "The answer is -1" for j in range(sampling.n)] for p in prompts]

    def reference_nll(self, prompts, refs):
        return [math.log(2) * len(r.encode()) for r in refs]  # exactly 1 bit per byte


def test_evaluate_model_scores_every_suite(monkeypatch):
    cfg = EvalConfig(sets={"procedural_math": 6, "ifeval": 5, "needle": 4}, fewshot=1, needle_lengths=[100, 400],
                     sampling=EvalSamplingConfig(samples=4, k=[1, 2]))
    sets, skipped = stage.load_sets(cfg)
    oracle = _OracleGenerator(None, "auto")
    for r in sets["procedural_math"]:
        oracle.answers[r["prompt"]] = f" The answer is {r['answer']}"
    for r in sets["ifeval"][:3]:  # follows 3 of the 5 prompts' instructions; the other 2 get "0"
        oracle.answers[r["prompt"]] = " " + r["answer"]
    monkeypatch.setattr(stage, "Generator", lambda model_dir, backend: oracle)
    results = stage.evaluate_model("unused", None, cfg, sets)

    math_r = results["procedural_math"].metrics
    assert math_r["accuracy"].value == 1.0 and math_r["accuracy"].n == 6 and math_r["accuracy"].method == "wilson"
    assert math_r["pass_at_1"].value == pytest.approx(0.5)  # 2 of 4 samples right on every item
    assert math_r["pass_at_2"].value == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert math_r["bits_per_byte"].value == pytest.approx(1.0)
    ife = results["ifeval"].metrics
    assert ife["prompt_accuracy"].value == pytest.approx(3 / 5) and ife["prompt_accuracy"].n == 5
    assert 3 / 5 <= ife["instruction_accuracy"].value < 1
    assert ife["prompt_accuracy"].ci_low < 0.6 < ife["prompt_accuracy"].ci_high
    nd = results["needle"].metrics
    assert set(nd) == {"accuracy_len100", "accuracy_len400"}  # needle has no reference text: no bits-per-byte
    assert nd["accuracy_len100"].value == 1.0 and nd["accuracy_len400"].value == 0.0 and nd["accuracy_len400"].n == 4

    before = proportion([1, 0, 0, 1, 0, 0])  # the base model, on the same 6 items
    base = {stage.BASE_MODEL: {"procedural_math": stage.SetResult({"accuracy": before}, "x")}}
    effects = stage.step_effects({"sft": results}, base, seed=0)
    label, diff = effects[("sft", "procedural_math", "accuracy")]
    assert label == f"{stage.BASE_MODEL} (base)" and diff.value == pytest.approx(4 / 6) and diff.n == 6
    assert ("sft", "procedural_math", "bits_per_byte") not in effects  # a ratio of sums: no per-item scores
    text = stage.report("instruct/eval", {"sft": results}, base, skipped, effects)
    assert (f"| sft | procedural_math | accuracy | {math_r['accuracy'].format()} | +0.667 | "
            f"+0.667 [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}] (6) vs {label} |") in text
    assert f"- sft vs {label}, procedural_math accuracy: +0.667 [" in text
    assert "| sft | needle | accuracy_len400 | 0.000 [0.000, " in text
    metrics = stage.metrics_of({"sft": results})
    assert metrics["sft/ifeval/prompt_accuracy_n"] == 5.0
    assert metrics["sft/needle/accuracy_len100_ci_low"] == nd["accuracy_len100"].ci_low


@pytest.mark.parametrize("override,message", [
    ("eval.sampling.k=[1,8]", "eval.sampling.k contains 8"),
    ("+eval.sets.bogus=3", "eval.sets.bogus: unknown eval set"),
    ("eval.needle_lengths=[4096]", "eval.needle_lengths: 4096 tokens"),
])
def test_config_errors_name_the_key(override, message):
    base = ["preset=micro", "eval.sampling.samples=4", "+eval.sets.needle=2"]
    with pytest.raises(ConfigError, match=message):
        compose_config(base + [override])


def test_stage_on_a_tiny_random_model(tmp_path):
    """The real generation path end to end: results.json round-trips, the report shows intervals."""
    from tests.olmo3_core.export.test_export import _model_artifact

    upstream = _model_artifact(tmp_path / "long")
    upstream = InputArtifact("longmino", "longmino", "a" * 64, str(tmp_path / "long"), tmp_path / "long",
                             TrainStageConfig(model=ModelConfig()), upstream.manifest)
    out = tmp_path / "eval"
    out.mkdir()
    cfg = EvalConfig(sets={"procedural_math": 3, "ifeval": 2, "needle": 2}, fewshot=1, max_new_tokens=4,
                     needle_lengths=[110], sampling=EvalSamplingConfig(samples=2, k=[1, 2]))
    result = stage.run(StageContext("base/eval", "eval", EvalStageConfig(eval=cfg), {"longmino": upstream}, out,
                                    uri="file:///eval", fingerprint="b" * 64))
    saved = stage.read_results(out / "results.json")["longmino"]
    assert set(saved["procedural_math"].metrics) == {"accuracy", "pass_at_1", "pass_at_2", "bits_per_byte"}
    bpb = saved["ifeval"].metrics["bits_per_byte"]
    assert bpb.value > 0 and bpb.ci_low <= bpb.value <= bpb.ci_high and bpb.n == 2
    assert result.metrics["longmino/needle/accuracy_len110_n"] == 2.0
    assert "| longmino | procedural_math | bits_per_byte |" in result.report_markdown
    assert json.loads((out / "results.json").read_text())["results"]["longmino"]["needle"]["backend"] == "transformers"


def test_base_eval_compares_earlier_stages_when_asked():
    from olmo3_core.plan import build_plan

    plain = build_plan(compose_config(["preset=micro"]))
    assert plain.stages["base/eval"].parents == ("longmino",)
    cfg = compose_config(["preset=micro", "eval.compare_base_stages=[midtrain]"])
    assert build_plan(cfg).stages["base/eval"].parents == ("midtrain", "longmino")
    # forked from an existing long-context base: midtrain is not rebuilt just to be compared
    fork = {"stage": "longmino", "kind": "longmino", "fingerprint": "c" * 64, "uri": "/x", "line": "base",
            "config": to_dict(build_plan(cfg).stages["longmino"].config)}
    forked = build_plan(cfg, fork_from=fork)
    assert forked.stages["base/eval"].parents == ("longmino",) and "midtrain" not in forked.stages
    with pytest.raises(ConfigError, match="eval.compare_base_stages: 'longmino'"):
        compose_config(["preset=micro", "eval.compare_base_stages=[longmino]"])


def test_sampling_is_seeded_and_leaves_the_global_generator_alone(tmp_path):
    from olmo3_core.evaluation.generate import Generator, Sampling
    from tests.olmo3_core.export.test_export import _model_artifact

    gen = Generator(_model_artifact(tmp_path / "m").path / "model", "transformers")
    prompts = ["What is 2 + 3?", "The answer is"]
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    first = gen.sample(prompts, 6, 4, Sampling(n=3, temperature=1.0, top_p=1.0, seed=11))
    assert torch.rand(1) == before  # the caller's random stream is as it was
    assert gen.sample(prompts, 6, 4, Sampling(n=3, temperature=1.0, top_p=1.0, seed=11)) == first
    assert len(first) == 2 and all(len(group) == 3 for group in first)
    other = gen.sample(prompts, 6, 4, Sampling(n=3, temperature=1.0, top_p=1.0, seed=12))
    assert other != first  # a random model at temperature 1 over 300 tokens: another seed, other samples
