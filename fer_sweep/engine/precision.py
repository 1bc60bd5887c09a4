"""Numeric precision as one object: which device, which autocast dtype, and a context to train under.

`auto` picks bf16 autocast where the hardware runs it fast (CUDA with bf16; CPUs with AMX or avx512-bf16
instructions), else fp32. oneDNN also "supports" bf16 on plain AVX-512 CPUs by emulating it, which measured
2.5-3x slower than fp32 for cnn and resnet9 on such a Xeon, so mere support is not enough. Weights, optimizer
state and BatchNorm statistics stay fp32 either way.
"""
from __future__ import annotations

import contextlib
import functools
import platform
import re
from dataclasses import dataclass
from typing import Optional

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


def cpu_kind(device: Optional[torch.device] = None) -> str:
    """The machine kind a result was measured on, for result.json's `cpu_kind`: on a CPU its vendor and model
    and the instruction class that decides precision (see instruction_class), e.g. "AMD EPYC 9B14
    (avx512_bf16)"; on CUDA the GPU's name. Unlike `machine`, it tells an AMX Xeon from an avx512_bf16 EPYC."""
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _this_cpu_kind()


@functools.lru_cache(maxsize=1)
def _this_cpu_kind() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        text = ""
    return cpu_kind_from_cpuinfo(text, fallback=platform.processor() or platform.machine())


VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}
_NOISE = re.compile(r"\((?:R|TM|tm)\)|\bCPU\b|@.*$|\b\d+-Core\b|\bProcessor\b")


def cpu_kind_from_cpuinfo(text: str, fallback: str = "unknown CPU") -> str:
    """cpu_kind from the text of /proc/cpuinfo (its first processor): "<vendor> <model> (<class>)"."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:  # a blank line ends the first processor's block
                break
            continue
        fields.setdefault(key.strip(), value.strip())
    model = " ".join(_NOISE.sub(" ", fields.get("model name", "")).split()) or fallback
    vendor = VENDORS.get(fields.get("vendor_id", ""), "")
    if vendor and not model.lower().startswith(vendor.lower()):
        model = f"{vendor} {model}"
    return f"{model} ({instruction_class(fields.get('flags', '').split())})"


def instruction_class(flags) -> str:
    """What decides precision=auto on a CPU: amx (AMX tiles, bf16 fast), avx512_bf16 (bf16 fast), avx512
    (bf16 only emulated: fp32), avx2 (fp32), else other."""
    flags = set(flags)
    if flags & {"amx_bf16", "amx_tile"}:
        return "amx"
    for flag, name in (("avx512_bf16", "avx512_bf16"), ("avx512f", "avx512"), ("avx2", "avx2")):
        if flag in flags:
            return name
    return "other"


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
