"""Will base training fit on this machine? An estimate made before compute, so a 7B config on a laptop
is refused with numbers instead of being allocated until the machine swaps (and then retried).

Per parameter: fp32 weights (4 bytes), gradients (4) and AdamW's two moments (8), as the training loop
keeps them (bf16 autocast leaves master weights and optimizer state in fp32). ZeRO stage 1/2/3 shards
the optimizer state / + gradients / + weights across the processes of one machine, which share its
memory, so on CPU the machine total is what counts. Activations: one micro-batch through every layer,
at a generous 34 bytes per hidden unit per token (attention scores with sliding windows excluded).
"""
from __future__ import annotations

from dataclasses import dataclass

from olmo3_core.config.schema import ModelConfig, TrainConfig

BYTES_PER_PARAM = 4 + 4 + 8
ACTIVATION_BYTES = 34


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    bytes: int

    def describe(self) -> str:
        count = f"{self.parameters / 1e9:.2f}B" if self.parameters >= 1e9 else f"{self.parameters / 1e6:.1f}M"
        return (f"~{self.bytes / 2**30:.1f} GiB ({count} parameters x {BYTES_PER_PARAM} bytes for fp32 weights, "
                f"gradients and AdamW moments, plus activations)")


def training_memory(model: ModelConfig, train: TrainConfig, parameters: int) -> MemoryEstimate:
    activations = train.micro_batch_size * train.seq_len * model.hidden_size * model.num_layers * ACTIVATION_BYTES
    return MemoryEstimate(parameters, parameters * BYTES_PER_PARAM + activations)


def available_bytes() -> tuple[int, str]:
    """Memory the training processes can use on this machine, and what it is (GPU or RAM)."""
    import psutil
    import torch

    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free * torch.cuda.device_count(), f"{torch.cuda.device_count()} GPU(s)"
    return psutil.virtual_memory().available, "available RAM"
