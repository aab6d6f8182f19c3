"""Typed schema of the whole flow config, and of what each stage kind is given.

Hydra composes YAML from `conf/`; this schema then rejects unknown keys and wrong types (OmegaConf's
structured merge) and out-of-range values (the `gt`/`ge`/`choices` metadata, see
`olmo3_core.config.typed`), naming the offending key, before any compute starts. `compose_config`
returns a `FlowConfig`; the plan cuts it into one typed stage config per stage (bottom of this file),
which is exactly what that stage's fingerprint covers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from olmo3_core.config.typed import ConfigError, ge0, gt0, one_of
from olmo3_core.data.config import DataConfig, DecontamConfig
from olmo3_core.kinds import BASE_TRAINING, STAGE_KINDS


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
    """One base-model training stage: pretrain, midtrain or longmino.

    The recipe follows OLMo-core's released OLMo 3 scripts (allenai/OLMo-core,
    src/scripts/official/OLMo3/OLMo-3-1025-7B-{pretrain-1,pretrain-2,midtrain,long-context}.py):
    pretrain: warmup + cosine (`CosWithWarmup`), stopped before it anneals (`hard_stop`);
    midtrain: `LinearWithWarmup(warmup=0, alpha_f=0.0)` from pretrain's final LR, `load_optim_state=True`;
    long context: `LinearWithWarmup(warmup=200, alpha_f=0.0)` at the same LR, optimizer state loaded,
    intra-document masking (`generate_doc_lengths=True`); all three: AdamW betas (0.9, 0.95),
    weight decay 0.1 on everything but `embeddings.weight`, `z_loss_multiplier=1e-5`, `max_grad_norm=1.0`.
    """

    mix: str = "pretrain"
    seq_len: int = gt0(128)
    micro_batch_size: int = gt0(8)
    grad_accum_steps: int = gt0(1)
    # The schedule's horizon in optimizer steps: the cosine reaches min_lr_ratio, linear and wsd reach their end
    # here. The stage runs this many steps unless `anneal_stop_step` stops it earlier.
    max_steps: int = gt0(100)
    # Peak LR. With continue_from_upstream the peak is the upstream's hand-off LR instead (recorded as
    # `peak_lr` in the job outputs) and this value is not used.
    lr: float = gt0(1e-3)
    # cosine: warmup, then cosine from lr to lr * min_lr_ratio at max_steps.
    # linear: warmup, then linear from lr to 0 at max_steps (OLMo 3 midtrain / long context, alpha_f=0).
    # wsd: warmup, stable at lr, then linear to lr * min_lr_ratio over the last decay_fraction of the steps after warmup.
    # constant: warmup, then lr.
    schedule: str = one_of("cosine", "cosine", "linear", "wsd", "constant")
    min_lr_ratio: float = ge0(0.1)  # floor of cosine and wsd (OLMo-core's alpha_f); linear always ends at 0
    warmup_steps: int = ge0(10)  # linear warmup from lr / warmup_steps to the peak
    # cosine only: stop training after this many steps, before the cosine anneals (OLMo 3 pretraining's hard_stop
    # at step 597046 of a 5T-token cosine); the next stage continues from the LR reached here. None: run max_steps.
    anneal_stop_step: Optional[int] = None
    decay_fraction: float = gt0(0.2)  # wsd only: share of the post-warmup steps spent decaying
    # Start from the upstream stage's hand-off LR and its final AdamW state (moments and step count), as OLMo 3's
    # midtraining and long-context extension do (load_optim_state=True). Only for midtrain and longmino.
    continue_from_upstream: bool = False
    weight_decay: float = ge0(0.1)  # on every parameter but the token embeddings, as the OLMo 3 scripts
    beta1: float = ge0(0.9)
    beta2: float = ge0(0.95)
    grad_clip: float = gt0(1.0)
    z_loss: float = ge0(0.0)  # coefficient of mean(logsumexp(logits)^2), added to the loss; OLMo 3 uses 1e-5
    checkpoint_every: int = gt0(50)
    keep_every: int = ge0(0)  # > 0: a loadable HF checkpoint every this many steps stays in the artifact
    log_every: int = gt0(10)
    zero_stage: int = one_of(1, 0, 1, 2, 3)
    # auto: bf16 autocast (fp32 master weights) on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16),
    # fp32 elsewhere; the resolved precision is recorded in the job outputs.
    precision: str = one_of("auto", "auto", "fp32", "bf16")
    compile: bool = False  # torch.compile the model (in place; checkpoints keep their parameter names)
    # Attention stays within documents (EOS-separated) and positions restart at each document, as OLMo 3's
    # long-context stage (intra-document masking); off: windows attend across document boundaries.
    document_masking: bool = False
    yarn_factor: float = ge0(0.0)  # > 1: YaRN RoPE scaling on the full-attention layers only
    loss_ceiling: Optional[float] = None  # after warmup, a step loss above this fails the stage (None: no ceiling)
    seed: int = 0

    @property
    def steps(self) -> int:
        """Optimizer steps this stage runs."""
        return self.anneal_stop_step if self.anneal_stop_step is not None else self.max_steps

    def check(self, key: str, has_upstream: bool) -> None:
        """The rules between fields that a type cannot express; `key` is this config's place ("midtrain")."""
        if self.anneal_stop_step is not None:
            if self.schedule != "cosine":
                raise ConfigError(f"{key}.anneal_stop_step only applies to schedule=cosine, got schedule={self.schedule!r}")
            if not self.warmup_steps < self.anneal_stop_step <= self.max_steps:
                raise ConfigError(f"{key}.anneal_stop_step ({self.anneal_stop_step}) must be after {key}.warmup_steps "
                                  f"({self.warmup_steps}) and at most {key}.max_steps ({self.max_steps})")
        if self.warmup_steps >= self.max_steps and self.schedule != "constant":
            raise ConfigError(f"{key}.warmup_steps ({self.warmup_steps}) must be < {key}.max_steps ({self.max_steps})")
        if self.decay_fraction > 1:
            raise ConfigError(f"{key}.decay_fraction must be <= 1, got {self.decay_fraction}")
        if self.continue_from_upstream and not has_upstream:
            raise ConfigError(f"{key}.continue_from_upstream: {key} has no upstream training stage to continue from")


