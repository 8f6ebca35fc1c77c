"""What hardware serves the model, for ``/info`` and so for ``run.json``: a price applies to the
hardware it names, and a run measured on two CPU cores must not be priced as an A10G instance.

Read once at load, from the device the model was put on: the GPU's model name and how many GPUs the
process sees (``torch.cuda``), the CPU's model name (``/proc/cpuinfo``, else ``platform``), the
logical CPUs this process may run on (its affinity, which a container or ``taskset`` narrows) and
torch's intra-op threads.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Hardware:
    device: str  # "cpu" or "cuda"
    gpu: str | None  # e.g. "NVIDIA H200"; None on the CPU
    gpus: int  # GPUs visible to the server process (0 on the CPU)
    cpu: str  # the CPU's model name
    cpus: int  # logical CPUs the server process may run on
    torch_threads: int  # torch's intra-op threads (--cpu-threads)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name, as ``lscpu`` prints it; the machine type where /proc has none."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.machine() or "unknown"  # (platform.processor() would start `uname -p`)


def usable_cpus() -> int:
    """Logical CPUs this process may run on: its affinity where the OS has one, else the count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=8)
def describe_hardware(device: str) -> Hardware:
    """The hardware of a model loaded on ``device`` (``cpu``, ``cuda`` or ``cuda:N``)."""
    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    return Hardware(
        device="cuda" if on_gpu else "cpu",
        gpu=torch.cuda.get_device_name(torch.device(device)) if on_gpu else None,
        gpus=torch.cuda.device_count() if on_gpu else 0,
        cpu=cpu_model(),
        cpus=usable_cpus(),
        torch_threads=torch.get_num_threads(),
    )
