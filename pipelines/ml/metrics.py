"""Efficiency measurements shared by training and evaluation: peak memory, energy, cost.

- Peak memory: the CUDA allocator's peak on a GPU; on a CPU the largest resident set size
  sampled every 0.1 s (the process-lifetime ``ru_maxrss`` of a long-lived worker would report
  an earlier node's peak).
- Energy: NVML's energy counter on a GPU (millijoules since the driver loaded, Volta and
  later), else an estimate from the CPU time this process used at ``CPU_WATTS_PER_CORE``,
  labelled as an estimate.
- Cost: device hours times the price per device hour the user entered.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch

# A busy server core draws roughly 5-15 W (a 200 W, 16-core package is ~12 W per core); 10 W
# is the middle. Only used for the labelled estimate on machines without a power counter.
CPU_WATTS_PER_CORE = 10.0


def is_cuda(device: str) -> bool:
    return device.startswith("cuda") and torch.cuda.is_available()


class MemoryTracker:
    """``with MemoryTracker(device) as mem: ...``; then ``mem.peak_bytes``."""

    def __init__(self, device: str, interval: float = 0.1):
        self.device, self.interval = device, interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process()

    def __enter__(self) -> MemoryTracker:
        if is_cuda(self.device):
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        else:
            self.peak_bytes = self._process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True, name="memory-tracker")
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def current_peak(self) -> int:
        if is_cuda(self.device):
            return int(torch.cuda.max_memory_allocated(torch.device(self.device)))
        return max(self.peak_bytes, self._process.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        self.peak_bytes = self.current_peak()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)


@dataclass
class EnergyMeter:
    """Energy used between ``start()`` and ``stop()``, measured or estimated (``source`` says)."""

    device: str
    joules: float | None = None
    source: str = ""
    seconds: float = 0.0
    _t0: float = 0.0
    _nvml_mj: int | None = None
    _cpu0: float = 0.0
    _handle: Any = field(default=None, repr=False)

    def start(self) -> EnergyMeter:
        self._t0 = time.perf_counter()
        self._cpu0 = _cpu_seconds()
        if is_cuda(self.device):
            self._handle = _nvml_handle(self.device)
            if self._handle is not None:
                self._nvml_mj = _nvml_energy_mj(self._handle)
        return self

    def stop(self) -> EnergyMeter:
        self.seconds = time.perf_counter() - self._t0
        if self._nvml_mj is not None:
            end = _nvml_energy_mj(self._handle)
            if end is not None:
                self.joules, self.source = (end - self._nvml_mj) / 1000.0, "measured (NVML energy counter)"
                return self
        cpu = _cpu_seconds() - self._cpu0
        self.joules = cpu * CPU_WATTS_PER_CORE
        self.source = (
            f"estimate: {cpu:.1f} CPU-seconds x {CPU_WATTS_PER_CORE:.0f} W per busy core "
            "(no power counter on this device)"
        )
        return self

    def to_dict(self, price_per_device_hour: float = 0.0) -> dict[str, Any]:
        hours = self.seconds / 3600
        return {
            "seconds": round(self.seconds, 3),
            "energy_joules": None if self.joules is None else round(self.joules, 2),
            "energy_wh": None if self.joules is None else round(self.joules / 3600, 5),
            "energy_source": self.source,
            "device_hours": round(hours, 6),
            "price_per_device_hour": price_per_device_hour,
            "cost": round(hours * price_per_device_hour, 6) if price_per_device_hour else None,
        }


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _nvml_handle(device: str):
    try:
        import pynvml

        pynvml.nvmlInit()
        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        # Workers are pinned with CUDA_VISIBLE_DEVICES, so torch's index is not NVML's: match by UUID.
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            with contextlib.suppress(Exception):  # an older driver: fall back to the index
                return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # noqa: BLE001 - no NVML means "estimate instead"
        return None


def _nvml_energy_mj(handle) -> int | None:
    try:
        import pynvml

        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # noqa: BLE001 - older GPUs have no energy counter
        return None


def cpu_thread_count() -> int:
    """Threads for CPU training: LLMOPS_TORCH_THREADS, else the cores not already busy.

    Measured on a 2-core machine with a load average of 9: a LoRA step of the demo model took
    5.3 s with torch's default 2 threads and 0.35 s with 1. OpenMP threads that must wait for
    each other on a shared core spin and thrash, so with the cores taken by other processes
    (other workers, the web server) fewer threads finish sooner.
    """
    forced = os.environ.get("LLMOPS_TORCH_THREADS", "").strip()
    if forced.isdigit() and int(forced) > 0:
        return int(forced)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy + 1)))


@contextlib.contextmanager
def cpu_threads(device: str, log=None):
    """Run a block with ``cpu_thread_count()`` torch threads on a CPU (a GPU run is untouched)."""
    if is_cuda(device):
        yield torch.get_num_threads()
        return
    previous, count = torch.get_num_threads(), cpu_thread_count()
    torch.set_num_threads(count)
    if log is not None and count != previous:
        log(f"using {count} CPU thread(s) of {previous}: the other cores are busy (see LLMOPS_TORCH_THREADS)")
    try:
        yield count
    finally:
        torch.set_num_threads(previous)


def device_name(device: str) -> str:
    if is_cuda(device):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({psutil.cpu_count(logical=True)} threads)"
