"""The statistics every eval figure is published with: a value, its 95% interval, and its item count.

- Proportions of independent items (accuracy, prompt-level IFEval, needle hits): Wilson score
  interval, which unlike the normal approximation stays inside [0, 1] and is sane at 0/n and n/n.
- Means and ratios of sums (pass@k over items, bits-per-byte, instruction-level accuracy whose
  instructions cluster within prompts): percentile bootstrap over *items*, so correlated parts of an
  item are resampled together.
- Differences between two models on the same items (what a post-training step changed): the mean
  per-item difference with a *paired* bootstrap interval.
- pass@k: the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k), computed as a
  product so it neither overflows nor loses precision for large n.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the standard normal quantile for a two-sided 95% interval
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A published figure: point value, 95% interval and the number of items it rests on."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    method: str  # "wilson" | "bootstrap" | "paired_bootstrap" (how the interval was made)
    # The per-item scores whose mean `value` is (empty for a ratio of sums, e.g. bits-per-byte): what a paired
    # comparison of two models on the same items resamples (`paired_difference`).
    items: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "items", tuple(self.items))  # a list when read back from JSON

    def format(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} [{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}] ({self.n})"

    def metrics(self, key: str) -> dict[str, float]:
        """MLflow metrics: `key`, `key_ci_low`, `key_ci_high`, `key_n`."""
        return {key: self.value, f"{key}_ci_low": self.ci_low, f"{key}_ci_high": self.ci_high, f"{key}_n": float(self.n)}


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        raise ValueError(f"a proportion needs at least one item, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # clamp only float noise: the Wilson interval is inside [0, 1] mathematically
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(outcomes: Sequence[bool | int | float]) -> Estimate:
    """Accuracy over independent pass/fail items, with its Wilson interval."""
    values = [float(o) for o in outcomes]
    if any(v not in (0.0, 1.0) for v in values):
        raise ValueError("proportion() takes pass/fail outcomes (0 or 1); use bootstrap_mean for partial scores")
    successes = int(sum(values))
    low, high = wilson_interval(successes, len(values))
    return Estimate(successes / len(values), low, high, len(values), "wilson", tuple(values))


def _percentile_interval(stats: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(stats, [0.025, 0.975])
    return float(low), float(high)


def bootstrap_ratio(numerators: Sequence[float], denominators: Sequence[float], seed: int = 0,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> Estimate:
    """sum(num) / sum(den) over items, with a bootstrap interval resampling whole items."""
    num, den = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    if num.shape != den.shape or num.ndim != 1 or len(num) == 0:
        raise ValueError(f"need equal-length, non-empty numerators and denominators, got {num.shape} and {den.shape}")
    if den.sum() <= 0:
        raise ValueError("the denominators sum to zero: nothing to divide by")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(num), size=(resamples, len(num)))
    sums_den = den[picks].sum(axis=1)
    ratios = num[picks].sum(axis=1) / np.where(sums_den > 0, sums_den, np.nan)
    low, high = _percentile_interval(ratios[~np.isnan(ratios)])
    return Estimate(float(num.sum() / den.sum()), low, high, len(num), "bootstrap")


def bootstrap_mean(values: Sequence[float], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> Estimate:
    """Mean over items with a percentile-bootstrap interval."""
    est = bootstrap_ratio(values, [1.0] * len(values), seed=seed, resamples=resamples)
    return dataclasses.replace(est, items=tuple(float(v) for v in values))


def paired_difference(after: Estimate, before: Estimate, seed: int = 0,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> Estimate | None:
    """`after - before` for two models scored on the same items, in the same order: the mean per-item
    difference with a paired percentile-bootstrap interval (an item is resampled for both models at once,
    so how hard the items are cancels out, and the interval is much tighter than two separate intervals
    suggest). None when either figure has no per-item scores or they rest on different item counts."""
    if not after.items or len(after.items) != len(before.items):
        return None
    diff = np.asarray(after.items, dtype=np.float64) - np.asarray(before.items, dtype=np.float64)
    est = bootstrap_ratio(diff, np.ones_like(diff), seed=seed, resamples=resamples)
    return dataclasses.replace(est, method="paired_bootstrap")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i), a product of terms in (0, 1], so the value
    is exact to float precision where the binomials themselves would overflow.
    """
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n samples, got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"correct samples must be in [0, {n}], got {c}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def pass_at_k_estimate(correct: Sequence[int], n: int, k: int, seed: int = 0) -> Estimate:
    """pass@k averaged over items (each with `n` samples, `correct[i]` of them right), bootstrap interval."""
    return bootstrap_mean([pass_at_k(n, c, k) for c in correct], seed=seed)


def bits_per_byte(nll_nats: Sequence[float], texts: Sequence[str], seed: int = 0) -> Estimate:
    """Summed NLL of the texts, in bits, over their UTF-8 bytes; the interval resamples whole texts.

    Bytes, not tokens, in the denominator: the figure then compares models with different tokenizers.
    """
    return bootstrap_ratio([n / math.log(2) for n in nll_nats], [len(t.encode("utf-8")) for t in texts], seed=seed)
