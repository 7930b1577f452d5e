"""Which device this worker runs nodes on, and how busy it is (NVML when there is a GPU).

NVML is asked directly (not torch) so the worker's main process can report memory and
utilisation without importing torch. NVML numbers GPUs physically and ignores
CUDA_VISIBLE_DEVICES, so a worker pinned to GPU "3" reads NVML device 3.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceInfo:
    device: str  # what nodes get as ctx.device: "cuda" or "cpu"
    label: str  # "cuda:3" (physical index) or "cpu"
    name: str  # "NVIDIA H200", or the CPU model
    memory_used: int | None = None
    memory_total: int | None = None
    utilization: float | None = None


@functools.lru_cache(maxsize=1)
def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - no driver, no library, no GPU: all mean "CPU worker"
        return None


def _physical_index() -> int | None:
    """The NVML index of the GPU this process may use, or None when it may use none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return 0
    first = visible.split(",")[0].strip()
    if not first or first == "-1":
        return None
    return int(first) if first.isdigit() else 0  # a UUID: NVML index unknown, assume the first


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


@functools.lru_cache(maxsize=1)
def _torch_sees_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a CPU-only torch build, or none
        return False


def device_info(*, check_torch: bool = False) -> DeviceInfo:
    """This process's device with live memory/utilisation; ``check_torch`` confirms that torch
    can use the GPU (only worth it where nodes run: it imports torch)."""
    forced = os.environ.get("LLMOPS_DEVICE", "").strip()
    if forced == "cpu":
        return DeviceInfo("cpu", "cpu", _cpu_name())
    index = _physical_index()
    nvml = _nvml() if index is not None else None
    if nvml is None or index >= nvml.nvmlDeviceGetCount():
        return DeviceInfo("cpu", "cpu", _cpu_name())
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else name
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        util = nvml.nvmlDeviceGetUtilizationRates(handle)
    except Exception:  # noqa: BLE001 - a GPU in a bad state reports as unknown, not a crash
        log.warning("NVML could not read GPU %s", index, exc_info=True)
        return DeviceInfo("cuda", f"cuda:{index}", "GPU (NVML unavailable)")
    device = "cuda" if not check_torch or _torch_sees_cuda() else "cpu"
    return DeviceInfo(device, f"cuda:{index}", name, int(memory.used), int(memory.total), float(util.gpu))


def release_memory() -> None:
    """Give GPU memory back after a node, so the next node starts from an empty card.

    Only where torch holds CUDA memory: a full gc.collect() costs ~0.2 s in a worker with
    Django and pydantic loaded, too much to pay after every small CPU node.
    """
    import gc
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.ipc_collect()
