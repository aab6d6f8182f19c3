"""The stage kinds of the flow, in pipeline order: the one list everything else derives from.

`olmo3_core.plan.KINDS` maps each name to its entry point and stage-config class.
"""
from __future__ import annotations

BASE_TRAINING = ("pretrain", "midtrain", "longmino")  # each continues from the one before
# The weight average of several midtrain runs (`midtrain.ingredients`), which longmino then continues from.
SOUP = "soup"
POSTTRAIN_STEPS = ("sft", "dpo", "rlvr")  # a post-training line runs an ordered subset
# stages whose artifact holds a model, in pipeline order
MODEL_KINDS = (*BASE_TRAINING[:2], SOUP, *BASE_TRAINING[2:], *POSTTRAIN_STEPS)
PAIRS = "dpo_pairs"  # delta-learning preference pairs, generated before the DPO step that reads them
# the suffix-array index of the data artifact's token shards, for `olmo3-flow trace-output`; nobody's parent
TRACE_INDEX = "trace_index"
STAGE_KINDS = ("data", TRACE_INDEX, *MODEL_KINDS[:4], POSTTRAIN_STEPS[0], PAIRS, *POSTTRAIN_STEPS[1:], "eval", "export")
BRANCHES = ("instruct", "think", "rl_zero")


def init_from(kind: str) -> str | None:
    """The base-training stage `kind` continues from (None: random init)."""
    i = BASE_TRAINING.index(kind)
    return BASE_TRAINING[i - 1] if i else None
