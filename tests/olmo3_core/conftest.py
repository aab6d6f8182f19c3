"""A tiny random model with the flow's chat tokens, saved like a model artifact, for post-training and soup tests."""
from __future__ import annotations

import pytest

from tests.tiny_model import save_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-model")
    save_tiny_model(root, ["What is 2 + 3? The answer is 5. Tom has 7 apples and buys 4 more."],
                    max_position_embeddings=256, template="instruct")
    return root
