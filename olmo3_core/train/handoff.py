"""What one base-training stage hands the next: its final AdamW state in a portable form, and its LRs.

OLMo 3's midtraining and long-context extension load the previous stage's optimizer state
(`load_optim_state=True` in allenai/OLMo-core src/scripts/official/OLMo3/OLMo-3-1025-7B-midtrain.py and
-long-context.py). A DeepSpeed checkpoint is tied to its ZeRO stage and world size, so the artifact keeps
the state per parameter name instead (`optimizer/state.pt`, a `torch.save`): the next stage loads it under
any ZeRO stage and process count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict

import torch

from olmo3_core.stages.jobs import OPTIMIZER_STATE as FILE
FORMAT = 1
MOMENTS = ("exp_avg", "exp_avg_sq")


@dataclass
class OptimizerHandoff:
    peak_lr: float  # the stage's peak LR
    final_lr: float  # the LR after its last step (what its next step would have used)
    handoff_lr: float  # what a continuing stage peaks at (`schedule.handoff_lr`)
    step: int  # AdamW's step count (for its bias correction), summed over the chain of continued stages
    exp_avg: Dict[str, torch.Tensor] = field(default_factory=dict)  # parameter name -> first moment (fp32)
    exp_avg_sq: Dict[str, torch.Tensor] = field(default_factory=dict)  # parameter name -> second moment (fp32)

    def save(self, artifact_dir: Path) -> Path:
        path = Path(artifact_dir) / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, **self.__dict__}, path)
        return path

    @classmethod
    def load(cls, artifact_dir: Path) -> "OptimizerHandoff":
        path = Path(artifact_dir) / FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: the upstream artifact has no optimizer state to continue from "
                                    f"(built before train.continue_from_upstream existed?); rebuild it or set "
                                    f"continue_from_upstream=false")
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data.pop("format", None) != FORMAT:
            raise ValueError(f"{path}: unknown optimizer state format")
        return cls(**data)


def _named(engine) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in engine.module.named_parameters() if p.requires_grad]


def _torch_optimizer(engine) -> torch.optim.Optimizer:
    """The AdamW doing the update: DeepSpeed's ZeRO optimizers wrap it as `.optimizer`."""
    opt = engine.optimizer
    return opt if isinstance(opt, torch.optim.Optimizer) else opt.optimizer


def _zero_partitioned(p: torch.nn.Parameter) -> bool:
    return hasattr(p, "_hp_mapping") or hasattr(p, "ds_id")


def _link_zero_state(engine, create: bool) -> None:
    """Point every parameter's ZeRO-1/2 mapping at its AdamW state (`create`: make zero state first, as AdamW
    would on its first step, so a state can be loaded before training). DeepSpeed links the state lazily after
    the first optimizer step, and then only for the param groups stepped so far (one, with several groups),
    so `safe_get_full_optimizer_state` finds no moments for the others; we link all groups ourselves."""
    from deepspeed.utils.mixed_precision_linkage import lazy_init_hp_params_optimizer_state

    zero = engine.optimizer
    if not hasattr(zero, "single_partition_of_fp32_groups"):  # ZeRO-0 (plain AdamW) or ZeRO-3 (own mapping)
        return
    for i, flat in enumerate(zero.single_partition_of_fp32_groups):
        state = zero.optimizer.state[flat]
        if create and not state:
            state.update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(flat), exp_avg_sq=torch.zeros_like(flat))
        lazy_init_hp_params_optimizer_state(zero.bit16_groups[i], flat, zero.optimizer.state)


def export_state(engine, peak_lr: float, final_lr: float, handoff_lr: float) -> OptimizerHandoff:
    """The engine's AdamW state by parameter name (a collective under ZeRO: call on every rank)."""
    from deepspeed.utils import safe_get_full_optimizer_state

    _link_zero_state(engine, create=False)
    opt = _torch_optimizer(engine)
    steps = [int(s["step"]) for s in opt.state.values() if "step" in s]
    out = OptimizerHandoff(peak_lr, final_lr, handoff_lr, max(steps, default=0))
    for name, p in _named(engine):
        for key in MOMENTS:
            value = safe_get_full_optimizer_state(p, key) if _zero_partitioned(p) else opt.state[p][key]
            getattr(out, key)[name] = value.detach().float().cpu().clone()
    return out


def import_state(engine, state: OptimizerHandoff) -> None:
    """Put `state`'s moments and step count into the engine's AdamW (every rank: ZeRO keeps a partition each)."""
    from deepspeed.utils import safe_set_full_optimizer_state

    _link_zero_state(engine, create=True)
    opt = _torch_optimizer(engine)
    named = _named(engine)
    missing = sorted({n for n, _ in named} - set(state.exp_avg))
    if missing:
        raise ValueError(f"upstream optimizer state lacks parameters {missing[:5]}... (a different model config?)")
    for name, p in named:
        for key in MOMENTS:
            value = getattr(state, key)[name]
            if value.shape != p.shape and not _zero_partitioned(p):
                raise ValueError(f"upstream optimizer state {key}[{name}] has shape {tuple(value.shape)}, the model {tuple(p.shape)}")
            if _zero_partitioned(p):
                safe_set_full_optimizer_state(p, value.to(p.device), key)
            else:  # torch AdamW creates its state lazily on the first step; created here, it is used as is
                opt.state[p].setdefault("step", torch.tensor(0.0))
                opt.state[p][key] = value.to(p.device, torch.float32).clone()
    for s in opt.state.values():  # bias correction continues from the upstream's step count
        if "step" in s:
            s["step"] = torch.tensor(float(state.step), dtype=s["step"].dtype, device=s["step"].device)
