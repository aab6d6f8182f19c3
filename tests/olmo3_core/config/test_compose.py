import pytest

from olmo3_core.config.compose import compose_config
from olmo3_core.config.typed import ConfigError


def test_presets_compose_to_consistent_sizes():
    micro = compose_config(["preset=micro"])
    assert micro.model.hidden_size == 64
    assert micro.model.vocab_size == micro.data.tokenizer.vocab_size
    tiny = compose_config([])
    assert tiny.model.hidden_size > micro.model.hidden_size
    assert tiny.pretrain.max_steps > micro.pretrain.max_steps


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
        # the data group is typed and checked like every other group
        ("data.dedup.fuzzy=maybe", "data.dedup.fuzzy"),
        ("+data.dedup.shingle=3", "data.dedup.shingle"),
        ("data.workers=0", "data.workers"),
        ("data.sources.prose.kind=web", "data.sources.prose.kind"),
        ("data.mixes.pretrain.proportions.code=-1", "data.mixes.pretrain.proportions.code"),
        ("+data.sources.web={kind: files}", "data.sources.web.paths"),
        ("+data.sources.web={kind: files, paths: [a.jsonl], processors: html}", "data.sources.web.processors"),
        ("+data.sources.web={kind: files, paths: [a.jsonl], processors: [{name: gopher}]}", "data.sources.web.processors"),
        ("data.dedup.bands=64", "data.dedup.bands"),
        ("data.tokenizer.vocab_size=100", "data.tokenizer.vocab_size"),
        ("posttrain.instruct.sft.warmup_ratio=1.5", "posttrain.instruct.sft.warmup_ratio"),
        # souped midtraining: seeds are midtrain's alone, each at most once, and the weights match them
        ("midtrain.ingredients=[]", "midtrain.ingredients"),
        ("midtrain.ingredients=[3,3]", "midtrain.ingredients"),
        ("+pretrain.ingredients=[0,1]", "pretrain.ingredients"),
        ("+longmino.ingredients=[0,1]", "longmino.ingredients"),
        ("midtrain.seed=5", "midtrain.ingredients"),
        ("midtrain.soup.weights=[1,2,3]", "midtrain.soup.weights"),
        ("midtrain.soup.weights=[-1,2]", "midtrain.soup.weights"),
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
    assert cfg.pretrain.seed == 11 and cfg.posttrain.think.dpo.loss_type == "sigmoid_norm"
    assert cfg.storage.storage_options == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}


def test_a_new_data_source_is_added_typed():
    from olmo3_core.data.config import SourceConfig

    cfg = compose_config(["preset=micro", "+data.sources.web={kind: files, paths: [/data/web/*.jsonl.zst]}",
                          "+data.mixes.pretrain.proportions.web=0.5"])
    assert cfg.data.sources["web"] == SourceConfig(kind="files", paths=["/data/web/*.jsonl.zst"])
    assert cfg.data.mixes["pretrain"].proportions["web"] == 0.5


def test_flows_composed_in_threads_do_not_race_on_hydra():
    """Prefect runs concurrent flows in threads; Hydra's global state must not make one of them fail."""
    import threading

    errors = []

    def compose(seed):
        try:
            for _ in range(3):
                assert compose_config(["preset=micro", f"pretrain.seed={seed}"]).pretrain.seed == seed
        except Exception as exc:  # noqa: BLE001 - any failure in a thread is the finding
            errors.append(exc)

    threads = [threading.Thread(target=compose, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
