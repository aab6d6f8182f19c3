import pytest

from olmo3_core.config import ConfigError, compose_config


def test_presets_compose_to_consistent_sizes():
    micro = compose_config(["preset=micro"])
    assert micro["model"]["hidden_size"] == 64
    assert micro["model"]["vocab_size"] == micro["data"]["tokenizer"]["vocab_size"]
    tiny = compose_config([])
    assert tiny["model"]["hidden_size"] > micro["model"]["hidden_size"]
    assert tiny["pretrain"]["max_steps"] > micro["pretrain"]["max_steps"]


@pytest.mark.parametrize(
    "override, key",
    [
        ("+pretrain.bogus=1", "pretrain.bogus"),
        ("pretrain.lr=fast", "pretrain.lr"),
        ("pretrain.lr=-0.001", "pretrain.lr"),
        ("posttrain.instruct.dpo.beta=0", "posttrain.instruct.dpo.beta"),
        ("pretrain.zero_stage=7", "pretrain.zero_stage"),
        ("stages=[data,pretrian]", "pretrian"),
        ("posttrain.branches=[instruct,zero]", "posttrain.branches"),
        ("longmino.seq_len=100000", "longmino.seq_len"),
        ("pretrain.bogus=1", "pretrain.bogus"),
    ],
)
def test_bad_overrides_fail_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        compose_config(["preset=micro", override])


def test_branch_steps_must_be_ordered():
    with pytest.raises(ConfigError, match="posttrain.think.steps"):
        compose_config(["posttrain.think.steps=[dpo,sft]"])


def test_every_schema_key_is_overridable_without_plus():
    cfg = compose_config(["preset=micro", "pretrain.seed=11", "posttrain.think.dpo.loss_type=sigmoid_norm",
                          "+storage.storage_options.client_kwargs.endpoint_url=http://127.0.0.1:9000"])
    assert cfg["pretrain"]["seed"] == 11 and cfg["posttrain"]["think"]["dpo"]["loss_type"] == "sigmoid_norm"
    assert cfg["storage"]["storage_options"] == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}
