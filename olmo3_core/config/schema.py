"""Typed schema of the whole flow config, and of what each stage kind is given.

Hydra composes YAML from `conf/`; this schema then rejects unknown keys and wrong types (OmegaConf's
structured merge) and out-of-range values (the `gt`/`ge`/`choices` metadata, see
`olmo3_core.config.typed`), naming the offending key, before any compute starts. `compose_config`
returns a `FlowConfig`; the plan cuts it into one typed stage config per stage (bottom of this file),
which is exactly what that stage's fingerprint covers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from olmo3_core.config.typed import ge0, gt0, one_of
from olmo3_core.data.config import DataConfig
from olmo3_core.kinds import STAGE_KINDS


@dataclass
class ModelConfig:
    hidden_size: int = gt0(128)
    num_layers: int = gt0(4)
    num_heads: int = gt0(4)
    num_kv_heads: int = gt0(2)
    intermediate_size: int = gt0(384)
    vocab_size: int = gt0(2048)
    max_position_embeddings: int = gt0(1024)
    sliding_window: int = gt0(64)
    full_attention_every: int = gt0(4)  # every 4th layer full attention, the rest sliding window
    rope_theta: float = gt0(500000.0)
    rms_norm_eps: float = gt0(1e-6)
    init_std: float = gt0(0.02)


@dataclass
class TrainConfig:
    """One base-model training stage: pretrain, midtrain or longmino."""

    mix: str = "pretrain"
    seq_len: int = gt0(128)
    micro_batch_size: int = gt0(8)
    grad_accum_steps: int = gt0(1)
    max_steps: int = gt0(100)
    lr: float = gt0(1e-3)
    min_lr_ratio: float = ge0(0.1)
    warmup_steps: int = ge0(10)
    weight_decay: float = ge0(0.1)
    beta1: float = ge0(0.9)
    beta2: float = ge0(0.95)
    grad_clip: float = gt0(1.0)
    checkpoint_every: int = gt0(50)
    log_every: int = gt0(10)
    zero_stage: int = one_of(1, 0, 1, 2, 3)
    precision: str = one_of("fp32", "fp32", "bf16")
    yarn_factor: float = ge0(0.0)  # > 1: YaRN RoPE scaling on the full-attention layers only
    loss_ceiling: Optional[float] = None  # after warmup, a step loss above this fails the stage (None: no ceiling)
    seed: int = 0


@dataclass
class SFTConfig:
    mixture: Dict[str, int] = field(default_factory=lambda: {"math": 400})  # procedural set -> examples
    files: List[str] = field(default_factory=list)  # extra Dolci-format JSONL/Parquet, local or s3://
    max_steps: int = gt0(60)
    batch_size: int = gt0(8)
    lr: float = gt0(1e-3)
    warmup_ratio: float = ge0(0.05)  # of max_steps; the job turns it into a step count
    max_length: int = gt0(256)
    assistant_only_loss: bool = True
    packing: bool = False
    seed: int = 0


@dataclass
class DPOConfig:
    mixture: Dict[str, int] = field(default_factory=lambda: {"math": 200})
    files: List[str] = field(default_factory=list)
    max_steps: int = gt0(30)
    batch_size: int = gt0(8)
    lr: float = gt0(5e-5)
    beta: float = gt0(0.1)
    # sigmoid_norm: length-normalized DPO (log-probs averaged over tokens), as OLMo 3's DPO
    loss_type: str = one_of("sigmoid", "sigmoid", "sigmoid_norm", "ipo", "hinge", "robust")
    max_length: int = gt0(256)
    seed: int = 0


@dataclass
class RLVRConfig:
    mixture: Dict[str, int] = field(default_factory=lambda: {"math": 64})
    files: List[str] = field(default_factory=list)
    gsm8k_train: int = ge0(0)  # GSM8K train prompts to add when a local copy exists
    max_steps: int = gt0(10)
    batch_size: int = gt0(8)  # prompts x generations per step
    num_generations: int = gt0(4)
    max_completion_length: int = gt0(48)
    lr: float = gt0(1e-5)
    kl_beta: float = ge0(0.0)
    temperature: float = gt0(1.0)
    use_vllm: bool = False  # only honoured when vllm is installed and a GPU is present
    seed: int = 0


@dataclass
class BranchConfig:
    """A post-training line: which steps it runs, from which base, with which chat template."""

    template: str = one_of("instruct", "instruct", "think")
    steps: List[str] = field(default_factory=lambda: ["sft", "dpo", "rlvr"])
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rlvr: RLVRConfig = field(default_factory=RLVRConfig)


@dataclass
class PosttrainConfig:
    branches: List[str] = field(default_factory=lambda: ["instruct"])
    instruct: BranchConfig = field(default_factory=BranchConfig)
    think: BranchConfig = field(default_factory=lambda: BranchConfig(template="think"))
    rl_zero: BranchConfig = field(default_factory=lambda: BranchConfig(steps=["rlvr"]))


@dataclass
class EvalSamplingConfig:
    """Sampled generation for the unbiased pass@k on pass/fail sets (math, code)."""

    samples: int = ge0(0)  # completions per item; 0: greedy pass@1 only
    k: List[int] = field(default_factory=lambda: [1])  # each 1 <= k <= samples
    temperature: float = gt0(0.8)
    top_p: float = gt0(0.95)


@dataclass
class EvalConfig:
    sets: Dict[str, int] = field(default_factory=lambda: {"procedural_math": 100})  # eval set -> size (items)
    seed: int = 1234
    max_new_tokens: int = gt0(48)
    batch_size: int = gt0(16)
    backend: str = one_of("auto", "auto", "transformers", "vllm")
    fewshot: int = ge0(3)  # examples shown to base models, which have no chat template yet
    sampling: EvalSamplingConfig = field(default_factory=EvalSamplingConfig)
    needle_lengths: List[int] = field(default_factory=lambda: [256])  # prompt lengths (model tokens) of the needle set
    bootstrap_seed: int = 0  # resampling seed of the bootstrap intervals
    # earlier base-training stages the base eval also evaluates, beside the final base (e.g. [midtrain]:
    # the needle set then shows what the long-context stage added)
    compare_base_stages: List[str] = field(default_factory=list)
    # eval sets also scored through EleutherAI's lm-evaluation-harness (the `lmeval` extra), on the same
    # items and prompts; reported as `lm_eval/<set>` beside the stage's own numbers
    lm_eval_sets: List[str] = field(default_factory=list)


@dataclass
class StorageConfig:
    root: Optional[str] = None
    storage_options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class TrackingConfig:
    uri: Optional[str] = None
    experiment: str = "olmo3-flow"
    artifact_location: Optional[str] = None  # run artifacts of a new experiment; null: <home>/mlartifacts (or the server's)
    registered_model_prefix: str = "olmo3"


@dataclass
class LaunchConfig:
    nprocs: int = gt0(1)
    launcher: str = one_of("torchrun", "torchrun", "deepspeed")
    hostfile: Optional[str] = None
    timeout_s: int = gt0(7200)
    check_memory: bool = True  # refuse, before compute, a model whose training would not fit in this machine's memory


@dataclass
class OrchestrationConfig:
    max_parallel_stages: int = gt0(1)
    retries: int = ge0(1)
    # how a cached artifact is checked before reuse: fast (sizes, and sha256 of files changed since they
    # were last hashed) | full (re-read and hash every file)
    verify: str = one_of("fast", "fast", "full")


@dataclass
class FlowConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    midtrain: TrainConfig = field(default_factory=TrainConfig)
    longmino: TrainConfig = field(default_factory=TrainConfig)
    posttrain: PosttrainConfig = field(default_factory=PosttrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    stages: List[str] = field(default_factory=lambda: list(STAGE_KINDS))
    fork_from: Optional[str] = None  # URI of an existing artifact in storage.root to continue from


# What each stage kind is given: a slice of the flow config. Its fields (less the execution keys,
# see `olmo3_core.plan.EXECUTION_KEYS`) are the stage's identity, together with its upstream
# fingerprints and code.


@dataclass
class TrainStageConfig:
    """pretrain, midtrain, longmino."""

    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    world_size: int = gt0(1)  # processes that share the global batch: it changes the result


@dataclass
class PosttrainStageConfig:
    """sft, dpo, rlvr: the line's chat template and the step's config, in the one field named by the
    stage's kind (the others stay None)."""

    template: str = "instruct"
    sft: Optional[SFTConfig] = None
    dpo: Optional[DPOConfig] = None
    rlvr: Optional[RLVRConfig] = None

    @property
    def step(self) -> Any:
        (step,) = [s for s in (self.sft, self.dpo, self.rlvr) if s is not None]
        return step


@dataclass
class EvalStageConfig:
    eval: EvalConfig = field(default_factory=EvalConfig)
    template: Optional[str] = None  # None: a base model, evaluated few-shot


@dataclass
class ExportStageConfig:
    line: str = "base"
    template: Optional[str] = None
    registered_model: str = "olmo3-base"