@dataclass
class SoupConfig:
    """How the soup stage averages midtrain's ingredients and compares them (only with >= 2 ingredients)."""

    # one weight per ingredient, in `midtrain.ingredients` order, normalized to sum to 1; empty: uniform (OLMo 3)
    weights: List[float] = field(default_factory=list)
    # held-out text the report scores each ingredient and the soup on: this eval set's items (prompt and
    # reference solution), which the data stage removes from the training mixes (`data.decontam.sets`)
    heldout_set: str = "procedural_math"
    heldout_items: int = gt0(100)
    heldout_seed: int = 4321  # not eval.seed: items the eval stage does not report on


@dataclass
class MidtrainConfig(TrainConfig):
    """midtrain: a base-training stage that may run as several souped ingredient runs.

    OLMo 3 midtrains more than once from the same pretrained model, each run with its own data-order
    seed, and averages the runs' weights ("model souping") before long-context extension. Each seed of
    `ingredients` is one midtrain run (the stage `midtrain/seed{S}`, its `seed` set to S); with two or
    more, a `soup` stage averages them and longmino continues from the soup. One ingredient is a single
    midtrain run (the stage `midtrain`), no soup.
    """

    ingredients: List[int] = field(default_factory=lambda: [0])  # data-order seeds, one run each
    soup: SoupConfig = field(default_factory=SoupConfig)

    def check(self, key: str, has_upstream: bool) -> None:
        super().check(key, has_upstream)
        if not self.ingredients:
            raise ConfigError(f"{key}.ingredients must name at least one data-order seed")
        if len(set(self.ingredients)) != len(self.ingredients):
            raise ConfigError(f"{key}.ingredients has a seed twice ({self.ingredients}): two runs would be the same run")
        if self.seed != 0:  # the seeds are the ingredients'; a second place to set one would be ignored
            raise ConfigError(f"{key}.seed is not used: {key}'s data-order seeds are {key}.ingredients "
                              f"(set {key}.ingredients=[{self.seed}])")
        if self.soup.weights and len(self.soup.weights) != len(self.ingredients):
            raise ConfigError(f"{key}.soup.weights has {len(self.soup.weights)} weights for "
                              f"{len(self.ingredients)} {key}.ingredients")
        if any(w < 0 for w in self.soup.weights) or (self.soup.weights and sum(self.soup.weights) <= 0):
            raise ConfigError(f"{key}.soup.weights must be >= 0 with a positive sum, got {self.soup.weights}")

    def ingredient(self, seed: int) -> TrainConfig:
        """The training config of the ingredient run with data-order seed `seed`: a plain midtrain config,
        so one ingredient's stage is identical (same fingerprint) whether or not others are souped with it."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{**own, "seed": seed})


@dataclass
class SFTConfig:
    mixture: Dict[str, int] = field(default_factory=lambda: {"math": 400})  # procedural set -> examples
    files: List[str] = field(default_factory=list)  # extra Dolci-format JSONL/Parquet, local or s3://
    max_steps: int = gt0(60)
    batch_size: int = gt0(8)  # sequences per optimizer step, over all processes
    lr: float = gt0(1e-3)
    warmup_ratio: float = ge0(0.05)  # of max_steps; the job turns it into a step count
    max_length: int = gt0(256)
    assistant_only_loss: bool = True
    packing: bool = False
    zero_stage: int = one_of(2, 0, 1, 2, 3)  # DeepSpeed ZeRO stage of the job (accelerate's DeepSpeed plugin under TRL)
    seed: int = 0


@dataclass
class DeltaPairsConfig:
    """Delta-learning preference pairs (OLMo 3 DPO: chosen from a stronger model, rejected from a weaker
    one, on the same prompts; what is learned is the quality delta). Prompts are procedural math
    problems, so a verifier can tell when the stronger model failed."""

    prompts: int = gt0(200)  # math problems (train split, drawn with `seed`)
    # the weaker model: a base-training stage (the stronger one is the model the DPO step continues from)
    rejected_from: str = one_of("longmino", *BASE_TRAINING)
    reference_when_chosen_fails: bool = True  # chosen = the worked reference solution where the verifier fails the model
    max_new_tokens: int = gt0(64)
    batch_size: int = gt0(16)  # prompts per generation batch
    seed: int = 1  # not the SFT seed: pairs on prompts SFT did not see


@dataclass
class DPOConfig:
    mixture: Dict[str, int] = field(default_factory=lambda: {"math": 200})
    files: List[str] = field(default_factory=list)
    max_steps: int = gt0(30)
    batch_size: int = gt0(8)  # preference pairs per optimizer step, over all processes
    lr: float = gt0(5e-5)
    beta: float = gt0(0.1)  # sigmoid_norm compares per-token averages, so it needs a larger beta (OLMo 3: 5)
    # sigmoid_norm: length-normalized DPO (log-probs averaged over tokens), the instruct line's default
    loss_type: str = one_of("sigmoid", "sigmoid", "sigmoid_norm", "ipo", "hinge", "robust")
    # where pairs come from besides `mixture` (slip pairs) and `files`: none | delta (a dpo_pairs stage)
    pairs: str = one_of("none", "none", "delta")
    delta: DeltaPairsConfig = field(default_factory=DeltaPairsConfig)
    max_length: int = gt0(256)
    zero_stage: int = one_of(2, 0, 1, 2, 3)  # DeepSpeed ZeRO stage of the job (accelerate's DeepSpeed plugin under TRL)
    seed: int = 0


@dataclass
class RLVRConfig:
    mixture: Dict[str, int] = field(default_factory=lambda: {"math": 64})
    files: List[str] = field(default_factory=list)
    gsm8k_train: int = ge0(0)  # GSM8K train prompts to add when a local copy exists
    max_steps: int = gt0(10)
    batch_size: int = gt0(8)  # prompts x generations per step, over all processes
    num_generations: int = gt0(4)
    max_completion_length: int = gt0(48)
    lr: float = gt0(1e-5)
    # OlmoRL (open-instruct open_instruct/grpo_fast.py, scripts/train/olmo3/*rl*.sh); the TRL option each
    # maps to is in olmo3_core/posttrain/olmorl.py
    lr_scheduler: str = one_of("constant", "constant", "cosine", "linear")  # grpo_fast: lr_scheduler_type constant
    advantage_normalization: str = one_of("centered", "centered", "group_std")  # centered: r - group mean, no std division
    clip_epsilon_low: float = gt0(0.2)  # ratio clipped below at 1 - this (grpo_fast clip_lower)
    clip_epsilon_high: float = gt0(0.272)  # ratio clipped above at 1 + this ("clip higher", grpo_fast clip_higher)
    loss_aggregation: str = one_of("token", "token", "sequence")  # token: mean over all tokens of the batch
    kl_beta: float = ge0(0.0)  # OlmoRL trains without a KL term (and so without a reference model)
    truncated_importance_sampling_cap: float = ge0(2.0)  # cap of the generator/learner per-token ratio (vLLM only); 0: off
    filter_zero_variance: bool = True  # drop groups whose rewards are all equal and refill with new prompts
    max_sampling_tries: int = gt0(8)  # generation rounds per step before active sampling gives up (logged)
    temperature: float = gt0(1.0)
    use_vllm: bool = False  # only honoured when vllm is installed and a GPU is present
    zero_stage: int = one_of(2, 0, 1, 2, 3)  # DeepSpeed ZeRO stage of the job (accelerate's DeepSpeed plugin under TRL)
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
    # OLMo 3 Instruct's DPO is length-normalized (open-instruct dpo_tune_cache.py --dpo_loss_type dpo_norm
    # --dpo_beta 5, scripts/delta_learning/olmo3_runs/final_final_instruct/.../base_lr1e-6_125k.sh); TRL's
    # sigmoid_norm is the same loss (beta times the difference of per-token average log-ratios)
    instruct: BranchConfig = field(default_factory=lambda: BranchConfig(dpo=DPOConfig(loss_type="sigmoid_norm", beta=5.0)))
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
class CheckpointCurveConfig:
    """The base eval's curves over training: every kept checkpoint (`train.keep_every`) of each base-training
    stage behind its models, plus each stage's final model, scored on one pass/fail set."""

    enabled: bool = True
    metric_set: str = "procedural_math"  # a math or code eval set: greedy accuracy and bits-per-byte per checkpoint
    items: Optional[int] = None  # items of metric_set per point; null: eval.sets.<metric_set> (final models' numbers reused)


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
    checkpoint_curve: CheckpointCurveConfig = field(default_factory=CheckpointCurveConfig)


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
    nprocs: int = gt0(1)  # processes per node
    launcher: str = one_of("torchrun", "torchrun", "deepspeed")
    hostfile: Optional[str] = None
    # torchrun across nodes: run the same command on every node with its own node_rank; the nodes meet
    # through torchrun's c10d rendezvous at master_addr:master_port (served by node 0's launcher)
    nnodes: int = gt0(1)
    node_rank: int = ge0(0)
    master_addr: Optional[str] = None  # None: 127.0.0.1 on one node; required with nnodes > 1
    master_port: Optional[int] = None  # None: a free local port on one node; required with nnodes > 1
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
    midtrain: MidtrainConfig = field(default_factory=MidtrainConfig)
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

    @property
    def trained_context(self) -> int:
        """The sequence length of this stage's model: a continuing stage's YaRN original context."""
        return self.train.seq_len


