"""Where a training job runs and in which precision: pure functions of the environment, so they are testable
without the hardware they describe.

- Device and collective backend: NCCL on `cuda:LOCAL_RANK` when CUDA is available, gloo on the CPU otherwise.
- Precision `auto`: bf16 autocast where bf16 matmuls are native (every CUDA device we launch on; CPUs with AMX
  or AVX512-BF16, where a bf16 matmul runs several times faster than fp32), fp32 elsewhere (on a CPU without
  them bf16 is emulated and slower than fp32). Master weights, gradients and AdamW moments stay fp32 either way:
  we autocast the forward pass instead of DeepSpeed's bf16 mode, which would keep bf16 weights; OLMo 3 trains
  with bf16 compute and fp32 weights (FSDP param_dtype=bf16, fp32 master copy).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

# /proc/cpuinfo flags that mean native bf16 matmuls (Intel AMX tiles, or AVX512 with BF16 dot products).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Runtime:
    device: str  # "cuda:0", "cpu"
    backend: str  # torch.distributed backend: "nccl" or "gloo"
    precision: str  # resolved: "bf16" or "fp32"

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's precision context (a no-op in fp32)."""
        if self.precision == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def select_device(env: Mapping[str, str], cuda_available: bool) -> tuple[str, str]:
    """(device, collective backend) for the process described by `env` (torchrun/DeepSpeed set LOCAL_RANK)."""
    if cuda_available:
        return f"cuda:{int(env.get('LOCAL_RANK', 0))}", "nccl"
    return "cpu", "gloo"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolve_precision(requested: str, device_type: str, flags: frozenset[str], mkldnn_bf16: bool = True) -> str:
    """`train.precision` to what the job runs: "bf16" or "fp32".

    `mkldnn_bf16`: whether torch's CPU backend can run bf16 kernels (oneDNN built in); without it even a CPU
    with the flags would fall back to slow reference kernels."""
    if requested not in ("auto", "fp32", "bf16"):
        raise ValueError(f"train.precision must be auto, fp32 or bf16, got {requested!r}")
    if requested != "auto":
        return requested
    if device_type == "cuda":
        return "bf16"
    return "bf16" if mkldnn_bf16 and any(f in flags for f in BF16_CPU_FLAGS) else "fp32"


def detect(requested: str, env: Mapping[str, str]) -> Runtime:
    """This process's runtime."""
    device, backend = select_device(env, torch.cuda.is_available())
    device_type = device.split(":")[0]
    if device_type == "cuda" and requested == "auto" and not torch.cuda.is_bf16_supported():
        return Runtime(device, backend, "fp32")  # pre-Ampere GPUs
    precision = resolve_precision(requested, device_type, cpu_flags(), torch.backends.mkldnn.is_available())
    return Runtime(device, backend, precision)
