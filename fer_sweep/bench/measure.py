"""What every section of the benchmark measures with: device-synced clocks, memory figures of this process,
the machine's description, and a freshly seeded model."""
from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from fer_sweep.engine.precision import Precision, bf16_is_fast
from fer_sweep.models import build_model

LR = 1e-3  # Adam's lr for all timed steps; throughput does not depend on it


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> float:
    sync(device)
    return time.perf_counter()


def status_bytes(field: str) -> Optional[int]:
    """A memory figure from /proc/self/status (Linux), e.g. VmRSS or VmHWM, in bytes; None elsewhere."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def peak_rss_bytes() -> int:
    """Peak resident memory of this process: VmHWM from /proc/self/status on Linux, else ru_maxrss.

    ru_maxrss is avoided where possible: on Linux a child inherits its parent's high-water mark across
    fork + exec, so a fresh process would report the (larger) benchmark process's peak.
    """
    peak = status_bytes("VmHWM")
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, kilobytes on Linux


def machine_info(device: torch.device, precision: Precision) -> Dict[str, Any]:
    cpu, flags = "", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not cpu:
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    cpu = cpu or platform.processor() or platform.machine()
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_bf16": "amx_bf16" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "none",
            "python": platform.python_version(), "torch": torch.__version__, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
            "precision": precision.name, "bf16_fast": bf16_is_fast(device)}
    with contextlib.suppress(ImportError):
        import torchvision

        info["torchvision"] = torchvision.__version__
    return info


def make_model(name: str, device: torch.device, channels_last: bool, input_crop: Optional[int] = None) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, input_crop=input_crop).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def images_per_s(marks: Dict[str, float], steps: int, batch_size: int) -> float:
    return steps * batch_size / (marks["end"] - marks["start"])
