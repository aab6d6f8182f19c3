"""The published statistics against values computed by hand (and by exact binomials)."""
import dataclasses
import json
from math import comb

import numpy as np
import pytest

from olmo3_core.evaluation.stats import (Estimate, bits_per_byte, bootstrap_mean, bootstrap_ratio, paired_difference,
                                         pass_at_k, pass_at_k_estimate, proportion, wilson_interval)


@pytest.mark.parametrize("n,c,k,expected", [
    (5, 1, 1, 0.2),            # pass@1 = c / n
    (5, 1, 5, 1.0),            # all samples drawn: the correct one is among them
    (10, 2, 3, 1 - 56 / 120),  # 1 - C(8,3)/C(10,3)
    (4, 0, 2, 0.0),
    (20, 3, 1, 0.15),
])
def test_pass_at_k_known_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_exact_binomials_and_is_stable_at_large_n():
    for n, c, k in [(7, 3, 2), (30, 4, 10), (50, 1, 25)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), rel=1e-12)
    # C(2000, 1000) has ~600 digits: a float binomial ratio would overflow, the product does not
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5, abs=1e-12)
    assert 0.0 < pass_at_k(2000, 1, 1) < 1e-3


def test_pass_at_k_rejects_k_above_samples():
    with pytest.raises(ValueError, match="k=4, n=3"):
        pass_at_k(3, 1, 4)


def test_wilson_known_values():
    # hand computation with z = 1.96: 5/10 -> 0.5 +- 0.2634; 0/10 -> [0, 0.2775]
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == pytest.approx(1.0)
    # 81/263 (a textbook example): [0.2553, 0.3662]
    low, high = wilson_interval(81, 263)
    assert (low, high) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))


def test_proportion_and_format():
    est = proportion([True, False, True, True])
    assert est.value == 0.75 and est.n == 4 and est.method == "wilson"
    assert est.ci_low < 0.75 < est.ci_high
    assert est.format() == f"0.750 [{est.ci_low:.3f}, {est.ci_high:.3f}] (4)"
    assert set(est.metrics("m")) == {"m", "m_ci_low", "m_ci_high", "m_n"}
    with pytest.raises(ValueError, match="pass/fail"):
        proportion([0.5, 1.0])


def test_bootstrap_mean_and_ratio():
    constant = bootstrap_mean([0.4] * 30)
    assert (constant.value, constant.ci_low, constant.ci_high, constant.n) == (pytest.approx(0.4), pytest.approx(0.4),
                                                                               pytest.approx(0.4), 30)
    spread = bootstrap_mean([0.0, 1.0] * 50, seed=1)
    # the mean of 100 fair coin flips: the bootstrap interval is close to +-1.96 * 0.05
    assert spread.value == 0.5 and 0.38 < spread.ci_low < 0.42 and 0.58 < spread.ci_high < 0.62
    ratio = bootstrap_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert ratio.value == 2.0 and ratio.ci_low == pytest.approx(2.0) and ratio.ci_high == pytest.approx(2.0)
    est = pass_at_k_estimate([0, 5, 5, 1], n=5, k=1)
    assert isinstance(est, Estimate) and est.value == pytest.approx((0 + 1 + 1 + 0.2) / 4)


def test_paired_difference_resamples_items_for_both_models_at_once():
    rng = np.random.default_rng(0)
    hard = rng.random(200) < 0.5  # items either model finds hard: shared, so they cancel in a paired comparison
    before = proportion((~hard & (rng.random(200) < 0.6)).tolist())
    after_items = [b or (not h and rng.random() < 0.5) for b, h in zip(before.items, hard)]  # only ever gains
    after = proportion(after_items)
    diff = paired_difference(after, before, seed=0)
    assert diff.value == pytest.approx(after.value - before.value) and diff.n == 200 and diff.method == "paired_bootstrap"
    assert 0 < diff.ci_low < diff.value < diff.ci_high
    # far tighter than what the two separate intervals allow
    assert diff.ci_high - diff.ci_low < 0.5 * ((after.ci_high - after.ci_low) + (before.ci_high - before.ci_low))
    same = paired_difference(before, before)
    assert (same.value, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)


def test_paired_difference_needs_per_item_scores_on_the_same_items():
    a, b = proportion([1, 0, 1]), proportion([1, 0])
    assert paired_difference(a, b) is None
    bpb = bits_per_byte([1.0, 2.0, 3.0], ["ab", "cd", "ef"])
    assert bpb.items == () and paired_difference(bpb, bpb) is None
    assert Estimate(**json.loads(json.dumps(dataclasses.asdict(a)))) == a  # items survive results.json
