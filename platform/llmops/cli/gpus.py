"""Which GPUs to pin workers to: one entry per process, ready for CUDA_VISIBLE_DEVICES.

NVML (nvidia-ml-py) answers without CUDA or torch, so the CLI stays light. NVML numbers
devices in PCI bus order, CUDA fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, which the
workers get (see processes.py): then index N means the same card to NVML, to CUDA and to
the worker's heartbeat. A GPU in MIG mode yields one entry per MIG instance, by UUID (the
only way CUDA addresses one).
"""

from __future__ import annotations

import os


def detect_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        # The operator already chose; CUDA itself stops at the first invalid entry such as -1.
        chosen: list[str] = []
        for item in (v.strip() for v in visible.split(",")):
            if not item or item.startswith("-"):
                break
            chosen.append(item)
        return chosen
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []  # no driver: a CPU-only machine
    try:
        return [uuid for index in range(pynvml.nvmlDeviceGetCount()) for uuid in _uuids(pynvml, index)]
    except pynvml.NVMLError:
        return []
    finally:
        pynvml.nvmlShutdown()


def _uuids(pynvml, index: int) -> list[str]:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:
        current = 0
    if current == pynvml.NVML_DEVICE_MIG_ENABLE:
        migs = []
        for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except pynvml.NVMLError:
                continue
            migs.append(_text(pynvml.nvmlDeviceGetUUID(mig)))
        return migs
    return [str(index)]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
