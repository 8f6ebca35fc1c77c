"""The GPU's own figures on ``/metrics``: utilization, memory and power, read through NVML.

A saturated GPU server and a server starved by its CPU look the same from the client; the device's
utilization tells them apart. NVML (``nvidia-ml-py``, NVIDIA's own bindings, imported as ``pynvml``)
is what ``nvidia-smi`` reads: cheap calls, no CUDA context, no effect on the work.

Everything here is optional: without the package, without a driver (NVML's library is missing), or
for a model on the CPU, :func:`gpu_collector` returns None and no ``embed_gpu_*`` series exists. A
figure a GPU does not report (power on some boards) is left out of that scrape; nothing raises into
the scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LABELS = ("gpu", "gpu_name")


@dataclass(frozen=True)
class Device:
    """One GPU as NVML knows it: its NVML index (a label), its name and its handle."""

    index: int
    name: str
    handle: Any


class GpuCollector(Collector):
    """Reads each device's utilization, memory and power at scrape time."""

    def __init__(self, nvml: Any, devices: Sequence[Device]) -> None:
        self.nvml = nvml
        self.devices = tuple(devices)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        utilization = GaugeMetricFamily(
            "embed_gpu_utilization_percent",
            "Percent of the last sample period (1/6 s to 1 s) in which a kernel ran on the GPU (NVML)",
            labels=LABELS,
        )
        memory_used = GaugeMetricFamily(
            "embed_gpu_memory_used_bytes", "GPU memory in use, by every process (NVML)", labels=LABELS
        )
        memory_total = GaugeMetricFamily(
            "embed_gpu_memory_total_bytes", "GPU memory in all (NVML)", labels=LABELS
        )
        power = GaugeMetricFamily("embed_gpu_power_watts", "GPU power draw (NVML)", labels=LABELS)
        for device in self.devices:
            labels = [str(device.index), device.name]
            rates = self._read(self.nvml.nvmlDeviceGetUtilizationRates, device)
            if rates is not None:
                utilization.add_metric(labels, float(rates.gpu))
            memory = self._read(self.nvml.nvmlDeviceGetMemoryInfo, device)
            if memory is not None:
                memory_used.add_metric(labels, float(memory.used))
                memory_total.add_metric(labels, float(memory.total))
            milliwatts = self._read(self.nvml.nvmlDeviceGetPowerUsage, device)
            if milliwatts is not None:
                power.add_metric(labels, milliwatts / 1000.0)
        yield from (utilization, memory_used, memory_total, power)

    def _read(self, call: Any, device: Device) -> Any:
        try:
            return call(device.handle)
        except self.nvml.NVMLError:
            return None  # not supported on this board, or the GPU fell off the bus: no sample


def _import_nvml() -> Any | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _torch_uuid(device: str) -> str | None:
    """The NVML UUID (``GPU-...``) of torch's ``cuda`` / ``cuda:N`` device, or None if torch cannot say."""
    try:
        import torch

        properties = torch.cuda.get_device_properties(torch.device(device))
        uuid = str(properties.uuid)
    except Exception:  # an old torch without .uuid, or no CUDA: fall back to the visible devices
        return None
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


def _visible_indices(count: int) -> list[int]:
    """NVML indices of the GPUs this process may use (CUDA_VISIBLE_DEVICES as numbers), else all."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    indices = [int(part) for part in visible.split(",") if part.strip().isdigit()]
    return [index for index in indices if index < count]


def _devices(nvml: Any, device: str) -> list[Device]:
    """The GPU the model runs on, found by torch's UUID; else every GPU visible to the process."""
    handles: list[tuple[int, Any]] = []
    uuid = _torch_uuid(device)
    if uuid is not None:
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
            handles = [(nvml.nvmlDeviceGetIndex(handle), handle)]
        except nvml.NVMLError:
            handles = []
    if not handles:
        handles = [
            (index, nvml.nvmlDeviceGetHandleByIndex(index))
            for index in _visible_indices(nvml.nvmlDeviceGetCount())
        ]
    return [Device(index, _text(nvml.nvmlDeviceGetName(handle)), handle) for index, handle in handles]


def gpu_collector(device: str, nvml: Any | None = None) -> GpuCollector | None:
    """A collector for the GPU serving a model on ``device``; None on the CPU, without
    ``nvidia-ml-py`` or without a working driver (then the server exports no ``embed_gpu_*``)."""
    if not device.startswith("cuda"):
        return None
    nvml = nvml if nvml is not None else _import_nvml()
    if nvml is None:
        log.info("nvidia-ml-py is not installed: no GPU utilization, memory or power on /metrics")
        return None
    try:
        nvml.nvmlInit()
        devices = _devices(nvml, device)
    except nvml.NVMLError as error:
        log.warning("NVML unavailable (%s): no GPU utilization, memory or power on /metrics", error)
        return None
    return GpuCollector(nvml, devices) if devices else None
