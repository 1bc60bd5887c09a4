"""Numeric precision as one object: which device, which autocast dtype, and a context to train under.

`auto` picks bf16 autocast where the hardware runs it fast (CUDA with bf16; CPUs with AMX or avx512-bf16
instructions), else fp32. oneDNN also "supports" bf16 on plain AVX-512 CPUs by emulating it, which measured
2.5-3x slower than fp32 for cnn and resnet9 on such a Xeon, so mere support is not enough. Weights, optimizer
state and BatchNorm statistics stay fp32 either way.
"""
from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass

import torch

from fer_sweep.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def describe_machine(device: torch.device) -> str:
    """The hardware a result was measured on, for result.json: CPU model, threads, native bf16; or the GPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"{model}, {torch.get_num_threads()} threads, {bf16}"


def cpu_has_native_bf16() -> bool:
    """AMX tiles or avx512-bf16 instructions: the CPUs on which bf16 convolutions beat fp32."""
    cpu = torch.cpu
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return torch.backends.mkldnn.is_available() and any(check() for check in checks if check is not None)


@dataclass(frozen=True)
class Precision:
    device: torch.device
    name: str  # "fp32" or "bf16" (never "auto": resolved at construction by `resolve_precision`)

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.name == "bf16" else torch.float32

    def autocast(self):
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def resolve_precision(name: str, device: torch.device) -> Precision:
    if name not in PRECISIONS:
        raise ConfigError(f"trainer.precision={name!r}; expected one of {list(PRECISIONS)}")
    if name == "auto":
        name = "bf16" if bf16_is_fast(device) else "fp32"
    return Precision(device, name)