@dataclass
class SoupStageConfig:
    """soup: the weight average of the midtrain ingredient runs (its parents, in `ingredients` order)."""

    ingredients: List[int] = field(default_factory=list)  # the parents' data-order seeds, in parent order
    soup: SoupConfig = field(default_factory=SoupConfig)
    seq_len: int = gt0(128)  # what the ingredients trained at: a continuing stage's YaRN original context

    @property
    def trained_context(self) -> int:
        return self.seq_len


@dataclass
class PosttrainStageConfig:
    """sft, dpo, rlvr: the line's chat template and the step's config, in the one field named by the
    stage's kind (the others stay None)."""

    template: str = "instruct"
    world_size: int = gt0(1)  # processes sharing each step's global batch (`batch_size` is global): it changes the result
    # the data stage's decontamination (`data.decontam`, resolved), applied to this step's rows; None only
    # for configs built outside the plan (no decontamination, and the job's summary says so)
    decontam: Optional[DecontamConfig] = None
    sft: Optional[SFTConfig] = None
    dpo: Optional[DPOConfig] = None
    rlvr: Optional[RLVRConfig] = None

    @property
    def step(self) -> Any:
        (step,) = [s for s in (self.sft, self.dpo, self.rlvr) if s is not None]
        return step


@dataclass
class PairsStageConfig:
    """dpo_pairs: the line's chat template and how the pairs are made."""

    template: str = "instruct"
    pairs: DeltaPairsConfig = field(default_factory=DeltaPairsConfig)
    verifier: str = "math"


@dataclass
class TraceIndexStageConfig:
    """trace_index: the suffix array over every token shard of its parent data artifact
    (`olmo3_core.evaluation.trace`). Not part of the flow config: every flow indexes the same way."""

    # suffixes are sorted by their first `max_span` tokens: the longest span `trace-output` reports
    # (a longer verbatim run is found as its first `max_span` tokens)
    max_span: int = gt0(1024)


@dataclass
class EvalStageConfig:
    eval: EvalConfig = field(default_factory=EvalConfig)
    template: Optional[str] = None  # None: a base model, evaluated few-shot


@dataclass
class ExportStageConfig:
    line: str = "base"
    template: Optional[str] = None
    registered_model: str = "olmo3-base"
